"""Runs the conformance checks against one implementation and collects a ledger."""

from __future__ import annotations

import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from ..model import errors, status
from ..model.adapter import Implementation
from ..model.facts import MISUSE, facts_for_profile
from ..model.layout import EXPECTED_LAYOUT, layout_differences
from ..model.ledger import FactLedger
from ..model.oracle import qsbr_leq, qsbr_lt
from . import exhaustive, interrupt
from .database import set_machine_key
from .differential import U64, ConformanceFailure, coverage_scenario, make_machine
from .steps import StepRecord, render_steps


@dataclass
class Failure:
    check: str
    facts: tuple[str, ...]
    message: str
    #: the step sequence as printed (rendered from ``records`` when there are any)
    steps: list[str] = field(default_factory=list)
    #: the whole step sequence, structured (conformance.checks.steps)
    records: list[StepRecord] = field(default_factory=list)
    #: per field, observed and expected: {"field", "observed", "expected"}
    #: (conformance.checks.statediff); empty where the failure compared no state
    diff: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def with_records(cls, check: str, facts: tuple[str, ...], message: str,
                     records: list[StepRecord],
                     diff: list[dict[str, Any]] | None = None) -> Failure:
        return cls(check, facts, message, render_steps(records), list(records),
                   list(diff or []))


@dataclass
class RunResult:
    implementation: str
    version: str
    profile: str
    interpreter: str
    gil_enabled: bool | None
    ledger: FactLedger
    failures: list[Failure]
    seconds: float
    layout_checked: bool
    #: conformance.live.LiveResult when the live interpreter was checked (free-threaded only)
    live: Any = None
    #: conformance.checks.exhaustive.ExploreResult (None when the exploration was turned off)
    exploration: Any = None
    #: conformance.checks.modelcheck.ModelCheckResult (the reference port's Relacy results)
    modelcheck: Any = None
    #: what the run's concurrent check did, or why none ran (a sentence; None: not attempted)
    concurrency: str | None = None
    #: the command that would check what this run left sequential-only
    concurrency_command: str | None = None
    #: the Hypothesis seed of the run (chosen at random when none was given): replayable
    seed: int | None = None
    #: True when the run was stopped (Ctrl-C) before every check had run
    interrupted: bool = False
    #: a command line that replays this run (set by the front end that knows the options)
    replay: str = ""
    #: the options the run was started with (for reports)
    options: dict[str, Any] = field(default_factory=dict)

    #: the release profile (conformance.model.profiles) where the implementation declares one
    release: str | None = None

    @property
    def profile_label(self) -> str:
        """"3.14 profile" or "3.14 profile, releases 3.13.6-3.14.3"."""
        return f"{self.profile} profile" + (f", releases {self.release}" if self.release else "")

    @property
    def fact_ids(self) -> list[str]:
        return [fact.id for fact in facts_for_profile(self.profile)]

    def fact_status(self, fact_id: str) -> str:
        """The fact's status for this run; decided in one place, conformance.model.status."""
        return status.fact_status(fact_id, self.ledger, profile=self.profile,
                                  layout_checked=self.layout_checked)

    @property
    def conforms(self) -> bool:
        return (not self.failures and not self.interrupted
                and all(self.fact_status(f) in status.CONFORMING for f in self.fact_ids)
                and not (self.live is not None and self.live.failures))


def _interpreter_description() -> tuple[str, bool | None]:
    gil = getattr(sys, "_is_gil_enabled", None)
    return (f"{platform.python_implementation()} {platform.python_version()}"
            f"{'t' if gil is not None and 'free-threading' in sys.version else ''}",
            gil() if gil is not None else True)


_INVARIANT_CALLS = tuple(f"state.{name}()" for name in (
    "write_sequence_is_odd", "read_sequence_only_moves_forward", "read_sequence_bounds",
    "freelist_matches_allocation"))


def _notes(exc: BaseException) -> list[str]:
    """Hypothesis' account of the shrunk failing case, without the invariant calls."""
    lines: list[str] = []
    for note in getattr(exc, "__notes__", []):
        lines.extend(line for line in str(note).splitlines()
                     if line.strip() and line.strip() not in _INVARIANT_CALLS)
    return lines


def new_seed() -> int:
    """A seed for a run that was given none, so that every run can be replayed."""
    return random.SystemRandom().randrange(1 << 32)


def _phase(progress: Any, name: str, ledger: FactLedger) -> None:
    """Tell a progress reporter that supports it which part of the run starts."""
    if progress is not None and hasattr(progress, "phase"):
        progress.phase(name, ledger)


