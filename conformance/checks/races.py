"""Race probes: two or three threads inside operations at once, judged against the model.

Part of the Python-threads torture (conformance.checks.pytorture) for implementations that
declare ``thread_safe = True`` (docs/adapter-protocol.md, 'Thread safety').  The probes are
derived from the protocol's table of which operations may run at the same time
(conformance.checks.race_table): every pair it allows, the three-thread shapes a scan depends
on, and a few multi-step scenarios (:func:`_scenarios`).  Each probe round takes a fresh
interpreter and a fresh model (conformance.model.oracle), brings both into one of the start
states that matter (race_table.STATES) one step at a time (each thread state handled by the
worker thread that will race with it), then runs the worker threads at once.

The judgement is linearizability: the results and the snapshot afterwards must be those of one
order of the threads' operations (each thread's own order kept) run one at a time by the
model.  Any lost update, double pop, lost store or backward step shows as an outcome no order
gives.  The fact named is the one whose rule decides what differs (conformance.checks.blame),
with S-RES-1 for every round with a reserve (its mutual exclusion), S-ADV-1 when advance goals
repeat or wr_seq moved by other than 2 per advance (conformance.checks.contract.judge_advances),
and S-POLL-2 when rd_seq differs after a poll.  An exception other than the protocol's errors,
raised by an operation (in a round or in its set-up), fails the round too, charged to the facts
that operation's rule applies, with the probe, the operations, the schedule and the traceback.

Two kinds of round (:class:`Schedule`).  Stepped rounds make the interleaving, whatever the
build and the scheduler: a trace function (``sys.settrace`` with opcode events, in the racing
thread only, for the implementation's Python code only) stops one thread before its k-th
*access point* -- an instruction that reads or writes shared state or calls (attribute and
item loads and stores, globals, calls, iteration) -- at which it holds none of the
implementation's own locks; the other threads run their whole lists (one after the other, in
both orders for three threads), then the first finishes.  Rounds sweep k = 1, 2, ... until the
thread ran out of points (or the cap), for each thread in turn: every single preemption at
instruction granularity, so a window of a few bytecodes (a check and its store on one line) is
forced every run.  C code has no points: it is never stopped.  Free rounds release the threads
together from a spinning barrier: truly parallel on a free-threaded build.

The locks: those reachable from the interpreter and implementation objects through
attributes and containers, a few levels deep (:func:`locks_of`), plus those an interpreter
declares with the optional ``race_locks()`` (docs/adapter-protocol.md).  A stopped thread that
holds a lock the scan did not find blocks the others; it is released after ESCAPE_SECONDS, an
*escape* that is counted and reported (it changes which interleaving ran, never a verdict).
"""

from __future__ import annotations

import copy
import functools
import itertools
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..drivers.taskthread import TaskThread
from ..model import errors
from ..model.facts import MISUSE
from ..model.oracle import OracleInterpreter
from . import contract, race_table
from .blame import blame
from .stepping import ESCAPE_SECONDS, Schedule, locks_of, run_free, run_stepped

__all__ = ["ESCAPE_SECONDS", "Op", "RaceResult", "Schedule", "race_probes"]

#: Seconds between forced switches on GIL builds (``sys.setswitchinterval``).
FORCED_SWITCH_INTERVAL = 1e-6
STAGGERS = 8            # start offsets of the free rounds, in calls
POINTS = 64             # default cap of the stepped rounds' preemption points per thread
FREE_ROUNDS = 1         # free rounds per probe and start state
PROGRESS_ROUNDS = 25    # rounds between two progress reports
LINES = POINTS          # (the former name)


def gil_enabled() -> bool:
    return bool(getattr(sys, "_is_gil_enabled", lambda: True)())


