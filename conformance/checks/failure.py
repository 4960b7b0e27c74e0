"""The one failure record: what every phase produces and every report and replay reads.

:class:`FailureRecord` is a failure as data: the check that found it, the facts it is charged
to, the message, the whole step sequence (rendered and structured), the per-field difference,
and where it was found (the exploration's start point; its position in a report, once read
back from one).  :class:`Failed` is how a check stops with one (an AssertionError, so that
Hypothesis shrinks the sequence that raised it).

The names the tree used before are kept as aliases of these two, so that code written against
them goes on working: ``conformance.checks.runner.Failure``, ``exhaustive.ExploreFailure`` and
``replay.RecordedFailure`` are :class:`FailureRecord`; ``differential.ConformanceFailure`` and
``exhaustive._Failed`` are :class:`Failed` (ConformanceFailure keeps its old constructor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .statediff import DiffEntry
from .steps import StepRecord, render_steps


@dataclass(eq=False)
class FailureRecord:
    """One failure."""

    check: str = ""
    facts: tuple[str, ...] = ()
    message: str = ""
    #: the step sequence as printed (rendered from ``records`` when there are any)
    steps: list[str] = field(default_factory=list)
    #: the whole step sequence, structured (conformance.checks.steps)
    records: list[StepRecord] = field(default_factory=list)
    #: per field, observed and expected: {"field", "observed", "expected"}
    #: (conformance.checks.statediff); empty where the failure compared no state
    diff: list[DiffEntry] = field(default_factory=list)
    #: the exploration's start point the sequence begins from ("" elsewhere)
    start: str = ""
    #: the failure's position in the report it was read back from (None: not read back)
    index: int | None = None
    #: the command that reruns this failure, where it is not the run's own replay (a race
    #: probe of the concurrent torture)
    replay: str = ""
    #: the example database the run replayed this failure from ("": the run found it itself)
    from_database: str = ""

    @classmethod
    def with_records(cls, check: str, facts: tuple[str, ...], message: str,
                     records: list[StepRecord],
                     diff: list[dict[str, Any]] | None = None, **more: Any) -> FailureRecord:
        return cls(check, tuple(facts), message, render_steps(records), list(records),
                   list(diff or []), **more)

    @property
    def failed_at(self) -> int:
        """The step where the run found it: the last recorded one (-1: none recorded)."""
        return len(self.records) - 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FailureRecord):
            return NotImplemented
        return (self.check, self.facts, self.message, self.steps, self.records, self.diff,
                self.start, self.index, self.replay, self.from_database) == (
                    other.check, other.facts, other.message, other.steps, other.records,
                    other.diff, other.start, other.index, other.replay, other.from_database)

    __hash__ = None     # type: ignore[assignment]  # mutable, like any dataclass with eq


class Failed(AssertionError):
    """A check stopping with a failure (``record``)."""

    def __init__(self, record: FailureRecord) -> None:
        self.record = record
        super().__init__(f"[{', '.join(record.facts)}] {record.message}")

    @property
    def failure(self) -> FailureRecord:
        return self.record

    @property
    def facts(self) -> tuple[str, ...]:
        return self.record.facts

    @property
    def diff(self) -> list[DiffEntry]:
        return self.record.diff

    @property
    def records(self) -> list[StepRecord]:
        return self.record.records


class ConformanceFailure(Failed):
    """An implementation disagreed with the oracle or broke an invariant (the differential
    machine's constructor: facts, message, diff, records)."""

    def __init__(self, facts: set[str] | tuple[str, ...], message: str,
                 diff: list[DiffEntry] | None = None,
                 records: list[StepRecord] | None = None) -> None:
        super().__init__(FailureRecord("differential", tuple(sorted(set(facts))), message,
                                       render_steps(list(records or [])), list(records or []),
                                       list(diff or [])))
