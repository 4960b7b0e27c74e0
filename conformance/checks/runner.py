"""The one runner: a frozen plan and a resolved target in, one ledger and one result out.

:func:`run` is what every front end calls (the command line, the pytest plugin, the
benchmarks, the mutant table).  It runs the phases of :data:`conformance.checks.plan.PHASES`
in order: layout, comparisons, the coverage scenario, the bounded-exhaustive exploration and
the random examples (:func:`run_conformance`, the sequential phases), then the model
checker's results, the live interpreter and the concurrent torture; every phase credits the
same :class:`~conformance.model.ledger.FactLedger`, and :mod:`conformance.model.status` alone
decides each fact's status from it.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, Phase, given
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

from ..drivers import interrupt
from ..model import errors, status
from ..model.adapter import Implementation
from ..model.boundaries import BoundaryLedger
from ..model.facts import MISUSE, facts_for_profile
from ..model.layout import EXPECTED_LAYOUT, layout_differences
from ..model.ledger import FactLedger
from ..model.oracle import qsbr_leq, qsbr_lt
from . import exhaustive
from .database import DatabaseError, identity_of, open_database, set_machine_key
from .differential import U64, ConformanceFailure, coverage_scenario, make_machine
from .failure import FailureRecord as Failure
from .hsettings import suite_settings
from .plan import DEFAULT_EXAMPLES, DEFAULT_STEPS, Plan, new_seed
from .steps import StepRecord

if TYPE_CHECKING:
    from ..drivers.target import Capabilities, Target


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
    #: the plan and the target the run was made from (None for run_conformance alone)
    plan: Plan | None = None
    target: Target | None = None
    capabilities: Capabilities | None = None
    #: the phases that ran, in order, and the phase an interrupt or a stop came in
    phases: list[str] = field(default_factory=list)
    #: conformance.model.boundaries.BoundaryLedger: the boundaries the checks reached
    boundaries: BoundaryLedger | None = None

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

    @suite_settings(max_examples=min(max(50, examples * 2), 1000), database=None, deadline=None)
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


def run_conformance(impl: Implementation, *, examples: int = DEFAULT_EXAMPLES,
                    steps: int = DEFAULT_STEPS,
                    seed: int | None = None,
                    progress: Callable[[FactLedger], None] | None = None,
                    stop_at_first_failure: bool = False,
                    explore_seconds: float | None = None,
                    explore_depth: int = exhaustive.DEFAULT_DEPTH,
                    explore_progress: Callable[[Any], None] | None = None,
                    database: Any = None,
                    explore_states: int | None = exhaustive.DEFAULT_MAX_STATES,
                    database_key: str | None = None) -> RunResult:
    """The sequential phases of a run: layout, comparisons, the fixed coverage scenario, the
    bounded-exhaustive exploration (bounded by ``explore_states`` distinct states, so that a
    replay with the same seed reaches the same scope; ``explore_seconds`` adds a time bound,
    which is not reproducible, and 0 turns the exploration off; with neither bound the time
    bound is exhaustive.DEFAULT_SECONDS), then Hypothesis' random step sequences
    (``database``: a Hypothesis example database, or a directory or redis:// URL of one, whose
    examples are replayed first, under ``database_key``: the target's identity, see
    conformance.checks.database; a failure found there says so).  A database that fails while
    the run uses it raises DatabaseError: not a verdict about the implementation."""
    started = time.monotonic()
    label = database if isinstance(database, str) else "the example database"
    database = _database(database)
    seed = new_seed() if seed is None else seed
    ledger = FactLedger()
    reached = BoundaryLedger(profile=impl.profile)
    failures: list[Failure] = []
    layout_checked = False
    interrupted = False
    exploration = None
    phases: list[str] = []
    # The exploration's latest state, so that an interrupted run still reports the scope it
    # reached (the exploration itself is cut by the KeyboardInterrupt).
    explored: list[Any] = []

    def explore_seen(current: Any) -> None:
        explored[:] = [current]
        if explore_progress is not None:
            explore_progress(current)
    # A first Ctrl-C stops the run at the next step (interrupt.check), not wherever the main
    # thread happens to be (inside a gc callback it would be dropped).
    with interrupt.deferred():
        try:
            _phase(progress, "layout and comparisons", ledger)
            phases.append("layout")
            layout_checked, failure = check_layout(impl, ledger)
            if failure:
                failures.append(failure)
            phases.append("comparisons")
            failure = check_comparisons(impl, ledger, examples, seed, progress)
            if failure:
                failures.append(failure)
            _phase(progress, "coverage scenario", ledger)
            phases.append("scenario")
            machine = _coverage_scenario(impl, ledger, progress, failures, reached)
            if explore_seconds is None and not explore_states:
                explore_seconds = exhaustive.DEFAULT_SECONDS
            if machine is not None and explore_seconds != 0 and explore_depth > 0 and not (
                    stop_at_first_failure and failures):
                _phase(progress, "exhaustive exploration", ledger)
                phases.append("exhaustive")
                try:
                    exploration = exhaustive.explore(
                        impl, seconds=explore_seconds,
                        max_states=explore_states or None, depth=explore_depth,
                        ledger=ledger, progress=explore_seen, boundaries=reached)
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
                    set_machine_key(machine, database_key or identity_of(impl))
            # No "explain" phase: its notes point into the suite's own sources, not at the
            # implementation's bug.  With a database, its examples are replayed first on
            # their own, so that a failure found there is reported as such.
            random_phases = [phase for phase in Phase if phase.name != "explain"]
            if stop_at_first_failure and failures:
                machine = None          # e.g. to time how fast a mutant is killed
            if machine is not None and database is not None:
                _phase(progress, "examples from the database", ledger)
                phases.append("database")
                stored = _from_database(machine, database, steps, label)
                random_phases.remove(Phase.reuse)
                if stored is not None:
                    failures.append(stored)
                    if stop_at_first_failure:
                        machine = None
            machine_settings = suite_settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                database=database,
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
                phases=random_phases,
            )
            _phase(progress, "random examples", ledger)
            if machine is not None:
                phases.append("random")
            try:
                if machine is not None:
                    run_state_machine_as_test(machine, settings=machine_settings)
            except ConformanceFailure as exc:
                failures.append(_random_failure(machine, exc.facts, str(exc), exc))
            except Flaky as exc:
                # The failure did not happen again when Hypothesis replayed it: blame the
                # disagreement it first saw, not MISUSE, and say it varies between runs.
                first = _first_conformance_failure(exc)
                if first is None:
                    failures.append(_random_failure(machine, (MISUSE,),
                                                    f"{type(exc).__name__}: {exc}", exc))
                else:
                    failures.append(_random_failure(
                        machine, first.facts, f"{first} (flaky: the same steps did not fail "
                        "again when replayed; the implementation's answers vary between runs, "
                        "e.g. with allocation addresses or thread timing)", exc))
            except Exception as exc:  # noqa: BLE001 - report, do not crash the harness
                _raise_if_database_broke(exc, database, label)
                failures.append(_random_failure(machine, (MISUSE,),
                                                f"{type(exc).__name__}: {exc}", exc))
        except KeyboardInterrupt:
            interrupted = True
            if exploration is None and explored and phases[-1:] == ["exhaustive"]:
                exploration = explored[0]
                exploration.stopped_by = "interrupted"
    # Ctrl-C pressed after the last check point: the run may not have done all it was asked
    # to, so it is incomplete too.
    interrupted = interrupt.acknowledge() or interrupted

    interpreter, gil = _interpreter_description()
    return RunResult(
        implementation=impl.name, version=str(impl.version), profile=impl.profile,
        interpreter=interpreter, gil_enabled=gil, ledger=ledger, failures=failures,
        seconds=time.monotonic() - started, layout_checked=layout_checked,
        exploration=exploration, seed=seed, interrupted=interrupted,
        release=getattr(impl, "release", None), phases=phases, boundaries=reached,
    )


def _first_conformance_failure(exc: BaseException) -> ConformanceFailure | None:
    """The first ConformanceFailure inside a Flaky (an exception group) or its context."""
    seen: list[BaseException] = [exc]
    visited: set[int] = set()
    while seen:
        current = seen.pop(0)
        if id(current) in visited:
            continue
        visited.add(id(current))
        if isinstance(current, ConformanceFailure):
            return current
        seen.extend(getattr(current, "exceptions", ()) or ())
        if current.__cause__ is not None:
            seen.append(current.__cause__)
        if current.__context__ is not None:
            seen.append(current.__context__)
    return None


def _database(database: Any) -> Any:
    """A Hypothesis example database from a URL or path (None: no database); DatabaseError
    when it cannot be reached."""
    if database is None or not isinstance(database, str):
        return database
    return open_database(database)


def _raise_if_database_broke(exc: BaseException, database: Any, label: str) -> None:
    """A database that failed under Hypothesis (a Redis connection lost, a folder no longer
    writable) stops the run as an infrastructure error; left alone, it would hide the
    implementation's failure Hypothesis was saving behind a MISUSE verdict."""
    if database is None:
        return
    names = {type(exc).__module__.split(".")[0]}
    names |= {kind.__module__.split(".")[0] for kind in type(exc).__mro__}
    if "redis" in names or isinstance(exc, OSError):
        raise DatabaseError(f"--db {label}: the example database failed during the run: "
                            f"{type(exc).__name__}: {exc}") from None


