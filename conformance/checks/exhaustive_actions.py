"""The exploration's actions and start points (split from conformance.checks.exhaustive, which
still exports every name here).

An :class:`Action` is one step of the exploration in the protocol's terms (a call, or a
composite such as ``create_thread``: CPython's new_threadstate, reserve then register);
:func:`actions` lists every action from an oracle state; :class:`_OracleRun` runs actions on the
oracle and records the concrete calls and what each must give; :data:`START_POINTS` are the
states the exploration starts from, :data:`BESIDE` the start points explored while a second
interpreter is alive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..model import boundaries, errors
from ..model.oracle import OracleInterpreter
from . import composites

U64 = (1 << 64) - 1
HALF = 1 << 63

#: A concrete call: (operation, logical thread or None, args, compare-after?, note).
Call = tuple[str, "int | None", tuple, bool, str]


def oracle_fingerprint(o: OracleInterpreter) -> tuple:
    from ..model.adapter import STALE

    slots = tuple([(s.seq, s.allocated, s.owner, tuple(s.bookkeeping.items()))
                   for s in o.slots])
    freelist = []
    index = o.freelist
    while index is not None:
        freelist.append(index)
        index = o.slots[index].next_free
    threads = tuple(sorted((h, STALE if t.stale else t.slot) for h, t in o.threads.items()))
    return (o.wr_seq, o.rd_seq, len(o.slots), slots, tuple(freelist), threads, ())


# -- actions -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Action:
    name: str
    thread: int | None = None
    args: tuple = ()

    def label(self) -> str:
        shown = ([f"t{self.thread}"] if self.thread is not None else []) + [
            repr(a) for a in self.args]
        return f"{self.name}({', '.join(shown)})"


def actions(o: OracleInterpreter, max_threads: int) -> list[Action]:
    """Every action from the oracle's state, symmetric thread states once."""
    wr, rd = o.wr_seq, o.rd_seq
    found: list[Action] = []
    if len(o.threads) < max_threads:
        found += [Action("new_thread_state"), Action("create_thread")]
    found.append(Action("reserve"))
    if o.freelist is None:
        found.append(Action("reserve_out_of_memory"))
    if not o._failing_allocations:
        # Armed and left armed: the next actions (fini, after_fork, reserves, growth after
        # re-initialisation) consume them in whatever lifecycle state they reach.
        found.append(Action("fail_next_allocations", None, (2,)))
    found.append(Action("advance"))
    if o.profile == "3.14":
        found.append(Action("shared_next"))
    if o.slots:
        found.append(Action("fini"))
        found.append(Action("set_sequences", None, (wr, rd)))           # NotFresh
    else:
        found += [Action("set_sequences", None, ((wr + 4) & U64, wr)),  # rd != wr
                  Action("set_sequences", None, (U64 - 2, U64 - 6)),    # near the wrap
                  Action("set_sequences", None, ((wr + 1) & U64, wr)),  # even: misuse
                  Action("set_sequences", None, (wr, (wr - 1) & U64)),  # even rd: misuse
                  Action("set_sequences", None, ((wr + HALF) & U64, wr)),   # 2^63 apart: valid
                  Action("set_sequences", None, (wr, (wr + 2) & U64))]  # rd after wr
    seen_kinds: set[str] = set()
    owned = [i for i, s in enumerate(o.slots) if s.owner is not None]
    reserved = [i for i, s in enumerate(o.slots) if s.allocated and s.owner is None]
    free = [i for i, s in enumerate(o.slots) if not s.allocated]
    for handle in sorted(o.threads):
        thread = o.threads[handle]
        if thread.stale or thread.slot is None:
            kind = "stale" if thread.stale else "none"
            if kind in seen_kinds:
                continue                # interchangeable with the one already expanded
            seen_kinds.add(kind)
            indices = reserved + owned[:1] + free[:1] + [len(o.slots), -1]
            found += [Action("register", handle, (i,)) for i in indices]
            found += [Action("delete_thread_state", handle), Action("attach", handle),
                      Action("after_fork", handle), Action("unregister", handle),
                      Action("poll", handle, (wr,))]
            continue
        found += [Action(name, handle) for name in (
            "attach", "detach", "quiescent_state", "unregister", "destroy_thread",
            "after_fork", "delete_thread_state")]
        goals = sorted({(rd + 2) & U64, wr}, key=lambda g: (g - rd) & U64)
        found += [Action("poll", handle, (g,)) for g in goals]
        found += [Action("goal_reached", handle, (g,))
                  for g in (rd, (rd + 2) & U64, (rd + HALF) & U64)]     # 2^63 apart: reached
        found.append(Action("register", handle, (thread.slot,)))       # AlreadyRegistered
        if o.profile == "3.13":
            found += [Action("deferred_advance", handle),
                      Action("defer_until_advance", handle)]
        else:
            found += [Action("should_process", handle),
                      Action("set_bookkeeping", handle, (3, 4096, 0, True))]
    return found


