"""Race probes: two threads inside operations at once, judged against the model.

Part of the Python-threads torture (conformance.checks.pytorture) for implementations that
declare ``thread_safe = True`` (docs/adapter-protocol.md, 'Thread safety').  Each probe round
takes a fresh interpreter and a fresh model (conformance.model.oracle), brings both into the
same state one step at a time (each thread state handled by the worker thread that will race
with it), then runs two worker threads at once, each running a short list of operations that
the protocol allows to run at the same time: two advances; two reserves, one of
which grows the array; a reserve (growing) beside an unregister, a register, an attach, a detach
or a quiescent state; two polls beside a quiescent state; a poll beside a detach; goal_reached
beside a poll; a batching goal (deferred_advance on 3.13, shared_next on 3.14) beside an
advance; an attach beside an advance.

The judgement is linearizability: the results and the snapshot afterwards must be those of one
order of the two threads' operations (each thread's own order kept) run one at a time by the
model.  Any lost update, double pop, lost store or backward step shows as an outcome no order
gives.  The fact named is the one whose rule decides what differs (conformance.checks.blame),
with S-RES-1 for every round with a reserve (its mutual exclusion), S-ADV-1 when advance goals
repeat or wr_seq moved by other than 2 per advance (the contract oracle's advance rule,
conformance.checks.contract.judge_advances), and S-POLL-2 when rd_seq differs after a poll.

Two kinds of round (:class:`Schedule`).  Stepped rounds make the interleaving, whatever the
build and the scheduler: a trace function (``sys.settrace``, in the racing thread only, for the
implementation's Python code only) stops one thread before its k-th line at which it holds none
of the implementation's own locks, the other thread runs its whole list, then the first
finishes; rounds sweep k = 1 .. LINES for each thread (one preemption per round, every single
preemption point in 2 * LINES rounds).  C code has no lines, so it is never stopped; a stepped
round that ran out of lines is not repeated with a later k.  Free rounds release both threads
together from a spinning barrier (one of them a few calls later, cycling): truly parallel on a
free-threaded build; on a GIL build they interleave only where the interpreter switches threads
(calls, loop back-edges, blocking calls; forced often by :class:`switching`).  Every bound is a
count; the only clock is the liveness escape of a stopped thread (ESCAPE_SECONDS), which changes
which interleaving ran, never a verdict.
"""

from __future__ import annotations

import copy
import functools
import itertools
import os
import sys
import sysconfig
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..drivers.taskthread import TaskThread
from ..model import errors
from ..model.oracle import OracleInterpreter
from . import contract
from .blame import blame

#: Seconds between forced switches on GIL builds (``sys.setswitchinterval``).
FORCED_SWITCH_INTERVAL = 1e-6
STAGGERS = 8            # start offsets of the free rounds, in calls
LINES = 24              # preemption points of the stepped rounds: lines 1 .. LINES
SPINS = 20000           # turns a free round's thread spins for the other before it blocks


def gil_enabled() -> bool:
    return bool(getattr(sys, "_is_gil_enabled", lambda: True)())


def evidence(switch_interval: float | None, stepped: int = 0) -> str:
    """What a clean run of the Python-threads torture shows on this build, in one line."""
    probes = (f"; {stepped} stepped race-probe rounds preempted one thread at each line of "
              "the implementation's Python code in turn (where it holds none of its own locks)"
              if stepped else "")
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


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except errors.QsbrError as exc:
        return "raises", type(exc).__name__


def _nop() -> None:
    pass