def evidence(switch_interval: float | None, stepped: int = 0) -> str:
    """What a clean run of the Python-threads torture shows on this build, in one line."""
    probes = (f"; {stepped} stepped race-probe rounds preempted one thread at each access "
              "point of the implementation's Python code in turn (where it holds none of its "
              "own locks)" if stepped else "")
    if not gil_enabled():
        return ("truly parallel: free-threaded build with the GIL off, so a race anywhere in "
                "the implementation can show" + probes)
    forced = (f"switches forced every {switch_interval:g} s (sys.setswitchinterval)"
              if switch_interval else
              f"the interpreter's own switch interval ({sys.getswitchinterval():g} s)")
    return ("GIL on, " + forced + ": outside the stepped rounds threads interleave only where "
            "the interpreter may switch (calls, loop back-edges, blocking calls)" + probes
            + "; a race needing two preemptions or inside C code that holds the GIL is not "
            "exercised: weaker evidence than a free-threaded run")


class switching:
    """Context manager: on a GIL build, force frequent thread switches; restore afterwards."""

    def __init__(self, interval: float | None) -> None:
        self.interval = interval if gil_enabled() else None
        self.saved = sys.getswitchinterval()

    def __enter__(self) -> switching:
        if self.interval:
            sys.setswitchinterval(self.interval)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.interval:
            sys.setswitchinterval(self.saved)


# --- one operation, on both sides -----------------------------------------------------------

@dataclass(frozen=True)
class Op:
    name: str
    thread: str | None = None       # logical thread-state name, or None
    args: tuple = ()

    def __str__(self) -> str:
        inner = ", ".join(([self.thread] if self.thread is not None else [])
                          + [repr(a) for a in self.args])
        return f"{self.name}({inner})"


class OperationRaised(Exception):
    """An operation raised something other than the protocol's errors."""

    def __init__(self, op: Op, exc: BaseException) -> None:
        self.op, self.exc = op, exc
        self.trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        super().__init__(f"{op} raised {type(exc).__name__}: {exc}")


def _outcome(call: Callable[[], Any], op: Op | None = None) -> tuple[str, Any]:
    try:
        return "ok", call()
    except errors.QsbrError as exc:
        return "raises", type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - reported with the probe (OperationRaised)
        return "exception", OperationRaised(op or Op("?"), exc)


@dataclass
class RaceResult:
    rounds: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    caught_at: dict[str, int] = field(default_factory=dict)    # fact -> first failing round
    replay: dict[str, str] = field(default_factory=dict)       # fact -> the probe to rerun
    tracebacks: list[str] = field(default_factory=list)
    escaped: list[str] = field(default_factory=list)           # probes whose pause escaped
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("stepped", "free", "skipped", "preemptions", "escapes"), 0))

    def fail(self, facts: set[str], detail: str, replay: str = "") -> None:
        for fact in sorted(facts):
            self.caught_at.setdefault(fact, self.rounds)
            if replay:
                self.replay.setdefault(fact, replay)
            details = self.errors.setdefault(fact, [])
            if len(details) < 3:
                details.append(detail)


#: The facts of an operation that the semantics gives none (thread-state creation and
#: deletion): S-SLOT-1, thread states and their slots.
_NO_FACT = ("S-SLOT-1",)
_THREAD_STATE_OPS = ("new_thread_state", "delete_thread_state")


def facts_of(model: OracleInterpreter, op: Op, handles: dict[str, int]) -> set[str]:
    """The facts ``op``'s rule applies, from the model in the state it raised in."""
    trial = copy.deepcopy(model)
    trial.applied = []
    args = op.args if op.thread is None else (handles.get(op.thread), *op.args)
    try:
        getattr(trial, op.name)(*args)
    except Exception:  # noqa: BLE001 - the facts applied before it refused are still its own
        pass
    facts = {f for f in trial.applied if not f.startswith("S-SEQ-")}
    return facts or set(_NO_FACT)


