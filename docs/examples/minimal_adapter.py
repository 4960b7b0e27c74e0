"""A complete adapter, written from docs/adapter-protocol.md and docs/semantics.md alone.

It wraps `TinyQsbr`, a small QSBR written here in plain Python (think of it as the port you
want to check).  Nothing from conformance.oracle is used.  Run it with:

    PYTHONPATH=docs/examples qsbr-conformance --impl minimal_adapter:make
"""

from __future__ import annotations

import threading

from conformance import errors
from conformance.adapter import STALE, SlotView, Snapshot

MASK = (1 << 64) - 1


def lt(a: int, b: int) -> bool:                 # QSBR_LT: (int64_t)(a - b) < 0
    return ((a - b) & MASK) >= 1 << 63


def leq(a: int, b: int) -> bool:                # QSBR_LEQ
    return a == b or lt(a, b)


class Slot:
    def __init__(self) -> None:
        self.seq, self.owner, self.allocated, self.next, self.deferrals = 0, None, False, None, 0


class TinyQsbr:
    """The implementation under test: struct _qsbr_shared and its slots."""

    def __init__(self) -> None:
        self.wr_seq = self.rd_seq = 1
        self.array: list[Slot] = []
        self.freelist: int | None = None
        self.fail_allocations = 0

    def push(self, index: int) -> None:
        self.array[index].next, self.freelist = self.freelist, index

    def reserve(self) -> int:
        if self.freelist is None:
            if self.fail_allocations:
                self.fail_allocations -= 1
                return -1
            self.array += [Slot() for _ in range(max(2 * len(self.array), 8) - len(self.array))]
            self.freelist = None
            for i, slot in enumerate(self.array):
                if not slot.allocated:
                    self.push(i)
        index = self.freelist
        assert index is not None
        slot = self.array[index]
        self.freelist, slot.next, slot.allocated = slot.next, None, True
        return index

    def poll(self, goal: int) -> bool:
        if leq(goal, self.rd_seq):
            return True
        minimum = self.wr_seq
        for slot in self.array:
            if slot.seq and lt(slot.seq, minimum):
                minimum = slot.seq
        if lt(self.rd_seq, minimum):
            self.rd_seq = minimum
        return leq(goal, self.rd_seq)