def _from_database(machine: Any, database: Any, steps: int, label: str) -> Failure | None:
    """Hypothesis' reuse phase on its own (then shrinking): what ``database`` holds for this
    machine's key, replayed; a Failure that says where it came from, or None."""
    from unittest import SkipTest

    settings = suite_settings(max_examples=1, stateful_step_count=steps, deadline=None,
                              database=database, suppress_health_check=list(HealthCheck),
                              report_multiple_bugs=False, phases=[Phase.reuse, Phase.shrink])
    try:
        run_state_machine_as_test(machine, settings=settings)
    except SkipTest:
        return None         # nothing stored that replays as a run of this machine
    except ConformanceFailure as exc:
        found = _random_failure(machine, exc.facts, str(exc), exc)
    except Flaky as exc:
        first = _first_conformance_failure(exc)
        facts = first.facts if first is not None else (MISUSE,)
        found = _random_failure(machine, facts, f"{first or exc} (flaky: did not fail again "
                                "when replayed)", exc)
    except Exception as exc:  # noqa: BLE001 - report, do not crash the harness
        _raise_if_database_broke(exc, database, label)
        found = _random_failure(machine, (MISUSE,), f"{type(exc).__name__}: {exc}", exc)
    else:
        return None
    found.from_database = label
    return found