class _Round:
    """One probe round: a fresh interpreter and model, set up step by step."""

    def __init__(self, implementation: Any, profile: str, workers: list[TaskThread]) -> None:
        self.implementation = implementation
        self.interp = implementation.new_interpreter()
        self.model = OracleInterpreter(profile)
        self.workers = workers
        self.impl_handle: dict[str, Any] = {}
        self.model_handle: dict[str, int] = {}
        self.owner: dict[str, int] = {}       # thread-state name -> worker index (-1: main)
        self.fillers = 0
        self.pending: dict[str, int] = {}     # thread-state name -> index reserved for it
        self.pending_index = -1

    def _impl_call(self, op: Op) -> Callable[[], Any]:
        method = getattr(self.interp, op.name)
        args = op.args if op.thread is None else (self.impl_handle[op.thread], *op.args)
        return lambda: method(*args)

    def _model_call(self, model: OracleInterpreter, op: Op,
                    handles: dict[str, int] | None = None) -> tuple[str, Any]:
        handles = self.model_handle if handles is None else handles
        args = op.args if op.thread is None else (handles[op.thread], *op.args)
        return _outcome(lambda: getattr(model, op.name)(*args))

    def _run(self, worker: int, call: Callable[[], Any], op: Op) -> tuple[str, Any]:
        got = (_outcome(call, op) if worker < 0
               else self.workers[worker].run(lambda: _outcome(call, op)))
        if got[0] == "exception":
            raise got[1]
        return got

    def step(self, op: Op, worker: int = -1) -> Any:
        """A setup step: run on both sides; they must agree (the sequential run's business
        otherwise: a difference here is reported as a harness error, not a race)."""
        got = self._run(worker, self._impl_call(op), op)
        want = self._model_call(self.model, op)
        if got != want:
            raise RuntimeError(f"setup step {op} gave {got}, the model {want}: a sequential "
                               "difference (the conformance run reports it)")
        return got[1]

    def thread_state(self, name: str, worker: int = -1, register: bool = True,
                     attach: bool = False) -> None:
        """A thread state created (and registered, attached) by ``worker``: its calls run as
        one task there (one hand-over), each then compared with the model's."""
        interp = self.interp
        ops = [Op("new_thread_state")] + ([Op("reserve")] if register else [])

        def task() -> list[tuple[str, Any]]:
            outs = [_outcome(interp.new_thread_state, ops[0])]
            if register and outs[-1][0] == "ok":
                handle = outs[0][1]
                outs.append(_outcome(interp.reserve, ops[1]))
                if outs[-1][0] == "ok":
                    index = outs[-1][1]
                    outs.append(_outcome(lambda: interp.register(handle, index),
                                         Op("register", name, (index,))))
                    if attach and outs[-1][0] == "ok":
                        outs.append(_outcome(lambda: interp.attach(handle),
                                             Op("attach", name)))
            return outs

        outs = task() if worker < 0 else self.workers[worker].run(task)
        for outcome in outs:
            if outcome[0] == "exception":
                raise outcome[1]
        self.impl_handle[name] = outs[0][1]
        self.model_handle[name] = self.model.new_thread_state()
        self.owner[name] = worker
        if not register:
            return
        index = outs[1][1]
        steps = [Op("reserve"), Op("register", name, (index,))] + (
            [Op("attach", name)] if attach else [])
        for op, got in itertools.zip_longest(steps, outs[1:]):
            want = self._model_call(self.model, op)
            if got != want:
                raise RuntimeError(f"setup step {op} gave {got}, the model {want}: a "
                                   "sequential difference (the conformance run reports it)")

    def fill(self, free: int) -> None:
        """Register fillers until exactly ``free`` slots are on the freelist (the array
        exists)."""
        if not self.model.slots:
            self.thread_state(f"f{self.fillers}")
            self.fillers += 1
        while len(self.model.snapshot().freelist) > free:
            self.thread_state(f"f{self.fillers}")
            self.fillers += 1

    @staticmethod
    def state(snap: Any, to_name: dict) -> tuple:
        slots = tuple((s.seq, bool(s.allocated), to_name.get(s.owner, s.owner),
                       tuple(s.bookkeeping)) for s in snap.slots)
        threads = tuple(sorted((to_name.get(h, repr(h)), v) for h, v in snap.threads.items()))
        return (snap.wr_seq, snap.rd_seq, snap.size, slots, tuple(snap.freelist), threads)

    def close(self) -> None:
        self.interp.close()