class Interp:
    """The adapter: handles, checks in the documented order, snapshots."""

    def __init__(self) -> None:
        self.q = TinyQsbr()
        self.tstates: dict[int, dict] = {}      # handle -> {"slot": index|None, "stale": bool}
        self.next_handle = 0

    # -- helpers -------------------------------------------------------------------------
    def _t(self, h):
        if h not in self.tstates:
            raise errors.UnknownThreadStateError(f"unknown thread state {h!r}")
        return self.tstates[h]

    def _slot(self, h) -> Slot:
        t = self._t(h)
        if t["slot"] is None:
            raise errors.NotRegisteredError("no slot")
        if t["stale"]:
            raise errors.StaleSlotError("slot released by fini or after_fork")
        return self.q.array[t["slot"]]

    @staticmethod
    def _u64(v, what):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MASK:   # no coercion
            raise errors.BadSequenceError(f"{what} out of range")
        return v

    # -- the protocol --------------------------------------------------------------------
    def set_sequences(self, wr, rd):
        self._u64(wr, "wr_seq"), self._u64(rd, "rd_seq")
        if self.q.array:
            raise errors.NotFreshError("array exists")
        if wr % 2 == 0 or rd % 2 == 0 or not leq(rd, wr):
            raise errors.BadSequenceError("bad sequences")
        self.q.wr_seq, self.q.rd_seq = wr, rd

    def fail_next_allocations(self, n):
        self.q.fail_allocations = n

    def new_thread_state(self):
        h, self.next_handle = self.next_handle, self.next_handle + 1
        self.tstates[h] = {"slot": None, "stale": False}
        return h

    def delete_thread_state(self, h):
        t = self._t(h)
        if t["slot"] is not None and not t["stale"]:
            raise errors.StillRegisteredError("still registered")
        del self.tstates[h]

    def reserve(self):
        return self.q.reserve()

    def register(self, h, index):
        t = self._t(h)
        if (isinstance(index, bool) or not isinstance(index, int)
                or not -(1 << 63) <= index < 1 << 63):
            raise errors.IndexOutOfRangeError("not an index")
        if t["slot"] is not None:
            raise (errors.StaleSlotError if t["stale"] else errors.AlreadyRegisteredError)("")
        if not 0 <= index < len(self.q.array):
            raise errors.IndexOutOfRangeError("outside the array")
        slot = self.q.array[index]
        if not slot.allocated:
            raise errors.SlotNotReservedError("not reserved")
        if slot.owner is not None:
            raise errors.SlotOwnedError("owned")
        slot.owner, t["slot"] = h, index

    def unregister(self, h):
        slot = self._slot(h)
        if slot.seq:
            raise errors.StillAttachedError("attached")
        slot.owner, slot.allocated = None, False
        self.q.push(self.tstates[h]["slot"])
        self.tstates[h]["slot"] = None

    def attach(self, h):
        slot = self._slot(h)
        if slot.seq:
            raise errors.AlreadyAttachedError("attached")
        slot.seq = self.q.wr_seq

    def detach(self, h):
        slot = self._slot(h)
        if not slot.seq:
            raise errors.NotAttachedError("detached")
        slot.seq = 0

    def quiescent_state(self, h):
        self._slot(h).seq = self.q.wr_seq

    def advance(self):
        self.q.wr_seq = (self.q.wr_seq + 2) & MASK
        return self.q.wr_seq

    def deferred_advance(self, h):
        slot = self._slot(h)
        slot.deferrals += 1
        if slot.deferrals < 10:
            return (self.q.wr_seq + 2) & MASK
        slot.deferrals = 0
        return self.advance()

    def shared_next(self):
        raise errors.UnsupportedOperationError("3.14 profile only")

    def should_process(self, h):
        self._t(h)
        raise errors.UnsupportedOperationError("3.14 profile only")

    def set_bookkeeping(self, h, *fields):
        self._t(h)
        raise errors.UnsupportedOperationError("3.14 profile only")

    def poll(self, h, goal):
        self._u64(goal, "goal")
        self._slot(h)
        return self.q.poll(goal)

    def goal_reached(self, h, goal):
        self._u64(goal, "goal")
        self._slot(h)
        return leq(goal, self.q.rd_seq)

    def fini(self):
        self.q.array, self.q.freelist = [], None
        for t in self.tstates.values():
            t["stale"] = t["stale"] or t["slot"] is not None

    def after_fork(self, h):
        mine = self._slot(h)
        for i, slot in enumerate(self.q.array):
            if slot is not mine and slot.allocated:
                if slot.owner is not None:
                    self.tstates[slot.owner]["stale"] = True
                slot.owner, slot.allocated = None, False
                self.q.push(i)

    def snapshot(self):
        free, i = [], self.q.freelist
        while i is not None:
            free.append(i)
            i = self.q.array[i].next
        return Snapshot(
            wr_seq=self.q.wr_seq, rd_seq=self.q.rd_seq, size=len(self.q.array),
            slots=tuple(SlotView(s.seq, s.allocated, s.owner, (("deferrals", s.deferrals),))
                        for s in self.q.array),
            freelist=tuple(free),
            threads={h: STALE if t["stale"] else t["slot"] for h, t in self.tstates.items()})

    def close(self):
        self.tstates.clear()


class Locked:
    """Every operation of one interpreter under one lock: TinyQsbr has no atomics of its own,
    so this is what makes the declaration ``thread_safe = True`` below true (each operation is
    atomic, as the C port's are).  A port that is not thread safe leaves the declaration out,
    and the report then says which facts were checked sequentially only."""

    def __init__(self, interp: Interp) -> None:
        self._interp, self._lock = interp, threading.Lock()

    def __getattr__(self, name):
        method = getattr(self._interp, name)

        def locked(*args):
            with self._lock:
                return method(*args)
        return locked


class Impl:
    name, version, profile = "TinyQsbr (docs/examples)", "1.0", "3.13"
    thread_safe = True      # docs/adapter-protocol.md, "Thread safety": see Locked

    def new_interpreter(self):
        return Locked(Interp())

    def qsbr_lt(self, a, b):
        return lt(a, b)

    def qsbr_leq(self, a, b):
        return leq(a, b)


def make(profile: str = "3.13") -> Impl:
    if profile != "3.13":
        raise ValueError("TinyQsbr implements the 3.13 profile only")
    return Impl()
