"""One-case replay: a recorded failure's steps, run again against an implementation.

A failure in the JSON report carries its whole step sequence (``step_records``, see
conformance.checks.steps).  :func:`replay_steps` drives the implementation and the oracle through
those steps with the differential machine's own step (conformance.checks.differential): the
state is compared after the start and after every call, exactly as the run compared it.  The
outcome says whether the implementation still fails, and whether it fails the same way (the
same facts, at the same step).

:func:`replay_failure` picks a failure out of a report; :func:`emit_test` writes a pytest test
for a porter's own suite that runs :func:`replay_steps` on the porter's factory.
"""

from __future__ import annotations

import json
import pprint
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..model import errors
from ..model.adapter import Implementation, implementation_traceback
from ..model.facts import MISUSE
from ..model.ledger import FactLedger
from ..model.oracle import OracleInterpreter, qsbr_leq, qsbr_lt
from .differential import ConformanceFailure, _invariants, make_machine
from .failure import FailureRecord
from .statediff import outcome_diff
from .steps import NO_RESULT, StepRecord

#: The operations the comparisons check records (no interpreter involved).
_COMPARISONS = {"qsbr_lt": qsbr_lt, "qsbr_leq": qsbr_leq}
#: Checks whose failures are not a sequence of protocol calls.
_NOT_STEPWISE = {"concurrent torture": "it comes from the concurrent torture (a schedule of "
                 "threads, not a sequence of calls)"}
#: Step index of a failure found when the fresh interpreter's state was first compared.
INITIAL = -1


class NotReplayable(Exception):
    """The failure cannot be replayed step by step (the reason is the message)."""


def record_from_json(data: dict[str, Any]) -> StepRecord:
    """A StepRecord from its JSON form (StepRecord.to_json)."""
    result = data.get("result")
    return StepRecord(data["operation"], data.get("thread"), tuple(data.get("args") or ()),
                      NO_RESULT if result is None else result, data.get("error"),
                      data.get("note") or "")


@dataclass
class ReplayResult:
    """What one replay did."""

    #: the steps replayed (the recorded ones, as given)
    records: list[StepRecord]
    #: None when every step agreed with the oracle
    failure: ConformanceFailure | None = None
    #: the step (index into ``records``) where it failed; INITIAL: the fresh state
    failed_at: int | None = None
    #: what the implementation did this time, step by step (as the run would record it)
    trace: list[StepRecord] = field(default_factory=list)
    seconds: float = 0.0
    #: steps before the failure where the implementation now does something else than the
    #: report recorded (another implementation, or a nondeterministic one)
    divergences: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failure is None

    @property
    def facts(self) -> tuple[str, ...]:
        return self.failure.facts if self.failure is not None else ()

    def where(self) -> str:
        if self.failed_at is None:
            return "nowhere"
        if self.failed_at == INITIAL:
            return "the fresh interpreter's state (before the first step)"
        return f"step {self.failed_at + 1} of {len(self.records)}: " \
               f"{self.records[self.failed_at].render()}"

    def explanation(self) -> str:
        """The failure, the step where it happened and the steps up to it (for test output)."""
        if self.failure is None:
            return f"all {len(self.records)} steps agree with the oracle"
        steps = self.trace
        return "\n".join([str(self.failure), f"at {self.where()}", "steps:",
                          *[f"    {r.render()}" for r in steps]])


def _outcome(record: StepRecord) -> tuple[str | None, Any]:
    error = record.error.split(":")[0] if record.error else None
    return error, None if record.result is NO_RESULT else record.result


def replay_steps(impl: Implementation, steps: list[StepRecord] | list[dict[str, Any]]
                 ) -> ReplayResult:
    """Drive ``impl`` and the oracle through ``steps`` (StepRecords or their JSON), comparing
    as the differential machine does; stops at the first difference."""
    records = [s if isinstance(s, StepRecord) else record_from_json(s) for s in steps]
    started = time.perf_counter()
    result = ReplayResult(records)
    try:
        if records and all(r.operation in _COMPARISONS for r in records):
            _replay_comparisons(impl, result)
        else:
            _replay_machine(impl, result)
    finally:
        result.seconds = time.perf_counter() - started
    return result


def _replay_comparisons(impl: Implementation, result: ReplayResult) -> None:
    for index, record in enumerate(result.records):
        a, b = record.args
        got = bool(getattr(impl, record.operation)(a, b))
        expected = _COMPARISONS[record.operation](a, b)
        result.trace.append(StepRecord(record.operation, None, (a, b), got))
        if got != expected:
            result.failure = ConformanceFailure(
                ("S-SEQ-3",), f"{record.operation}({a}, {b}) returned {got}, expected "
                f"{expected}", [{"field": "result", "observed": got, "expected": expected}])
            result.failed_at = index
            return