_PARTS = ("wr_seq", "rd_seq", "size", "slots", "freelist", "threads")


def _differing(observed: tuple, expected: tuple) -> list[str]:
    parts = []
    for name, a, b in zip(_PARTS, observed, expected, strict=True):
        if a == b:
            continue
        if name != "slots":
            parts.append(name)
            continue
        for sa, sb in zip(a, b, strict=False):
            for pname, x, y in zip(("seq", "allocated", "owner", "bookkeeping"), sa, sb,
                                   strict=True):
                if x != y and pname not in parts:
                    parts.append(pname)
        if len(a) != len(b) and "size" not in parts:
            parts.append("size")
    return parts


def _orders(lists: list[list[Op]]) -> list[list[tuple[int, int]]]:
    """Every interleaving of the threads' lists that keeps each thread's order, as
    (thread, position) pairs."""
    total = sum(len(ops) for ops in lists)
    out = []
    for which in itertools.product(range(len(lists)), repeat=total):
        if any(which.count(t) != len(ops) for t, ops in enumerate(lists)):
            continue
        seen = [0] * len(lists)
        order = []
        for t in which:
            order.append((t, seen[t]))
            seen[t] += 1
        out.append(order)
    return out


# --- one round: run, judge ------------------------------------------------------------------

def _fresh(outs: list[list[tuple[str, Any]]], lists: list[list[Op]], known: set,
           names: dict[tuple[int, int], str]) -> tuple[list[list[tuple[str, Any]]], dict]:
    """new_thread_state's results as "a new handle" (distinct, never one already in use) or
    the name of the one it repeats; and the handle -> name map of the new ones."""
    handles: dict[Any, str] = {}
    normal = []
    for t, (ops, got) in enumerate(zip(lists, outs, strict=True)):
        row = []
        for i, (op, outcome) in enumerate(zip(ops, got, strict=True)):
            if op.name == "new_thread_state" and outcome[0] == "ok":
                handle = outcome[1]
                try:
                    repeated = handle in known or handle in handles
                except TypeError:
                    repeated = True
                if repeated:
                    outcome = ("ok", f"a handle already in use ({handle!r})")
                else:
                    handles[handle] = names[(t, i)]
                    outcome = ("ok", "a new handle")
            row.append(outcome)
        normal.append(row)
    return normal, handles


def _race(rnd: _Round, lists: list[list[Op]], schedule: Schedule, result: RaceResult,
          kind: str, stats: dict, count: list[int], replay: str) -> bool:
    """Run the lists as scheduled; judge; returns False when the round failed."""
    calls: list[list[Callable[[], tuple]]] = [
        [functools.partial(_outcome, rnd._impl_call(op), op) for op in ops] for ops in lists]
    locks = locks_of(rnd.interp, rnd.implementation)
    racers = (run_stepped(calls, schedule, locks, stats, count) if schedule.stepped
              else run_free(calls, schedule.offset))
    workers = [rnd.owner.get(next((op.thread for op in ops if op.thread), ""), -1)
               for ops in lists]
    free = [w for w in range(len(rnd.workers)) if w not in workers]
    workers = [w if w >= 0 else free.pop(0) for w in workers]
    for t, w in enumerate(workers):
        rnd.workers[w].start(racers[t])
    raw = [rnd.workers[w].result() for w in workers]
    if schedule.stepped and getattr(racers[schedule.first], "escaped", [False])[0]:
        result.escaped.append(f"{kind} ({schedule})")
    where = f"race probe '{kind}' (round {result.rounds}, {schedule})"
    for outs in raw:
        for outcome in outs:
            if outcome[0] == "exception":
                _raised(result, rnd, outcome[1], where, lists, replay)
                return False
    names = {(t, i): f"new{t}.{i}" for t, ops in enumerate(lists)
             for i, op in enumerate(ops) if op.name == "new_thread_state"}
    got, new_impl = _fresh(raw, lists, set(rnd.impl_handle.values()), names)
    observed = rnd.state(rnd.interp.snapshot(),
                         {**{h: n for n, h in rnd.impl_handle.items()}, **new_impl})
    expected = []
    for order in _orders(lists):
        model = copy.deepcopy(rnd.model)
        model.applied = []
        want_raw: list[list[Any]] = [[None] * len(ops) for ops in lists]
        for t, i in order:
            want_raw[t][i] = rnd._model_call(model, lists[t][i])
        want, new_model = _fresh(want_raw, lists, set(rnd.model_handle.values()), names)
        state = rnd.state(model.snapshot(),
                          {**{h: n for n, h in rnd.model_handle.items()}, **new_model})
        expected.append((want, state, model, order))
        if want == got and state == observed:
            rnd.model = model
            return True
    _not_linearizable(rnd, lists, got, observed, expected, result, where, replay)
    return False