def _coverage_scenario(impl: Implementation, ledger: FactLedger, progress: Any,
                       failures: list[Failure], reached: BoundaryLedger | None = None) -> Any:
    """Runs the fixed coverage scenario; returns the machine class (None when the
    implementation cannot even start one)."""
    from ..model.adapter import implementation_traceback

    try:
        machine = make_machine(impl, ledger, progress, boundaries=reached)
    except errors.QsbrError as exc:
        failures.append(Failure("differential", (MISUSE,), f"{type(exc).__name__}: {exc}"))
        return None
    scenario = None
    try:
        scenario = machine()
        with ledger.crediting("scenario"):
            coverage_scenario(scenario)
    except ConformanceFailure as exc:
        # The whole sequence of the machine that failed, never cut: a replay needs every
        # step (the wrap part of the scenario runs on a machine of its own).
        failures.append(Failure.with_records("coverage scenario", exc.facts, str(exc),
                                             _failed_trace(machine, scenario), exc.diff))
    except errors.QsbrError as exc:
        failures.append(Failure.with_records("coverage scenario", (MISUSE,),
                                             f"{type(exc).__name__}: {exc}",
                                             _failed_trace(machine, scenario)))
    except Exception as exc:  # noqa: BLE001 - the implementation raised outside the protocol
        where = "new_interpreter()" if scenario is None else "the coverage scenario"
        text = getattr(exc, "traceback_text", None) or implementation_traceback(exc)
        failures.append(Failure.with_records(
            "coverage scenario", (MISUSE,),
            f"the implementation raised {type(exc).__name__}: {exc} in {where}"
            + (f"\n{text}" if text else ""), _failed_trace(machine, scenario)))
    return machine


def _failed_trace(machine: Any, scenario: Any) -> list[StepRecord]:
    """The steps of the scenario machine built last (the one that was running), or []."""
    last = getattr(machine, "last_instance", [None])[0]
    current = last if last is not None else scenario
    return list(current.trace) if current is not None else []


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


def run(plan: Plan, target: Target, *, progress: Any = None,
        explore_progress: Callable[[Any], None] | None = None,
        say: Callable[[str], None] | None = None) -> RunResult:
    """The whole run of ``plan`` against ``target``: every front end calls this.

    Reaches the plan's example database (``conformance.checks.database.DatabaseError``) and
    opens the target (``conformance.drivers.target.TargetError`` when it cannot be loaded):
    usage errors, raised before any check.  Then it runs the sequential phases
    (:func:`run_conformance`), closes the target, and runs the phase objects of
    :data:`LATER_PHASES` (the model checker's results, the live interpreter, the concurrent
    torture) that apply to the plan and target, skipping those that do not run after a stop.
    ``progress``/``explore_progress`` receive the ledger and the exploration's state as the
    run goes; ``say`` one line when a later phase starts.
    """
    from ..drivers.target import Capabilities
    from ..drivers.target import close as close_target

    database = open_database(plan.database) if plan.database is not None else None
    impl = target.open()
    capabilities = Capabilities.of(impl)
    try:
        result = run_conformance(
            impl, examples=plan.examples, steps=plan.steps, seed=plan.seed, progress=progress,
            stop_at_first_failure=plan.stop_at_first_failure,
            explore_seconds=plan.explore_seconds, explore_depth=plan.explore_depth,
            explore_states=plan.explore_states, explore_progress=explore_progress,
            database=database,
            database_key=target.identity(capabilities.line, capabilities.release))
        for failure in result.failures:
            if failure.from_database and plan.database is not None:
                failure.from_database = plan.database
    finally:
        if target.isolate:
            close_target(impl)
    result.plan, result.target, result.capabilities = plan, target, capabilities
    context = PhaseContext(plan, target, capabilities, result, say)
    for phase in LATER_PHASES:
        stopped = result.interrupted or (plan.stop_at_first_failure and bool(result.failures))
        if not phase.applies(plan, target) or (stopped and not phase.after_a_stop):
            continue
        try:
            phase.run(context)
        except KeyboardInterrupt:
            result.interrupted = True
    return result