def _replay_machine(impl: Implementation, result: ReplayResult) -> None:
    machine_class = make_machine(impl, FactLedger())
    m = machine_class()
    position = INITIAL
    try:
        m.start(None)
        for position, record in enumerate(result.records):
            _replay_one(m, record)
            _invariants(m)
            if position < len(result.records) - 1:
                _note_divergence(result, position, record, m.trace[-1] if m.trace else None)
    except ConformanceFailure as exc:
        result.failure, result.failed_at = exc, position
    except errors.QsbrError as exc:       # outside a compared step: new_thread_state, hooks
        result.failure = ConformanceFailure(
            (MISUSE,), f"{result.records[position].call() if position >= 0 else 'start'}: "
            f"raised {type(exc).__name__}: {exc}",
            outcome_diff(type(exc).__name__, None, None, None))
        result.failed_at = position
    except Exception as exc:  # noqa: BLE001 - the implementation broke the protocol
        text = implementation_traceback(exc)
        result.failure = ConformanceFailure(
            (MISUSE,), f"{result.records[position].call() if position >= 0 else 'start'}: "
            f"the implementation raised {type(exc).__name__}: {exc}"
            + (f"\n{text}" if text else ""))
        result.failed_at = position
    finally:
        result.trace = list(m.trace)
        try:
            m.teardown()
        except Exception:  # noqa: BLE001, S110 - a broken close() is not this replay's verdict
            pass


def _replay_one(m: Any, record: StepRecord) -> None:
    """One recorded call, as the differential machine makes it."""
    operation = record.operation
    if operation == "new_thread_state":
        m._new_thread()
    elif operation == "fail_next_allocations":
        m._arm_failures(*record.args)
    elif operation in _COMPARISONS:
        raise NotReplayable("a comparison step in the middle of a state sequence")
    else:
        if record.thread is not None and record.thread not in m.impl_handle:
            raise NotReplayable(f"the step {record.render()} names t{record.thread}, which the "
                                "recorded steps never created (or deleted before)")
        m.step(operation, *record.args, thread=record.thread)
        if operation == "delete_thread_state" and record.thread is not None \
                and m.oracle_handle[record.thread] not in m.oracle.threads:
            m.threads.remove(record.thread)     # both sides deleted it
            del m.oracle_handle[record.thread], m.impl_handle[record.thread]
        if operation == "set_sequences":
            m.last_rd = m.snap.rd_seq if m.snap is not None else None


def _note_divergence(result: ReplayResult, position: int, recorded: StepRecord,
                     now: StepRecord | None) -> None:
    if now is None or recorded.operation in ("new_thread_state", "fail_next_allocations"):
        return
    if _outcome(recorded) != _outcome(now):
        result.divergences.append(f"step {position + 1}: the report recorded "
                                  f"{recorded.render()!r}, now {now.render()!r}")


# -- failures from a report -----------------------------------------------------------------

#: A failure of a JSON report, as replay needs it: the one failure record
#: (conformance.checks.failure), with ``index`` its position in the report.
RecordedFailure = FailureRecord