def _raised(result: RaceResult, rnd: _Round, raised: OperationRaised, where: str,
            lists: list[list[Op]] | None, replay: str) -> None:
    facts = facts_of(rnd.model, raised.op, rnd.model_handle)
    ran = (" with threads running [" + " | ".join("; ".join(str(op) for op in ops)
                                                  for ops in lists) + "]") if lists else ""
    last = raised.trace.strip().splitlines()
    result.tracebacks.append(raised.trace)
    result.fail(facts, f"{where}{ran}: {raised.op} raised {type(raised.exc).__name__}: "
                       f"{raised.exc} (not one of the protocol's errors); traceback:\n"
                       + "\n".join(last[-12:]) + (f"\nrerun this probe: {replay}"
                                                  if replay else ""), replay)


def _not_linearizable(rnd: _Round, lists: list[list[Op]], got: list, observed: tuple,
                      expected: list, result: RaceResult, where: str, replay: str) -> None:
    # No order gives what happened: name the facts deciding the differences from the order
    # closest to it (fewest differing parts).
    def distance(entry: tuple) -> int:
        want, state = entry[0], entry[1]
        return (sum(w != g for w, g in zip(want, got, strict=True))
                + len(_differing(observed, state)))
    want, state, model, order = min(expected, key=distance)
    facts: set[str] = set()
    applied = set(model.applied)
    names = {op.name for ops in lists for op in ops}
    for t, ops in enumerate(lists):
        for i, op in enumerate(ops):
            if want[t][i] != got[t][i]:
                facts |= (set(_NO_FACT) if op.name in _THREAD_STATE_OPS
                          else blame(applied, ["result"], operation=op.name))
    parts = _differing(observed, state)
    if parts:
        facts |= blame(applied, parts)
    if "reserve" in names:
        facts.add("S-RES-1")
    goals = [g[1] for ops, outs in zip(lists, got, strict=True)
             for op, g in zip(ops, outs, strict=True) if op.name == "advance" and g[0] == "ok"]
    only_advances_write = not names & {"deferred_advance"}
    facts |= set(contract.judge_advances(goals, rnd.model.wr_seq,
                                         observed[0] if only_advances_write else None).errors)
    if names & {"poll"} and "rd_seq" in parts:
        facts.add("S-POLL-2")
    if names & set(_THREAD_STATE_OPS) and "threads" in parts:
        facts.add(_NO_FACT[0])
    # Every call of a round is valid (its set-up makes it so): never a misuse.
    facts.discard(MISUSE)
    # The constants and the comparisons (S-SEQ-*) are never what a race breaks.
    facts = {f for f in facts if not f.startswith("S-SEQ-")} or facts
    ran = " | ".join("; ".join(str(op) for op in ops) for ops in lists)
    outcomes = " | ".join("; ".join(_show(o) for o in outs) for outs in got)
    closest = " | ".join("; ".join(_show(o) for o in outs) for outs in want)
    detail = (f"{where}: threads ran [{ran}] at once and got [{outcomes}]; no order of them "
              f"run one at a time gives that (closest: [{closest}]"
              + (f", and differs in {', '.join(parts)}: "
                 f"{_describe(parts, observed, state)}" if parts else "") + ")"
              + (f"; rerun this probe: {replay}" if replay else ""))
    result.fail(facts or {"S-SAFE-1"}, detail, replay)