@dataclass
class RaceResult:
    rounds: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    caught_at: dict[str, int] = field(default_factory=dict)    # fact -> first failing round
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("stepped", "free", "skipped", "preemptions", "escapes"), 0))

    def fail(self, facts: set[str], detail: str) -> None:
        for fact in sorted(facts):
            self.caught_at.setdefault(fact, self.rounds)
            details = self.errors.setdefault(fact, [])
            if len(details) < 3:
                details.append(detail)


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
        self.pending_index = -1             # an index reserved in setup, for register

    def _impl_call(self, op: Op) -> Callable[[], Any]:
        method = getattr(self.interp, op.name)
        args = op.args if op.thread is None else (self.impl_handle[op.thread], *op.args)
        return lambda: method(*args)

    def _model_call(self, model: OracleInterpreter, op: Op) -> tuple[str, Any]:
        args = op.args if op.thread is None else (self.model_handle[op.thread], *op.args)
        return _outcome(lambda: getattr(model, op.name)(*args))

    def step(self, op: Op, worker: int = -1) -> Any:
        """A setup step: run on both sides; they must agree (the sequential run's business
        otherwise: a difference here is reported as a harness error, not a race)."""
        call = self._impl_call(op)
        got = (_outcome(call) if worker < 0
               else self.workers[worker].run(lambda: _outcome(call)))
        want = self._model_call(self.model, op)
        if got != want:
            raise RuntimeError(f"setup step {op} gave {got}, the model {want}: a sequential "
                               "difference (the conformance run reports it)")
        return got[1]

    def thread_state(self, name: str, worker: int = -1, register: bool = True,
                     attach: bool = False) -> None:
        run = (lambda f: f()) if worker < 0 else self.workers[worker].run
        self.impl_handle[name] = run(self.interp.new_thread_state)
        self.model_handle[name] = self.model.new_thread_state()
        self.owner[name] = worker
        if register:
            index = self.step(Op("reserve"), worker)
            self.step(Op("register", name, (index,)), worker)
        if attach:
            self.step(Op("attach", name), worker)

    def fill(self, free: int) -> None:
        """Register fillers until exactly ``free`` slots are on the freelist (the array
        exists)."""
        if not self.model.slots:
            self.thread_state(f"f{self.fillers}")
            self.fillers += 1
        while len(self.model.snapshot().freelist) > free:
            self.thread_state(f"f{self.fillers}")
            self.fillers += 1

    def logical(self, snap: Any) -> tuple:
        to_name = {h: n for n, h in self.impl_handle.items()}
        return self._state(snap, to_name)

    def model_state(self, model: OracleInterpreter) -> tuple:
        to_name = {h: n for n, h in self.model_handle.items()}
        return self._state(model.snapshot(), to_name)

    @staticmethod
    def _state(snap: Any, to_name: dict) -> tuple:
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