@dataclass
class PhaseContext:
    """What a phase of :data:`LATER_PHASES` works on: the plan, the target (and what it
    declared), the run's result so far (its ledger, failures, phases) and the progress line."""

    plan: Plan
    target: Target
    capabilities: Capabilities
    result: RunResult
    say: Callable[[str], None] | None = None

    def tell(self, line: str) -> None:
        if self.say is not None:
            self.say(line)


class ModelCheckPhase:
    """The model checker's results, where they are for this target's code."""

    name = "model check"
    #: runs even when the run stopped at its first failure (it checks nothing new)
    after_a_stop = True

    def applies(self, plan: Plan, target: Target) -> bool:
        return plan.model_check

    def run(self, context: PhaseContext) -> None:
        _model_check_phase(context.result, context.target)


class LivePhase:
    """The running free-threaded interpreter (where the probe is built)."""

    name = "live"
    after_a_stop = False

    def applies(self, plan: Plan, target: Target) -> bool:
        return plan.live_examples > 0

    def run(self, context: PhaseContext) -> None:
        _live_phase(context.result, context.plan, context.say)


class ConcurrentPhase:
    """The bounded concurrent torture of the target (conformance.checks.concurrent); with
    ``--concurrency-rounds 0`` it only says what would check the ordering facts."""

    name = "concurrent"
    after_a_stop = False

    def applies(self, plan: Plan, target: Target) -> bool:
        return True

    def run(self, context: PhaseContext) -> None:
        from . import concurrent
        if context.plan.concurrency_rounds > 0:
            context.tell("concurrent torture ...")
        context.result.phases.append(self.name)
        concurrent.run_phase(context.result, context.plan, context.target,
                             context.capabilities, Failure)


class HardwarePhase:
    """A C ABI library's hardware litmus through its own functions, and the TSan torture of
    $QSBR_LIBRARY_TSAN (conformance.checks.hw_phase)."""

    name = "hardware"
    after_a_stop = False

    def applies(self, plan: Plan, target: Target) -> bool:
        return target.kind == "cabi" and plan.concurrency_rounds > 0

    def run(self, context: PhaseContext) -> None:
        from . import hw_phase
        hw_phase.run_phase(context.result, context.target, context.plan, context.say)


#: The phases after the sequential ones (layout, comparisons, scenario, exhaustive, random:
#: :func:`run_conformance`), in the order they run (conformance.checks.plan.PHASES).  Each has
#: ``name``, ``after_a_stop``, ``applies(plan, target)`` and ``run(context)``; adding a phase is
#: one line here.
LATER_PHASES: tuple[Any, ...] = (ModelCheckPhase(), LivePhase(), ConcurrentPhase(),
                                 HardwarePhase())


def _model_check_phase(result: RunResult, target: Target) -> None:
    from ..model import profiles
    from . import modelcheck

    result.phases.append("model check")
    folder = profiles.build_folder(result.release or result.profile)
    result.modelcheck = modelcheck.apply(result.ledger, folder,
                                         reference_port=target.kind == "reference")


def _live_phase(result: RunResult, plan: Plan, say: Callable[[str], None] | None) -> None:
    """Checks the running free-threaded interpreter (where the probe is built) and credits
    what it confirmed to the ledger's ``live`` source when the interpreter has the API line
    being checked."""
    from . import live

    if not live.probe_available():
        return
    if say is not None:
        say("checking the live interpreter ...")
    result.phases.append("live")
    result.live = live.live_check(plan.live_examples, plan.seed)
    if result.live.profile == result.profile and not result.live.failures:
        for fact, count in result.live.checks.items():
            result.ledger.passed(fact, source="live", count=count)