def _show(outcome: tuple[str, Any]) -> str:
    kind, value = outcome
    return repr(value) if kind == "ok" else f"raises {value}"


def _describe(parts: list[str], observed: tuple, expected: tuple) -> str:
    out = []
    index = dict(zip(_PARTS, range(len(_PARTS)), strict=True))
    for part in parts:
        if part in index:
            out.append(f"{part} {observed[index[part]]!r} (expected "
                       f"{expected[index[part]]!r})")
    slots_o, slots_e = observed[3], expected[3]
    for i, (a, b) in enumerate(zip(slots_o, slots_e, strict=False)):
        if a != b:
            out.append(f"slot {i} (seq, allocated, owner, bookkeeping) {a} (expected {b})")
            break
    return "; ".join(out)


# --- the probes -----------------------------------------------------------------------------

Setup = Callable[[_Round, str], list[list[Op]]]


def _scenarios(profile: str) -> dict[str, tuple[tuple[str, ...], Setup]]:
    """Multi-step probes the pairs do not cover: (start states, setup)."""
    def polls(r: _Round, state: str) -> list[list[Op]]:
        # rd_seq < b's seq < wr_seq: a poll that scans before b's quiescent state finds a
        # minimum above rd_seq, and one after it a higher one.
        r.thread_state("a", 0, attach=True)
        r.step(Op("advance"))
        r.thread_state("b", 1, attach=True)
        goal = r.step(Op("advance"))
        r.step(Op("quiescent_state", "a"))
        return [[Op("poll", "a", (goal,))],
                [Op("quiescent_state", "b"), Op("poll", "b", (goal,))]]

    def batching(r: _Round, state: str) -> list[list[Op]]:
        r.thread_state("a", 0, attach=True)
        for _ in range(9 if state == "at the limit" else 0):    # at the limit: it advances
            r.step(Op("deferred_advance", "a"))
        return [[Op("deferred_advance", "a")], [Op("advance")]]

    out: dict[str, tuple[tuple[str, ...], Setup]] = {
        "poll | quiescent_state; poll": (("rd_seq behind",), polls)}
    if profile == "3.13":
        out["deferred_advance at its limit | advance"] = (("at the limit",), batching)
    return out


def _derived(r: _Round, state: str, *, ops: tuple[str, ...], profile: str) -> list[list[Op]]:
    return race_table.build(r, ops, state, Op, profile)


def probes(profile: str) -> dict[str, tuple[tuple[str, ...], Setup, int]]:
    """Every probe: name -> (start states, setup, threads)."""
    table: dict[str, tuple[tuple[str, ...], Setup, int]] = {}
    for ops in [*race_table.pairs(profile), *race_table.TRIPLES]:
        derived: Setup = functools.partial(_derived, ops=ops, profile=profile)
        table[race_table.probe_name(ops)] = (race_table.states_for(ops), derived, len(ops))
    for name, (states, setup) in _scenarios(profile).items():
        table[name] = (states, setup, 2)
    return table


def kinds(profile: str) -> list[str]:
    return list(probes(profile))


def coverage(profile: str, by_kind: dict[str, int]) -> tuple[list[str], list[str]]:
    """The protocol's pairs a run covered and those it did not (by probe name)."""
    names = [race_table.probe_name(pair) for pair in race_table.pairs(profile)]
    return ([n for n in names if by_kind.get(n)], [n for n in names if not by_kind.get(n)])