_HARNESS_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB = sysconfig.get_paths()["stdlib"]
_SITE = tuple({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
_traced: dict[str, bool] = {}


def _is_implementation(filename: str) -> bool:
    """Code the stepped rounds may pause in: not this harness, not the standard library."""
    traced = _traced.get(filename)
    if traced is None:
        path = os.path.abspath(filename)
        traced = _traced[filename] = not (
            path.startswith(_HARNESS_DIR) or filename.startswith("<")
            or (path.startswith(_STDLIB) and not path.startswith(_SITE)))
    return traced

#: A pause that waits this long for the other thread to finish is abandoned (it is then
#: blocked on something the paused thread holds that the lock scan did not find).  A liveness
#: escape only: it changes which interleaving ran, never a verdict.
ESCAPE_SECONDS = 2.0


def _locks_of(*objects: Any) -> list[Any]:
    """The locks an implementation keeps in its attributes (and its module's globals)."""
    kinds = (type(threading.Lock()), type(threading.RLock()))
    found = []
    for obj in objects:
        namespaces = [getattr(obj, "__dict__", {})]
        module = sys.modules.get(type(obj).__module__)
        if module is not None:
            namespaces.append(vars(module))
        for namespace in namespaces:
            found += [v for v in list(namespace.values()) if isinstance(v, kinds)]
    return found


def _held(lock: Any) -> bool:
    is_owned = getattr(lock, "_is_owned", None)     # RLock: owned by this thread
    return bool(is_owned()) if is_owned is not None else bool(lock.locked())


@dataclass(frozen=True)
class Schedule:
    """How a round's two threads interleave.

    stepped: thread ``first`` runs until just before its ``line``-th line of implementation
    Python code at which it holds none of the implementation's locks, then the other thread
    runs all its operations, then ``first`` finishes (one preemption; without tracing, C code
    never pauses).  free: both threads released together from a spinning barrier, thread
    ``offset & 1`` after ``offset`` extra calls (truly parallel on a free-threaded build)."""

    stepped: bool
    first: int = 0
    line: int = 0
    offset: int = 0

    def __str__(self) -> str:
        return (f"thread {self.first} preempted before its line {self.line}" if self.stepped
                else f"released together, offset {self.offset}")


def _run_stepped(calls: list[list[Callable[[], Any]]], schedule: Schedule, locks: list[Any],
                 stats: dict, count: list[int]) -> list[Callable[[], list[tuple[str, Any]]]]:
    """``count[0]``: the lines counted in the first thread (all of them when it was not
    preempted)."""
    first, other = schedule.first, 1 - schedule.first
    go = [threading.Event(), threading.Event()]

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        return local if _is_implementation(frame.f_code.co_filename) else None

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event != "line" or go[other].is_set() or any(_held(lock) for lock in locks):
            return local
        count[0] += 1
        if count[0] == schedule.line:
            stats["preemptions"] += 1
            go[other].set()
            if not go[first].wait(ESCAPE_SECONDS):
                stats["escapes"] += 1
        return local

    def run_first() -> list[tuple[str, Any]]:
        previous = sys.gettrace()
        sys.settrace(tracer)
        try:
            return [_outcome(call) for call in calls[first]]
        finally:
            sys.settrace(previous)
            go[other].set()             # finished before the preemption point: the other goes

    def run_other() -> list[tuple[str, Any]]:
        go[other].wait()
        try:
            return [_outcome(call) for call in calls[other]]
        finally:
            go[first].set()

    return [run_first, run_other] if first == 0 else [run_other, run_first]


def _run_free(calls: list[list[Callable[[], Any]]], offset: int
              ) -> list[Callable[[], list[tuple[str, Any]]]]:
    # A spinning barrier: both threads stay runnable, so neither finishes before the other
    # is even woken up (as a blocking barrier would allow).  After SPINS turns without the
    # other thread (not scheduled: a busy machine) it blocks instead of burning the CPU.
    arrived: list[int] = []
    everyone = threading.Event()

    def racer(t: int) -> list[tuple[str, Any]]:
        delay = offset if t == (offset & 1) else 0
        arrived.append(t)
        if len(arrived) == len(calls):
            everyone.set()
        for _ in range(SPINS):
            if len(arrived) == len(calls):
                break
            _nop()
        else:
            everyone.wait()
        for _ in range(delay):
            _nop()
        return [_outcome(call) for call in calls[t]]

    return [functools.partial(racer, t) for t in range(len(calls))]


def _race(rnd: _Round, lists: list[list[Op]], schedule: Schedule, result: RaceResult,
          kind: str, stats: dict, count: list[int]) -> bool:
    """Run the two lists as scheduled; judge; returns False when the round failed."""
    calls = [[rnd._impl_call(op) for op in ops] for ops in lists]
    if schedule.stepped:
        racers = _run_stepped(calls, schedule, _locks_of(rnd.interp, rnd.implementation),
                              stats, count)
    else:
        racers = _run_free(calls, schedule.offset)

    workers = [rnd.owner.get(next((op.thread for op in ops if op.thread), ""), -1)
               for ops in lists]
    free = [w for w in range(len(rnd.workers)) if w not in workers]
    workers = [w if w >= 0 else free.pop(0) for w in workers]
    for t, w in enumerate(workers):
        rnd.workers[w].start(racers[t])
    got = [rnd.workers[w].result() for w in workers]
    observed = rnd.logical(rnd.interp.snapshot())
    expected = []
    for order in _orders(lists):
        model = copy.deepcopy(rnd.model)
        model.applied = []
        want: list[list[Any]] = [[None] * len(ops) for ops in lists]
        for t, i in order:
            want[t][i] = rnd._model_call(model, lists[t][i])
        expected.append((want, rnd.model_state(model), model, order))
        if want == got and expected[-1][1] == observed:
            rnd.model = model
            return True
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
                facts |= blame(applied, ["result"], operation=op.name)
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
    # The constants and the comparisons (S-SEQ-*) are never what a race breaks.
    facts = {f for f in facts if not f.startswith("S-SEQ-")} or facts
    ran = " | ".join("; ".join(str(op) for op in ops) for ops in lists)
    outcomes = " | ".join("; ".join(_show(o) for o in outs) for outs in got)
    closest = " | ".join("; ".join(_show(o) for o in outs) for outs in want)
    detail = (f"race probe '{kind}' (round {result.rounds}, {schedule}): threads ran "
              f"[{ran}] at once and got [{outcomes}]; no order of them run one at a time "
              f"gives that (closest: [{closest}]"
              + (f", and differs in {', '.join(parts)}: "
                 f"{_describe(parts, observed, state)}" if parts else "") + ")")
    result.fail(facts or {"S-SAFE-1"}, detail)
    return False


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


# --- the probe kinds ------------------------------------------------------------------------

def _variant(n: int) -> int:
    """Which setup variant round ``n`` uses: each gets a whole sweep of the stepped
    schedules (:func:`schedule`) before the next one starts."""
    return n // (2 * LINES)


def _kinds(profile: str) -> dict[str, Callable[[_Round, int], list[list[Op]]]]:
    def advances(r: _Round, n: int) -> list[list[Op]]:
        r.thread_state("w", 0, attach=True)
        return [[Op("advance")], [Op("advance")]]

    def reserves(r: _Round, n: int) -> list[list[Op]]:
        r.fill((1, 0, 2)[_variant(n) % 3])  # free slots: one grows; both grow; none grows
        return [[Op("reserve")], [Op("reserve")]]

    def reserve_beside(operation: str, state: Callable[[_Round], None]
                       ) -> Callable[[_Round, int], list[list[Op]]]:
        def setup(r: _Round, n: int) -> list[list[Op]]:
            state(r)
            r.fill(_variant(n) % 2 if operation == "unregister" else 0)
            args: tuple = (r.pending_index,) if operation == "register" else ()
            return [[Op("reserve")], [Op(operation, "t", args)]]
        return setup

    def registered(r: _Round) -> None:
        r.thread_state("t", 1)

    def attached(r: _Round) -> None:
        r.thread_state("t", 1, attach=True)
        r.step(Op("advance"))

    def reserved_only(r: _Round) -> None:
        r.thread_state("t", 1, register=False)
        r.pending_index = r.step(Op("reserve"), 1)

    def polls(r: _Round, n: int) -> list[list[Op]]:
        # rd_seq < b's seq < wr_seq: a poll that scans before b's quiescent state finds a
        # minimum above rd_seq, and one after it a higher one.
        r.thread_state("a", 0, attach=True)
        r.step(Op("advance"))
        r.thread_state("b", 1, attach=True)
        goal = r.step(Op("advance"))
        r.step(Op("quiescent_state", "a"))
        return [[Op("poll", "a", (goal,))],
                [Op("quiescent_state", "b"), Op("poll", "b", (goal,))]]

    def poll_detach(r: _Round, n: int) -> list[list[Op]]:
        r.thread_state("a", 0, attach=True)
        r.thread_state("b", 1, attach=True)
        goal = r.step(Op("advance"))
        r.step(Op("quiescent_state", "a"))
        return [[Op("poll", "a", (goal,))], [Op("detach", "b")]]

    def goal_poll(r: _Round, n: int) -> list[list[Op]]:
        r.thread_state("a", 0, attach=True)
        r.thread_state("b", 1, attach=True)
        goal = r.step(Op("advance"))
        r.step(Op("quiescent_state", "a"))
        r.step(Op("quiescent_state", "b"))
        return [[Op("poll", "a", (goal,))], [Op("goal_reached", "b", (goal,))]]

    def batching(r: _Round, n: int) -> list[list[Op]]:
        r.thread_state("a", 0, attach=True)
        if profile == "3.13":
            for _ in range(9 if _variant(n) % 2 == 0 else 0):  # at the limit: it advances
                r.step(Op("deferred_advance", "a"))
            return [[Op("deferred_advance", "a")], [Op("advance")]]
        return [[Op("shared_next")], [Op("advance")]]

    def attach_advance(r: _Round, n: int) -> list[list[Op]]:
        r.thread_state("a", 0)
        return [[Op("attach", "a")], [Op("advance")]]

    return {
        "advance | advance": advances,
        "reserve | reserve": reserves,
        "reserve | unregister": reserve_beside("unregister", registered),
        "reserve | register": reserve_beside("register", reserved_only),
        "reserve (growth) | attach": reserve_beside("attach", registered),
        "reserve (growth) | detach": reserve_beside("detach", attached),
        "reserve (growth) | quiescent_state": reserve_beside("quiescent_state", attached),
        "poll | quiescent_state; poll": polls,
        "poll | detach": poll_detach,
        "poll | goal_reached": goal_poll,
        ("deferred_advance | advance" if profile == "3.13" else "shared_next | advance"):
            batching,
        "attach | advance": attach_advance,
    }


def kinds(profile: str) -> list[str]:
    return list(_kinds(profile))


def schedule(n: int) -> Schedule:
    """Round ``n``'s stepped schedule: each thread preempted before each of its first LINES
    lock-free lines in turn, so rounds 0 .. 2 * LINES - 1 cover every single preemption."""
    return Schedule(True, first=n % 2, line=n // 2 % LINES + 1)


def race_probes(implementation: Any, rounds: int, *, profile: str | None = None,
                only: list[str] | None = None, stop_on_error: bool = True,
                free_every: int = 4, stepped: bool = True) -> RaceResult:
    """``rounds`` stepped rounds of every probe kind (or of those in ``only``; none unless
    ``stepped``), and a free round after every ``free_every``-th (0: none), judged by
    linearizability against the model.  The caller sets the switch interval
    (:class:`switching`)."""
    profile = str(profile or getattr(implementation, "profile", "3.13"))
    table = _kinds(profile)
    result = RaceResult()
    stats = result.stats
    workers = [TaskThread(f"race-{i}") for i in range(2)]
    # (kind, first thread, setup variant) -> the lines the first thread ran unpreempted: a
    # stepped round preempting it at a later line would be that same sequential round again
    # (C code, or code under the implementation's own locks, has no lines to stop at).
    lines: dict[tuple[str, int, int], int] = {}
    try:
        for n in range(rounds):
            plans = [schedule(n)] if stepped else []
            if free_every and n % free_every == free_every - 1:
                plans.append(Schedule(False, offset=n // free_every % STAGGERS))
            for plan in plans:
                for kind, setup in table.items():
                    if only is not None and kind not in only:
                        continue
                    key = (kind, plan.first, _variant(n))
                    if plan.stepped and plan.line > lines.get(key, plan.line):
                        stats["skipped"] += 1
                        continue
                    rnd = _Round(implementation, profile, workers)
                    count = [0]
                    try:
                        lists = setup(rnd, n)
                        result.rounds += 1
                        result.by_kind[kind] = result.by_kind.get(kind, 0) + 1
                        stats["stepped" if plan.stepped else "free"] += 1
                        ok = _race(rnd, lists, plan, result, kind, stats, count)
                    finally:
                        rnd.close()
                    if plan.stepped and count[0] < plan.line:
                        lines[key] = count[0]
                    if not ok and stop_on_error:
                        return result
    finally:
        for worker in workers:
            worker.close()
    return result