class _OracleRun:
    """Runs actions on the oracle, producing the concrete calls and what each must give."""

    def __init__(self, oracle: OracleInterpreter) -> None:
        self.o = oracle
        self.calls: list[Call] = []
        #: per compared call: (expected error class name or None, expected value, applied facts,
        #: fingerprint after, boundaries reached, slots a growth copied)
        self.expected: list[tuple] = []

    def call(self, operation: str, thread: int | None = None, *args: Any,
             compare: bool = True, note: str = "") -> Any:
        self.o.applied = []
        self.o.reached = []
        self.calls.append((operation, thread, args, compare, note))
        error = value = None
        try:
            value = getattr(self.o, operation)(*(((thread,) if thread is not None else ())
                                                 + args))
        except errors.QsbrError as exc:
            error = type(exc).__name__
        if compare:
            reached = list(self.o.reached)
            if error is not None:
                reached.append(boundaries.misuse(operation, error))
            self.expected.append((error, value, tuple(self.o.applied),
                                  oracle_fingerprint(self.o), tuple(reached),
                                  (self.o.grown_from or 0) if operation == "reserve" else 0,
                                  operation == "reserve" and self.o.regrown_after_fini))
        return None if error else value

    def _composite_call(self, operation: str, thread: int | None, *args: Any,
                        note: str = "") -> Any:
        return self.call(operation, thread, *args, note=note)

    def run(self, action: Action) -> None:
        name, t = action.name, action.thread
        if name == "create_thread":
            composites.create_thread(self._composite_call)
        elif name == "destroy_thread":
            thread = self.o.threads[t]     # type: ignore[index]
            registered = thread.slot is not None and not thread.stale
            composites.destroy_thread(
                self._composite_call, t, registered=registered,
                attached=registered and self.o.slots[thread.slot].seq != 0)  # type: ignore[index]
        elif name == "defer_until_advance":
            # deferred_advance until the batch boundary: the 10th call (S-DEF-1) advances.
            wr = self.o.wr_seq
            for _ in range(10):
                self.call("deferred_advance", t, note="defer_until_advance")
                if self.o.wr_seq != wr:
                    break
        elif name == "fail_next_allocations":
            self.call(name, None, *action.args, compare=False, note="test hook")
        elif name == "reserve_out_of_memory":
            self.call("fail_next_allocations", None, 1, compare=False, note="test hook")
            self.call("reserve", note="the array allocation fails")
            self.call("fail_next_allocations", None, 0, compare=False, note="test hook")
        else:
            self.call(name, t, *action.args)


# -- start points ------------------------------------------------------------------------------

def _writer_and_reader(r: _OracleRun, start: int | None = None) -> None:
    if start is not None:
        r.call("set_sequences", None, start, start)
    for _ in range(2):
        r.run(Action("create_thread"))
    r.call("attach", 1)


def _grown(r: _OracleRun, threads: int) -> None:
    for _ in range(threads):
        r.run(Action("create_thread"))
    for t in range(1, threads - 1):     # keep the first and the last (in the grown part)
        r.run(Action("destroy_thread", t))


#: name -> how to reach it from a fresh interpreter
START_POINTS: dict[str, Callable[[_OracleRun], None]] = {
    "initial": lambda r: None,
    "writer and attached reader": _writer_and_reader,
    "near the 2^64 wrap": lambda r: _writer_and_reader(r, U64),
    "grown to 16": lambda r: _grown(r, 9),
    "grown to 32": lambda r: _grown(r, 17),
}


def _companion(r: _OracleRun) -> None:
    """The second interpreter: grown, a reader attached behind wr_seq, bookkeeping set."""
    _writer_and_reader(r)
    r.call("advance")
    if r.o.profile == "3.13":
        r.call("deferred_advance", 0)
    else:
        r.call("set_bookkeeping", 0, 2, 4096, 64, True)


#: Start points explored while a second interpreter is alive beside the explored one (S-INTERP-1,
#: S-INTERP-2): start point -> how the second one is set up.  After every transition its
#: snapshot must be what it was: nothing done on the explored interpreter may change it.
BESIDE: dict[str, Callable[[_OracleRun], None]] = {
    "beside a second interpreter": _companion,
}
START_POINTS["beside a second interpreter"] = lambda r: None