def check_comparisons(impl: Implementation, ledger: FactLedger, examples: int,
                      seed: int | None,
                      progress: Callable[[FactLedger], None] | None = None) -> Failure | None:
    """S-SEQ-3: the implementation's QSBR_LT/QSBR_LEQ against the oracle's, near the wrap."""
    near_wrap = st.integers(-64, 64).map(lambda d: d & U64)
    near_half = st.integers(-8, 8).map(lambda d: (d + (1 << 63)) & U64)
    value = st.one_of(near_wrap, st.integers(0, U64), near_half)

    @settings(max_examples=min(max(50, examples * 2), 1000), database=None, deadline=None)
    @given(a=value, b=value)
    def comparisons_agree(a: int, b: int) -> None:
        interrupt.check()
        for name, expected in (("qsbr_lt", qsbr_lt(a, b)), ("qsbr_leq", qsbr_leq(a, b))):
            got = getattr(impl, name)(a, b)
            if bool(got) != expected:
                message = f"{name}({a}, {b}) returned {got}, expected {expected}"
                ledger.failed(("S-SEQ-3",), message, source="comparisons")
                raise ConformanceFailure(
                    ("S-SEQ-3",), message, [{"field": "result", "observed": bool(got),
                                             "expected": expected}],
                    [StepRecord(name, None, (a, b), bool(got))])
        ledger.passed("S-SEQ-3", source="comparisons")
        if progress is not None:
            progress(ledger)

    if seed is not None:
        comparisons_agree = hypothesis_seed(seed)(comparisons_agree)
    try:
        comparisons_agree()
    except ConformanceFailure as exc:
        return Failure.with_records("comparisons", exc.facts, str(exc), exc.records, exc.diff)
    except errors.QsbrError as exc:         # e.g. the isolated implementation crashed
        return Failure("comparisons", ("S-SEQ-3",), f"{type(exc).__name__}: {exc}", _notes(exc))
    return None


def check_layout(impl: Implementation, ledger: FactLedger) -> tuple[bool, Failure | None]:
    """S-SLOT-2, for implementations that expose ``layout()``."""
    layout = getattr(impl, "layout", None)
    if layout is None:
        return False, None
    # The release profile where the implementation declares one (3.13.6-3.14.3 and 3.14.4+
    # share the API line 3.14 but not the layout of _qsbr_shared).
    release = getattr(impl, "release", None)
    differences = layout_differences(
        release if release in EXPECTED_LAYOUT else impl.profile, layout())
    if differences:
        ledger.failed(("S-SLOT-2",), "; ".join(differences), source="layout")
        return True, Failure("layout", ("S-SLOT-2",), "layout differs: " + "; ".join(differences))
    ledger.passed("S-SLOT-2", source="layout")
    return True, None