def load_report(path: str) -> dict[str, Any]:
    """A JSON report of any kind (:func:`report_kind` says which; ValueError if none)."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    report_kind(data, path)
    return data


def report_kind(data: Any, path: str = "the file") -> str:
    """Which kind of report ``data`` is: ``"run"`` (a conformance run's, from the command
    line or the pytest plugin), ``"campaign"`` (``qsbr-conformance campaign --json``) or
    ``"torture"`` (``qsbr-conformance torture --json``).  ValueError for anything else."""
    if isinstance(data, dict) and data.get("kind") == "qsbr-conformance torture":
        return "torture"
    if isinstance(data, dict) and "failures" in data:
        return "run"
    if isinstance(data, dict) and "found" in data and "hypofuzz" in data:
        return "campaign"
    raise ValueError(f"{path} is not a qsbr-conformance JSON report (no 'failures')")


def as_run_report(campaign: dict[str, Any]) -> dict[str, Any]:
    """A campaign's report as a run's: its one failure (what it replayed from the database)."""
    found = campaign.get("found")
    return {"failures": [dict(found, check=found.get("check") or "differential")]
            if found else [], "target": campaign.get("target"),
            "profile": campaign.get("profile"), "options": {"impl": campaign.get("impl")}}


def recorded_failure(report: dict[str, Any], index: int) -> RecordedFailure:
    failures = report.get("failures") or []
    if not failures:
        raise NotReplayable("the report has no failures (the implementation conformed)")
    if not 0 <= index < len(failures):
        raise IndexError(f"--failure {index}: the report has {len(failures)} failure(s), "
                         f"numbered 0 to {len(failures) - 1}")
    data = failures[index]
    return RecordedFailure.with_records(
        data["check"], tuple(data["facts"]), data["message"],
        [record_from_json(r) for r in data.get("step_records") or []], index=index,
        from_database=data.get("from_database") or "")


_CALL = re.compile(r"^(?:\[[^\]]*\] )?(?:after )?([a-z_]+)\(([^()]*)\)")


def check_replayable(failure: RecordedFailure) -> None:
    """NotReplayable unless the records are the failure's own steps, ending at the call the
    failure names (a report whose records belong to another machine is not replayed: that
    would replay a wrong sequence)."""
    if failure.check in _NOT_STEPWISE:
        raise NotReplayable(f"failure {failure.index} ({failure.check}) has no step sequence: "
                            f"{_NOT_STEPWISE[failure.check]}")
    if failure.check == "layout":
        return
    named = _CALL.match(failure.message)
    if not failure.records:
        if failure.message.split("] ", 1)[-1].startswith("after start,"):
            return          # the fresh interpreter's state differed: nothing to replay but it
        raise NotReplayable(f"failure {failure.index} ({failure.check}) has no recorded steps "
                            "in the report (its step_records are empty)")
    if named is None:
        return              # an invariant's message names no call: the last step is the one
    operation = named.group(1)
    if not (hasattr(OracleInterpreter, operation) or operation in _COMPARISONS):
        return              # a composite action (create_thread, ...): the records expand it
    last = failure.records[-1].call()
    if last != f"{operation}({named.group(2)})":
        at = named.group(0).split("] ")[-1]
        raise NotReplayable(
            f"failure {failure.index} ({failure.check}) happened at {at!r}, but its recorded "
            f"steps end at {last!r}: the report's step records for this "
            "failure are not its own (e.g. the coverage scenario's wrap part, which runs on a "
            "second machine); not replaying a wrong sequence")


def same_way(failure: RecordedFailure, replayed: ReplayResult) -> bool:
    return (replayed.failure is not None and set(replayed.facts) == set(failure.facts)
            and replayed.failed_at == failure.failed_at)


# -- the emitted test -------------------------------------------------------------------------

def emit_test(path: str, *, target: Any, profile: str | None, failure: RecordedFailure,
              source: str) -> None:
    """Write a self-contained pytest test: it replays ``failure``'s steps on ``target``
    (conformance.drivers.target.Target: its factory, or for a C ABI library the library it
    recorded, which $QSBR_LIBRARY overrides; QSBR_REPLAY_IMPL=MODULE:FACTORY picks another)
    and fails while the implementation still fails."""
    spec, kwargs = target.loader()
    module, _, factory = spec.partition(":")
    if not module or not factory.isidentifier():
        raise ValueError(f"--emit-test needs an --impl of the form MODULE:FACTORY, not {spec!r}")
    facts = "_".join(f.lower().replace("-", "_") for f in failure.facts) or "failure"
    steps = pprint.pformat([_record_json(r) for r in failure.records], width=96,
                           sort_dicts=False)
    kwargs.pop("release", None)
    if profile is not None:
        kwargs["profile"] = profile
    library = kwargs.pop("path", None)
    arguments = ", ".join(f"{name}={value!r}" for name, value in kwargs.items())
    if library is not None:
        arguments = ("path=os.environ.get('QSBR_LIBRARY') or LIBRARY"
                     + (", " + arguments if arguments else ""))
    profile_kwarg = f"profile={profile!r}" if profile is not None else ""
    first_line = (failure.message.splitlines()[0] if failure.message else "").replace(
        "\\", "/").replace(3 * '"', 3 * "'")
    text = f'''"""Replays a QSBR conformance failure ({', '.join(failure.facts)}) step by step.

{first_line}

Generated by ``qsbr-conformance replay {source} --failure {failure.index} --emit-test``.
The test drives the implementation and CPython's QSBR model (the qsbr-conformance oracle)
through the recorded steps, comparing the return values and the whole observable state after
every step: it fails while the implementation still differs, and passes once it does not.
QSBR_REPLAY_IMPL=MODULE:FACTORY runs it on another factory.
"""

import os

from {module} import {factory}

from conformance.checks.replay import replay_steps
from conformance.model.adapter import load_implementation

LIBRARY = {library!r}
STEPS = {steps}


def _implementation():
    other = os.environ.get("QSBR_REPLAY_IMPL")
    if other:
        return load_implementation(other{", " + profile_kwarg if profile_kwarg else ""})
    return {factory}({arguments})


def test_replay_{facts}():
    result = replay_steps(_implementation(), STEPS)
    assert result.passed, result.explanation()
'''
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _record_json(record: StepRecord) -> dict[str, Any]:
    data = record.to_json()
    data.pop("text", None)
    return data