def replay_spec(kind: str, state: str, schedule: Schedule) -> str:
    return f"{kind}@{state}@{schedule.spec()}"


def race_probes(implementation: Any, rounds: int = POINTS, *, profile: str | None = None,
                only: list[str] | None = None, stop_on_error: bool = True,
                free_rounds: int = FREE_ROUNDS, stepped: bool = True,
                probe: str | None = None,
                replay: Callable[[str], str] | None = None,
                progress: Callable[[int], None] | None = None) -> RaceResult:
    """The stepped rounds of every probe (or of those in ``only``) from each of its start
    states: each thread preempted before each of its first ``rounds`` access points in turn
    (none unless ``stepped``), then ``free_rounds`` free rounds; judged by linearizability
    against the model.  ``probe`` (``KIND@STATE@SCHEDULE``, as a failure's replay names it)
    runs that one round only.  ``replay(spec)``: the command that reruns a probe;
    ``progress(rounds)`` is called every PROGRESS_ROUNDS rounds.  The caller sets the switch
    interval (:class:`switching`)."""
    profile = str(profile or getattr(implementation, "profile", "3.13"))
    table = probes(profile)
    result = RaceResult()
    workers = [TaskThread(f"race-{i}") for i in range(3)]
    command = replay or (lambda spec: "")
    try:
        plans = _Plans(table, rounds, only, free_rounds, stepped, probe)
        for kind, state, plan in plans:
            ok, count = _one(implementation, profile, workers, table, kind, state, plan,
                             result, command(replay_spec(kind, state, plan)))
            if plan.stepped and count < plan.point:
                plans.done = True       # the thread ran out of points: its sweep is over
            if progress is not None and result.rounds % PROGRESS_ROUNDS == 0:
                progress(result.rounds)
            if not ok and stop_on_error:
                return result
    finally:
        for worker in workers:
            worker.close()
    return result


class _Plans:
    """The rounds to run, in order: per probe and start state, each thread's sweep (over
    once a round shows the thread ran out of points: the caller sets ``done``), then the free
    rounds."""

    def __init__(self, table: dict, rounds: int, only: list[str] | None, free_rounds: int,
                 stepped: bool, probe: str | None) -> None:
        self.table, self.rounds, self.only = table, rounds, only
        self.free_rounds, self.stepped, self.probe = free_rounds, stepped, probe
        self.done = False

    def __iter__(self) -> Iterator[tuple[str, str, Schedule]]:
        if self.probe is not None:
            kind, state, spec = self.probe.split("@")
            yield kind, state, Schedule.parse(spec)
            return
        for kind, (states, _setup, n) in self.table.items():
            if self.only is not None and kind not in self.only:
                continue
            for state in states:
                for first in range(n) if self.stepped else ():
                    for reverse in (False, True) if n > 2 else (False,):
                        self.done = False
                        for point in range(1, self.rounds + 1):
                            yield kind, state, Schedule(True, first=first, point=point,
                                                        reverse=reverse)
                            if self.done:
                                break
                for offset in range(self.free_rounds):
                    yield kind, state, Schedule(False, offset=offset % STAGGERS)


def _one(implementation: Any, profile: str, workers: list[TaskThread], table: dict,
         kind: str, state: str, plan: Schedule, result: RaceResult,
         replay: str) -> tuple[bool, int]:
    states, setup, _n = table[kind]
    rnd = _Round(implementation, profile, workers)
    count = [0]
    try:
        try:
            lists = setup(rnd, state)
        except OperationRaised as raised:
            result.rounds += 1
            _raised(result, rnd, raised, f"race probe '{kind}' (set-up of {state})", None,
                    replay)
            return False, plan.point
        result.rounds += 1
        result.by_kind[kind] = result.by_kind.get(kind, 0) + 1
        result.stats["stepped" if plan.stepped else "free"] += 1
        ok = _race(rnd, lists, plan, result, f"{kind}' from '{state}", result.stats, count,
                   replay)
    finally:
        rnd.close()
    return ok, count[0]