def run_conformance(impl: Implementation, *, examples: int = 200, steps: int = 60,
                    seed: int | None = None,
                    progress: Callable[[FactLedger], None] | None = None,
                    stop_at_first_failure: bool = False,
                    explore_seconds: float = exhaustive.DEFAULT_SECONDS,
                    explore_depth: int = exhaustive.DEFAULT_DEPTH,
                    explore_progress: Callable[[Any], None] | None = None,
                    database: Any = None) -> RunResult:
    """The whole conformance run: layout, comparisons, the fixed coverage scenario, the
    bounded-exhaustive exploration (``explore_seconds`` 0 turns it off), then Hypothesis'
    random step sequences.  ``database`` (a Hypothesis ExampleDatabase, see
    conformance.checks.database): the random phase first replays what it holds for this
    implementation (e.g. what a campaign found), and stores what it finds there."""
    started = time.monotonic()
    seed = new_seed() if seed is None else seed
    ledger = FactLedger()
    failures: list[Failure] = []
    layout_checked = False
    interrupted = False
    exploration = None
    # A first Ctrl-C stops the run at the next step (interrupt.check), not wherever the main
    # thread happens to be (inside a gc callback it would be dropped).
    with interrupt.deferred():
        try:
            _phase(progress, "layout and comparisons", ledger)
            layout_checked, failure = check_layout(impl, ledger)
            if failure:
                failures.append(failure)
            failure = check_comparisons(impl, ledger, examples, seed, progress)
            if failure:
                failures.append(failure)
            _phase(progress, "coverage scenario", ledger)
            machine = _coverage_scenario(impl, ledger, progress, failures)
            if machine is not None and explore_seconds > 0 and explore_depth > 0 and not (
                    stop_at_first_failure and failures):
                _phase(progress, "exhaustive exploration", ledger)
                try:
                    exploration = exhaustive.explore(impl, seconds=explore_seconds,
                                                     depth=explore_depth, ledger=ledger,
                                                     progress=explore_progress)
                except errors.QsbrError as exc:
                    failures.append(Failure("exhaustive", (MISUSE,),
                                            f"{type(exc).__name__}: {exc}"))
                else:
                    if exploration.failure is not None:
                        found = exploration.failure
                        failures.append(Failure.with_records(
                            "exhaustive", found.facts,
                            f"[{', '.join(found.facts)}] {found.message} (from the start point "
                            f"'{found.start}')", found.records, found.diff))
            if machine is not None:
                machine = hypothesis_seed(seed)(machine)
                if database is not None:
                    set_machine_key(machine, impl)
            machine_settings = settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                database=database,
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
                # No "explain" phase: its notes point into the suite's own sources, not at the
                # implementation's bug.
                phases=[phase for phase in Phase if phase.name != "explain"],
            )
            if stop_at_first_failure and failures:
                machine = None          # e.g. to time how fast a mutant is killed
            _phase(progress, "random examples", ledger)
            try:
                if machine is not None:
                    run_state_machine_as_test(machine, settings=machine_settings)
            except ConformanceFailure as exc:
                failures.append(_random_failure(machine, exc.facts, str(exc), exc))
            except Exception as exc:  # noqa: BLE001 - report, do not crash the harness
                failures.append(_random_failure(machine, (MISUSE,),
                                                f"{type(exc).__name__}: {exc}", exc))
        except KeyboardInterrupt:
            interrupted = True
    # Ctrl-C pressed after the last check point: the run may not have done all it was asked
    # to, so it is incomplete too.
    interrupted = interrupt.acknowledge() or interrupted

    interpreter, gil = _interpreter_description()
    return RunResult(
        implementation=impl.name, version=str(impl.version), profile=impl.profile,
        interpreter=interpreter, gil_enabled=gil, ledger=ledger, failures=failures,
        seconds=time.monotonic() - started, layout_checked=layout_checked,
        exploration=exploration, seed=seed, interrupted=interrupted,
        release=getattr(impl, "release", None),
    )


def _coverage_scenario(impl: Implementation, ledger: FactLedger, progress: Any,
                       failures: list[Failure]) -> Any:
    """Runs the fixed coverage scenario; returns the machine class (None when the
    implementation cannot even start one)."""
    from ..model.adapter import implementation_traceback

    try:
        machine = make_machine(impl, ledger, progress)
    except errors.QsbrError as exc:
        failures.append(Failure("differential", (MISUSE,), f"{type(exc).__name__}: {exc}"))
        return None
    scenario = None
    try:
        scenario = machine()
        with ledger.crediting("scenario"):
            coverage_scenario(scenario)
    except ConformanceFailure as exc:
        # The whole sequence, never cut: a replay needs every step.
        records = scenario.trace if scenario is not None else []
        failures.append(Failure.with_records("coverage scenario", exc.facts, str(exc),
                                             records, exc.diff))
    except errors.QsbrError as exc:
        failures.append(Failure.with_records("coverage scenario", (MISUSE,),
                                             f"{type(exc).__name__}: {exc}",
                                             scenario.trace if scenario is not None else []))
    except Exception as exc:  # noqa: BLE001 - the implementation raised outside the protocol
        where = "new_interpreter()" if scenario is None else "the coverage scenario"
        text = getattr(exc, "traceback_text", None) or implementation_traceback(exc)
        failures.append(Failure.with_records(
            "coverage scenario", (MISUSE,),
            f"the implementation raised {type(exc).__name__}: {exc} in {where}"
            + (f"\n{text}" if text else ""), scenario.trace if scenario is not None else []))
    return machine


def _random_failure(machine: Any, facts: tuple[str, ...], message: str,
                    exc: BaseException) -> Failure:
    """A Hypothesis failure with the step records of the shrunk case: Hypothesis runs the
    minimal failing example last, so the last machine built holds its records."""
    last = getattr(machine, "last_instance", None) if machine is not None else None
    records = getattr(last[0], "trace", None) if last is not None else None
    diff = getattr(exc, "diff", None)
    if records:
        return Failure.with_records("differential", facts, message, records, diff)
    return Failure("differential", facts, message, _notes(exc), diff=list(diff or []))
