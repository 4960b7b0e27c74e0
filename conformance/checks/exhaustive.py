"""Bounded-exhaustive differential exploration of the adapter protocol.

Breadth first, from a few start points, over EVERY action of the protocol (misuse, fork, fini,
set_sequences, growth and allocation failure included), comparing the implementation with the
oracle after every call: the return value (or the exception's class) and the whole observable
state.  States are canonicalised before they enter the visited set:

* thread states are renamed (only what a thread state's own slot pointer designates matters:
  a slot index, no slot, or a stale slot; two thread states without a slot are interchangeable);
* sequence numbers are kept relative to ``wr_seq`` (``wr_seq - seq`` modulo 2^64), together with
  what still tells a wrap apart: how many advances ``wr_seq`` is from crossing 2^64 (capped),
  and for every sequence whether 2^64 lies between it and ``wr_seq``.

Two states with the same key behave the same under every action (up to the renaming), so a
visited state is not expanded again.  The implementation is driven by replay: each transition
starts from a fresh interpreter and replays the calls that led to its source state (a call that
left the observable state unchanged lets the next action reuse the same interpreter instead).
For an implementation isolated in a child process (conformance.drivers.isolation) a replay, the
new action and its snapshots travel in one round trip.

Start points (:data:`START_POINTS`): the initial state; a writer and an attached reader; the same
just below the 2^64 wrap; the array grown to 16 and to 32 and mostly emptied again.  Levels are
explored across every start point together, one depth at a time, until the depth bound, the
states bound (``max_states``: the same scope on every machine, which the conformance run uses)
or the time budget is reached; the result says how deep each start point was explored
completely and which bound stopped it.  Growth past 64 slots from every interesting state is
the differential module's growth scenario (a replay of 65 thread states per transition would
cost more than it finds); the boundaries each compared call stood on are credited to a
:class:`~conformance.model.boundaries.BoundaryLedger`.

Public entry point: :func:`explore` (used by the conformance run and by benchmarks; its
:class:`ExploreResult` gives the numbers of distinct states, transitions and checked steps, and
the time spent in snapshots and comparisons).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ..drivers import interrupt
from ..model import errors
from ..model.adapter import Implementation
from ..model.boundaries import BoundaryLedger
from ..model.facts import MISUSE
from ..model.ledger import FactLedger
from ..model.oracle import OracleInterpreter, _Slot, _ThreadState
from .blame import blame
from .compare import Expected, Observed, compare_step, state_differences
from .exhaustive_actions import (  # noqa: F401 - re-exported
    BESIDE,
    START_POINTS,
    Action,
    _OracleRun,
    actions,
    oracle_fingerprint,
)
from .failure import Failed, FailureRecord
from .statediff import state_of_fingerprint
from .steps import NO_RESULT, StepRecord

U64 = (1 << 64) - 1
HALF = 1 << 63

#: Default bounds of the exploration in the default conformance run.
DEFAULT_SECONDS = 10.0
DEFAULT_DEPTH = 6
#: Default bound on distinct states (with a seed, the conformance run bounds the exploration by
#: states, not by time, so a replay reaches the same scope on any machine): about 8 s on the
#: reference port on a loaded two-core machine.
DEFAULT_MAX_STATES = 6000
#: Depth explored completely whatever the time bound says (so that what the default run checks
#: does not depend on how loaded the machine is): about 13,000 transitions, 2-3 s of CPU time
#: on the reference port.
DEFAULT_MIN_DEPTH = 3
#: Most live thread states a state may have (a new_thread_state beyond it is not explored).
DEFAULT_MAX_THREADS = 3
#: How many advances before the 2^64 wrap still count as "near" it in the canonical key.
_WRAP_HORIZON = 32


# -- calls: what one transition does, in the protocol's terms -----------------------------------

#: A concrete call: (operation, logical thread or None, args, compare-after?, note).
Call = tuple[str, "int | None", tuple, bool, str]

# Running a batch of calls and fingerprinting the state: the drivers' side (an isolated child
# runs them too, and drivers never import checks).
from ..drivers.batch import execute_calls, impl_fingerprint  # noqa: E402,F401 - re-exported

# -- canonical states -------------------------------------------------------------------------

def canonical_key(o: OracleInterpreter) -> tuple:
    """The oracle's state up to thread renaming, with sequences relative to ``wr_seq``."""
    wr = o.wr_seq

    def seq(value: int) -> tuple[int, bool] | None:
        if value == 0:
            return None
        return ((wr - value) & U64, value > wr)     # offset; 2^64 lies between

    slots = tuple([(seq(s.seq) if s.seq else None, s.allocated, s.owner is not None,
                    tuple(s.bookkeeping.values())) for s in o.slots])
    freelist = []
    index = o.freelist
    while index is not None:
        freelist.append(index)
        index = o.slots[index].next_free
    pointers = sorted((-2 if t.stale else -1 if t.slot is None else t.slot)
                      for t in o.threads.values())
    return (min((U64 - wr) // 2, _WRAP_HORIZON), seq(o.rd_seq), slots, tuple(freelist),
            tuple(pointers), o._failing_allocations)


def _state(o: OracleInterpreter) -> tuple:
    """What tells two oracle states apart for the exploration: the fingerprint and the armed
    allocation failures (which no snapshot shows)."""
    return (oracle_fingerprint(o), o._failing_allocations)


# -- the exploration ---------------------------------------------------------------------------

@dataclass
class StartScope:
    name: str
    depth_complete: int = 0         # every path of this length was explored
    states: int = 0                 # distinct states first reached from this start point
    transitions: int = 0


#: The failure record's old names here (conformance.checks.failure).
ExploreFailure = FailureRecord
_Failed = Failed


@dataclass
class ExploreResult:
    """What :func:`explore` compared, and how long it took where."""

    profile: str
    max_threads: int
    depth_bound: int
    seconds_bound: float | None
    min_depth: int = DEFAULT_MIN_DEPTH
    #: bound on distinct states (None: none); reproducible, unlike the time bound
    states_bound: int | None = None
    starts: list[StartScope] = field(default_factory=list)
    states: int = 0                 # distinct canonical states reached (visited set)
    transitions: int = 0            # actions run and compared
    steps: int = 0                  # protocol calls compared with the oracle (incl. snapshot)
    replayed_calls: int = 0         # calls run again to reach a source state (not compared)
    seconds: float = 0.0
    seconds_implementation: float = 0.0     # the implementation's calls and snapshots
    seconds_oracle: float = 0.0             # the oracle's calls, fingerprints and keys
    stopped_by: str = "depth"       # "depth", "states", "time" or "failure"
    failure: ExploreFailure | None = None

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0

    @property
    def depth_complete(self) -> int:
        return min((s.depth_complete for s in self.starts), default=0)

    def scope(self) -> dict[str, Any]:
        return {"profile": self.profile, "max_thread_states": self.max_threads,
                "depth_bound": self.depth_bound, "seconds_bound": self.seconds_bound,
                "states_bound": self.states_bound,
                "depth_guaranteed": self.min_depth,
                "depth_complete": self.depth_complete, "distinct_states": self.states,
                "transitions": self.transitions, "checked_steps": self.steps,
                "replayed_calls": self.replayed_calls, "seconds": round(self.seconds, 3),
                "steps_per_second": round(self.steps_per_second),
                "stopped_by": self.stopped_by,
                "start_points": [{"name": s.name, "depth_complete": s.depth_complete,
                                  "distinct_states": s.states, "transitions": s.transitions}
                                 for s in self.starts]}

    def summary(self) -> str:
        starts = "; ".join(f"{s.name}: depth {s.depth_complete}" for s in self.starts)
        return (f"exhaustive: {self.states} distinct states, {self.transitions} transitions, "
                f"{self.steps} checked steps ({self.steps_per_second:,.0f}/s) with up to "
                f"{self.max_threads} thread states; complete to depth {starts}"
                f"{self._stop_note()}")

    def _stop_note(self) -> str:
        if self.stopped_by == "time":
            return " (time bound reached)"
        if self.stopped_by == "states":
            return f" (states bound {self.states_bound} reached)"
        return ""


@dataclass
class _Node:
    start: int
    calls: tuple[Call, ...]         # from a fresh interpreter, start prefix included
    actions: tuple[Action, ...]     # the actions after the start prefix


def _records(calls: list[Call], outcomes: dict[int, tuple], profile: str) -> list[StepRecord]:
    """Step records for ``calls`` (run from a fresh interpreter); ``outcomes`` maps positions
    to what the implementation did.  Calls without one were compared earlier (or replayed
    after being compared) and agreed with the oracle, so the oracle's results are shown."""
    oracle = OracleInterpreter(profile)
    records = []
    for position, (operation, thread, args, _compare, note) in enumerate(calls):
        result: Any = NO_RESULT
        error = None
        try:
            result = getattr(oracle, operation)(*(((thread,) if thread is not None else ())
                                                  + args))
        except errors.QsbrError as exc:
            error = type(exc).__name__
        outcome = outcomes.get(position)
        if outcome is not None:
            result, error = NO_RESULT, None
            if outcome[0] == "ok":
                result = outcome[1]
            elif outcome[0] == "qsbr":
                error = outcome[1]
            else:
                error = str(outcome[1])
        if result is None:
            result = NO_RESULT
        records.append(StepRecord(operation, thread, args, result, error, note))
    return records


def _normal(raw: tuple) -> dict[str, Any]:
    """A :func:`_raw` snapshot in the comparator's normal form (conformance.checks.compare)."""
    return {"wr_seq": raw[0], "rd_seq": raw[1], "size": raw[2], "slots": list(raw[3]),
            "freelist": list(raw[4]), "threads": dict(raw[5])}


def _raw(snap: Any) -> tuple:
    """A snapshot in the implementation's own handles, to hold it to itself."""
    slots = tuple((s.seq, bool(s.allocated), s.owner, tuple(s.bookkeeping))
                  for s in snap.slots)
    return (snap.wr_seq, snap.rd_seq, snap.size, slots, tuple(snap.freelist),
            tuple(sorted(snap.threads.items(), key=repr)))


class _Explorer:
    def __init__(self, impl: Implementation, ledger: FactLedger, result: ExploreResult,
                 deadline: float) -> None:
        self.impl = impl
        self.ledger = ledger
        self.result = result
        self.deadline = deadline
        self.visited: set[tuple] = set()
        self.parent_fingerprint: tuple = ()
        self.boundaries: BoundaryLedger | None = None
        #: the start point being explored, and its second interpreter's setup (BESIDE)
        self.start = ""
        self.beside: _OracleRun | None = None
        self.marker: str | None = None

    # running calls on the implementation

    def _fresh(self) -> tuple[Any, ...]:
        """A fresh interpreter (and, for a start point of BESIDE, the second interpreter set
        up beside it first, its setup compared, and its snapshot to hold it to)."""
        beside: Any = None
        if self.beside is not None:
            other = self.impl.new_interpreter()
            session: tuple[Any, ...] = (other, [], getattr(other, "run_calls", None), None)
            beside = session
            try:
                outcomes = self._run_impl(session, self.beside.calls)
                self._check(self.beside, 0, outcomes, list(self.beside.calls), self.start)
                beside = (*session[:3], _raw(other.snapshot()))
            except BaseException:
                self._close(beside, beside=True)
                raise
        interp = self.impl.new_interpreter()
        runner = getattr(interp, "run_calls", None)     # isolated: one round trip
        return interp, [], runner, beside

    def _check_beside(self, session: tuple[Any, ...], executed: list[Call]) -> None:
        """S-INTERP-1/2: the second interpreter is as it was after its setup."""
        beside = session[3]
        if beside is None or self.beside is None:
            return
        now = _raw(beside[0].snapshot())
        if now == beside[3]:
            self.ledger.passed("S-INTERP-1", "S-INTERP-2", source="exhaustive")
            return
        parts, lines = state_differences(_normal(now), _normal(beside[3]))
        facts = blame(("S-INTERP-1", "S-INTERP-2"), parts)
        message = ("the second interpreter changed while only the first was used:\n  "
                   + "\n  ".join(lines))
        companion = len([c for c in self.beside.calls if c[0] == "new_thread_state"])
        records = (_records(list(self.beside.calls), {}, self.impl.profile)
                   + [StepRecord("new_interpreter", result=1, note="several interpreters")]
                   + [replace(r, thread=None if r.thread is None else r.thread + companion,
                              result=r.result + companion
                              if r.operation == "new_thread_state" else r.result)
                      for r in _records(executed, {}, self.impl.profile)])
        self.ledger.failed(facts, message, source="exhaustive")
        raise Failed(FailureRecord.with_records("exhaustive", tuple(sorted(facts)), message,
                                                records, start=self.start))

    def _run_impl(self, session: tuple[Any, ...], calls: list[Call]) -> list[tuple]:
        interp, handles, runner = session[:3]
        started = time.perf_counter()
        try:
            if runner is not None:
                return list(runner(calls, self.impl.profile))
            return execute_calls(interp, calls, handles, self.impl.profile)
        finally:
            self.result.seconds_implementation += time.perf_counter() - started

    @classmethod
    def _close(cls, session: tuple[Any, ...] | None, beside: bool = False) -> None:
        if session is not None:
            try:
                # Armed failures may be the process's, not the interpreter's (the reference
                # port's allocator): none may outlive the interpreter they were armed on.
                session[0].fail_next_allocations(0)
                session[0].close()
            except errors.QsbrError:
                pass
            if not beside and len(session) > 3:
                cls._close(session[3], beside=True)

    # one transition

    def _check(self, run: _OracleRun, first: int, outcomes: list[tuple], executed: list[Call],
               start_name: str, before: tuple | None = None) -> None:
        """Compare the implementation's outcomes of run.calls[first:] with the oracle's;
        ``before``: the oracle's fingerprint before the first of them (for blame)."""
        compared = [i for i in range(first, len(run.calls)) if run.calls[i][3]]
        expected = run.expected[len(run.expected) - len(compared):]
        done: dict[int, tuple] = {}
        offset = len(executed) - (len(run.calls) - first)
        for position, want, got in zip(compared, expected, outcomes, strict=False):
            done[offset + position - first] = got
            error, value, applied, fingerprint, reached, copied, after_fini = want
            kind = got[0]
            observed_error = got[1] if kind == "qsbr" else None
            if not (kind == "ok" and error is None and got[1] == value
                    or kind == "qsbr" and error == got[1]) or got[2] != fingerprint:
                call = run.calls[position]
                verdict = compare_step(Expected(
                    call[0], StepRecord(call[0], call[1], call[2]).call(),
                    frozenset(applied), error, value, state=state_of_fingerprint(fingerprint),
                    before=state_of_fingerprint(before) if before is not None else None,
                    thread=call[1], copied=copied, after_fini=after_fini,
                    profile=self.impl.profile), Observed(
                    observed_error, got[1] if kind == "ok" else None,
                    str(got[1]) if kind == "exception" else None,
                    state_of_fingerprint(got[2]) if got[2] else None,
                    tuple(got[2][6]) if got[2] and len(got[2]) > 6 else ()))
                if verdict is not None:
                    records = _records(executed[:offset + position - first + 1], done,
                                       self.impl.profile)
                    self.ledger.failed(verdict.facts, verdict.message, source="exhaustive")
                    raise Failed(FailureRecord.with_records(
                        "exhaustive", verdict.facts, verdict.message, records, verdict.diff,
                        start=start_name))
            before = fingerprint
            self.ledger.passed(*(applied or (MISUSE,)), source="exhaustive")
            if self.boundaries is not None:
                self.boundaries.reached(*reached)
            self.result.steps += 1
        if len(outcomes) < len(compared):
            raise AssertionError("the implementation stopped before the end of its calls")

    def _transition(self, node: _Node, action: Action, session: Any, executed: list[Call],
                    oracle: OracleInterpreter | None, parent_oracle: OracleInterpreter,
                    start_name: str
                    ) -> tuple[Any, list[Call], OracleInterpreter, bool, tuple, list[Call]]:
        """Run ``action`` from ``node``; returns the session, calls executed on it, the oracle,
        whether the state changed, the new oracle state's key and the action's calls."""
        interrupt.check()           # a Ctrl-C dropped somewhere comes back here
        started = time.perf_counter()
        if oracle is None:
            oracle = _clone(parent_oracle)
        before = self.parent_fingerprint
        run = _OracleRun(oracle)
        run.run(action)
        after = _state(oracle) if run.expected or action.name == "fail_next_allocations" \
            else before
        changed = after != before
        self.result.seconds_oracle += time.perf_counter() - started
        calls = list(run.calls)
        if session is None:
            session = self._fresh()
            replayed = list(node.calls)
            executed = replayed + calls
            self.result.replayed_calls += len(replayed)
            batch = [(c[0], c[1], c[2], False, c[4]) for c in replayed] + calls
        else:
            executed = executed + calls
            batch = calls
        try:
            outcomes = self._run_impl(session, batch)
        except errors.ImplementationCrashedError as exc:
            applied = {f for want in run.expected for f in want[2]}
            facts = blame(applied, ["result"], operation=calls[-1][0] if calls else None,
                          profile=self.impl.profile,
                          after_fini=bool(run.expected and run.expected[-1][6]))
            records = _records(executed, {}, self.impl.profile)
            self.ledger.failed(facts, str(exc), source="exhaustive")
            raise Failed(FailureRecord.with_records(
                "exhaustive", tuple(sorted(facts)), f"{action.label()}: {exc}", records,
                start=start_name)) from None
        self._check(run, 0, outcomes, executed, start_name, before[0] if before else None)
        self._check_beside(session, executed)
        self.result.transitions += 1
        key: tuple = ()
        if changed:
            started = time.perf_counter()
            key = canonical_key(oracle)
            self.result.seconds_oracle += time.perf_counter() - started
        return session, executed, oracle, changed, key, calls

    def expand(self, node: _Node, start_oracle: OracleInterpreter, start_name: str,
               max_threads: int, scope: StartScope) -> Iterator[_Node]:
        parent = _clone(start_oracle)
        replay = _OracleRun(parent)
        for a in node.actions:
            replay.run(a)
        self.parent_fingerprint = _state(parent)
        todo = actions(parent, max_threads)
        session = None
        executed: list[Call] = []
        current: OracleInterpreter | None = None
        try:
            for action in todo:
                try:
                    session, executed, current, changed, key, calls = self._transition(
                        node, action, session, executed, current, parent, start_name)
                except Failed:
                    if session is None:
                        raise
                    # Found after earlier actions that left the state as it was: report the
                    # shorter sequence from a fresh interpreter when it fails the same way.
                    self._close(session)
                    session = None
                    self._transition(node, action, None, [], None, parent, start_name)
                    raise
                scope.transitions += 1
                if changed:
                    self._close(session)
                    session, current = None, None
                    key = (self.marker, key)
                    if key not in self.visited:
                        self.visited.add(key)
                        scope.states += 1
                        yield _Node(node.start, node.calls + tuple(calls),
                                    node.actions + (action,))
        finally:
            self._close(session)


def _beside_run(profile: str, name: str) -> _OracleRun | None:
    """The second interpreter's setup for a start point of BESIDE, run on its oracle."""
    if name not in BESIDE:
        return None
    run = _OracleRun(OracleInterpreter(profile))
    BESIDE[name](run)
    return run


def _clone(o: OracleInterpreter) -> OracleInterpreter:
    """A copy of an oracle interpreter (cheaper than replaying its history)."""
    copy = OracleInterpreter.__new__(OracleInterpreter)
    copy.__dict__.update(o.__dict__)
    copy.slots = [_Slot(s.seq, s.owner, s.allocated, s.next_free, dict(s.bookkeeping))
                  for s in o.slots]
    copy.threads = {h: _ThreadState(t.slot, t.stale) for h, t in o.threads.items()}
    copy.pushed_by = dict(o.pushed_by)
    copy._armed_since = set(o._armed_since)
    copy.applied = []
    copy.reached = []
    return copy


def explore(impl: Implementation, *, depth: int = DEFAULT_DEPTH,
            seconds: float | None = DEFAULT_SECONDS, max_threads: int = DEFAULT_MAX_THREADS,
            starts: list[str] | None = None, ledger: FactLedger | None = None,
            progress: Callable[[ExploreResult], None] | None = None,
            min_depth: int = DEFAULT_MIN_DEPTH, max_states: int | None = None,
            boundaries: BoundaryLedger | None = None) -> ExploreResult:
    """Explore every action sequence up to ``depth`` actions from each start point.

    Stops at the depth bound, when ``seconds`` have passed or ``max_states`` distinct states
    were reached once ``min_depth`` levels are complete (the level being explored is then
    incomplete, and the result says so; the first ``min_depth`` levels are always explored
    whole, so what is checked does not depend on the machine's speed), or at the first
    difference from the oracle.  ``seconds=None`` sets no time bound: with ``max_states`` the
    scope is then the same on every run and machine (the order of expansion is fixed), which is
    what a replay needs.  Boundaries the compared calls stood on go to ``boundaries``
    (``result.failure``, with the whole step sequence).  Checks are credited to the ledger's
    ``exhaustive`` source.  ``result.steps / result.seconds`` is the throughput in checked
    steps per second (what the benchmarks measure).
    """
    ledger = ledger if ledger is not None else FactLedger()
    names = list(START_POINTS) if starts is None else starts
    unknown = [n for n in names if n not in START_POINTS]
    if unknown:
        raise ValueError(f"unknown start point(s) {unknown}; known: {list(START_POINTS)}")
    min_depth = min(min_depth, depth)
    result = ExploreResult(profile=impl.profile, max_threads=max_threads, depth_bound=depth,
                           seconds_bound=seconds, min_depth=min_depth, states_bound=max_states)
    began = time.perf_counter()
    deadline = began + seconds if seconds is not None else float("inf")
    explorer = _Explorer(impl, ledger, result, deadline)
    explorer.boundaries = boundaries
    frontiers: list[list[_Node]] = []
    start_oracles: list[OracleInterpreter] = []
    besides: list[_OracleRun | None] = []
    try:
        for index, name in enumerate(names):
            scope = StartScope(name)
            result.starts.append(scope)
            oracle = OracleInterpreter(impl.profile)
            run = _OracleRun(oracle)
            START_POINTS[name](run)
            start_oracles.append(oracle)
            besides.append(_beside_run(impl.profile, name))
            explorer.start, explorer.beside = name, besides[-1]
            explorer.marker = name if name in BESIDE else None
            # The start prefix is itself compared, call by call.
            session = explorer._fresh()
            try:
                outcomes = explorer._run_impl(session, run.calls)
                explorer._check(run, 0, outcomes, list(run.calls), name)
            finally:
                explorer._close(session)
            key = (explorer.marker, canonical_key(oracle))
            frontier = []
            if key not in explorer.visited:
                explorer.visited.add(key)
                scope.states += 1
                frontier.append(_Node(index, tuple(run.calls), ()))
            frontiers.append(frontier)
        for level in range(1, depth + 1):
            next_frontiers: list[list[_Node]] = []
            for index, frontier in enumerate(frontiers):
                scope = result.starts[index]
                found: list[_Node] = []
                for node in frontier:
                    if level > min_depth and max_states is not None and (
                            len(explorer.visited) >= max_states):
                        result.stopped_by = "states"
                        raise TimeoutError
                    if level > min_depth and time.perf_counter() > deadline:
                        result.stopped_by = "time"
                        raise TimeoutError
                    explorer.start, explorer.beside = names[index], besides[index]
                    explorer.marker = names[index] if names[index] in BESIDE else None
                    found.extend(explorer.expand(node, start_oracles[index], names[index],
                                                 max_threads, scope))
                    if progress is not None:
                        result.seconds = time.perf_counter() - began
                        result.states = len(explorer.visited)
                        progress(result)
                scope.depth_complete = level
                next_frontiers.append(found)
            frontiers = next_frontiers
            if not any(frontiers):
                for scope in result.starts:
                    scope.depth_complete = depth
                break
    except TimeoutError:
        pass
    except Failed as exc:
        result.failure = exc.failure
        result.stopped_by = "failure"
    except errors.ImplementationCrashedError as exc:
        result.failure = FailureRecord("exhaustive", (MISUSE,), str(exc))
        result.stopped_by = "failure"
    result.states = len(explorer.visited)
    result.seconds = time.perf_counter() - began
    return result
