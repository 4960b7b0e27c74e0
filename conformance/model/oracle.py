"""The oracle: an executable model of CPython's QSBR semantics (docs/semantics.md).

Written from the semantics document, not from the C port: one method per API function, the
fact ids beside the rules they implement.  Sequence numbers are unsigned 64-bit; every
comparison is the wrap-around safe one (S-SEQ-3).  Misuse raises the same exception types as
the Cython bridge and leaves the state unchanged.

Each method also records in ``applied`` the fact ids whose rules decided its result, so the
differential run can credit (or blame) exactly those facts.  A fact is recorded only when the
step could tell a wrong implementation of that rule apart: S-SEQ-4 only when a sequence actually
wrapped past 2^64, S-SEQ-3 only when a plain unsigned comparison would have decided differently,
S-DEF-3 only when the slot's bookkeeping is not the fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import errors
from .adapter import BOOKKEEPING_FIELDS, STALE, SlotView, Snapshot
from .facts import MISUSE

# S-SEQ-1
QSBR_OFFLINE = 0
QSBR_INITIAL = 1
QSBR_INCR = 2

MIN_ARRAY_SIZE = 8          # S-SLOT-3
QSBR_DEFERRED_LIMIT = 10    # S-DEF-1

_MASK = (1 << 64) - 1


def _as_int64(value: int) -> int:
    value &= _MASK
    return value - (1 << 64) if value >> 63 else value


def qsbr_lt(a: int, b: int) -> bool:
    """S-SEQ-3: ``(int64_t)(a - b) < 0`` on unsigned 64-bit values."""
    return _as_int64(a - b) < 0


def qsbr_leq(a: int, b: int) -> bool:
    """S-SEQ-3: ``(int64_t)(a - b) <= 0`` on unsigned 64-bit values."""
    return _as_int64(a - b) <= 0


def _plain_lt(a: int, b: int) -> bool:
    return (a & _MASK) < (b & _MASK)


def _plain_leq(a: int, b: int) -> bool:
    return (a & _MASK) <= (b & _MASK)


@dataclass
class _Slot:
    """S-SLOT-1: one ``struct _qsbr_thread_state``."""

    seq: int = QSBR_OFFLINE
    owner: int | None = None
    allocated: bool = False
    next_free: int | None = None
    bookkeeping: dict[str, int | bool] = field(default_factory=dict)


@dataclass
class _ThreadState:
    slot: int | None = None     # what the thread state's own `qsbr` pointer designates
    stale: bool = False         # that slot was released under it by fini or after_fork


class OracleInterpreter:
    """The model of one interpreter's ``struct _qsbr_shared`` and its thread states."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        # S-SEQ-2: the interpreter's static initialiser sets both sequences to QSBR_INITIAL.
        self.wr_seq = QSBR_INITIAL
        self.rd_seq = QSBR_INITIAL
        self.slots: list[_Slot] = []        # S-SLOT-3: starts empty
        self.freelist: int | None = None    # index of the head
        self.threads: dict[int, _ThreadState] = {}
        self._next_handle = 0
        self._failing_allocations = 0
        self.applied: list[str] = []

    # -- helpers -----------------------------------------------------------------------------

    def _apply(self, *fact_ids: str) -> None:
        self.applied.extend(fact_ids)

    def _new_slot(self) -> _Slot:
        return _Slot(bookkeeping={name: (False if name == "should_process" else 0)
                                  for name in BOOKKEEPING_FIELDS[self.profile]})

    def _thread(self, tstate: int) -> _ThreadState:
        try:
            return self.threads[tstate]
        except KeyError:
            self._apply(MISUSE)
            raise errors.UnknownThreadStateError(f"unknown thread state {tstate!r}") from None

    def _slot_of(self, tstate: int) -> _Slot:
        """The slot of a registered thread state; misuse otherwise."""
        thread = self._thread(tstate)
        if thread.slot is None:
            self._apply(MISUSE)
            raise errors.NotRegisteredError(f"thread state {tstate} has no QSBR slot")
        if thread.stale:
            self._apply(MISUSE)
            raise errors.StaleSlotError(
                f"thread state {tstate}: its slot was released by fini or after_fork")
        return self.slots[thread.slot]

    def _require_profile(self, profile: str, operation: str) -> None:
        if self.profile != profile:
            self._apply(MISUSE)
            raise errors.UnsupportedOperationError(
                f"{operation} is not part of the {self.profile} profile")

    def _has_bookkeeping(self, slot: _Slot) -> bool:
        return any(slot.bookkeeping.values())

    def _push_free(self, index: int) -> None:
        self.slots[index].next_free = self.freelist
        self.freelist = index

    # -- test hooks --------------------------------------------------------------------------

    def set_sequences(self, wr_seq: int, rd_seq: int) -> None:
        errors.check_u64(wr_seq, "wr_seq")
        errors.check_u64(rd_seq, "rd_seq")
        if self.slots:
            raise errors.NotFreshError("sequences can only be set before the array exists")
        if wr_seq % 2 == 0 or rd_seq % 2 == 0 or not qsbr_leq(rd_seq, wr_seq):
            raise errors.BadSequenceError(
                f"sequences must be odd with rd_seq <= wr_seq, got {wr_seq}, {rd_seq}")
        self._apply("S-SEQ-2")
        self.wr_seq, self.rd_seq = wr_seq, rd_seq

    def fail_next_allocations(self, count_: int) -> None:
        self._failing_allocations = max(0, count_)

    # -- thread states -----------------------------------------------------------------------

    def new_thread_state(self) -> int:
        handle = self._next_handle
        self._next_handle += 1
        self.threads[handle] = _ThreadState()
        return handle

    def delete_thread_state(self, tstate: int) -> None:
        thread = self._thread(tstate)
        if thread.slot is not None and not thread.stale:
            self._apply(MISUSE)
            raise errors.StillRegisteredError(f"thread state {tstate} still owns a slot")
        del self.threads[tstate]

    # -- lifecycle ---------------------------------------------------------------------------

    def _allocate(self) -> int | None:
        # S-FREE-1: pop the head; mark it allocated; seq, owner and bookkeeping untouched.
        index = self.freelist
        if index is None:
            return None
        slot = self.slots[index]
        self.freelist = slot.next_free
        slot.next_free = None
        slot.allocated = True
        return index

    def _grow(self) -> bool:
        # S-FREE-4: the allocation can fail; then nothing changes.
        if self._failing_allocations:
            self._failing_allocations -= 1
            self._apply("S-FREE-4")
            return False
        # S-SLOT-3: max(2 * size, 8); old slots copied as they are (S-DEF-3: bookkeeping too);
        # owners keep their index, which is what re-pointing them preserves.
        new_size = max(2 * len(self.slots), MIN_ARRAY_SIZE)
        self.slots.extend(self._new_slot() for _ in range(new_size - len(self.slots)))
        # S-FREE-2: rebuild the freelist walking 0 .. size-1, pushing each free slot.
        self.freelist = None
        for index, slot in enumerate(self.slots):
            if not slot.allocated:
                self._push_free(index)
        self._apply("S-SLOT-3", "S-FREE-2")
        return True

    def reserve(self) -> int:
        """S-RES-1: pop the freelist; if empty, (stop the world,) grow and pop; or -1."""
        self._apply("S-RES-1", "S-FREE-1")
        index = self._allocate()
        if index is None and self._grow():
            index = self._allocate()
            if any(s.owner is not None for s in self.slots):
                self._apply("S-SLOT-3")     # owners re-pointed into the new array
            if any(self._has_bookkeeping(s) for s in self.slots):
                self._apply("S-DEF-3")      # growth copies the bookkeeping
        if index is not None and (self._has_bookkeeping(self.slots[index])
                                  or self.slots[index].seq != QSBR_OFFLINE):
            self._apply("S-DEF-3")          # a reused slot keeps what it held
        return -1 if index is None else index

    def register(self, tstate: int, index: int) -> None:
        """S-REG-1: the reserved, unowned slot at ``index`` records ``tstate``."""
        thread = self._thread(tstate)
        if not isinstance(index, int) or not -(1 << 63) <= index < (1 << 63):
            self._apply(MISUSE)
            raise errors.IndexOutOfRangeError(f"slot index {index!r} is not a valid index")
        if thread.slot is not None:
            self._apply(MISUSE)
            if thread.stale:
                raise errors.StaleSlotError(f"thread state {tstate}: its slot was released")
            raise errors.AlreadyRegisteredError(f"thread state {tstate} already has a slot")
        if not isinstance(index, int) or not 0 <= index < len(self.slots):
            self._apply(MISUSE)
            raise errors.IndexOutOfRangeError(
                f"slot index {index!r} outside the array of {len(self.slots)}")
        slot = self.slots[index]
        if not slot.allocated:
            self._apply(MISUSE)
            raise errors.SlotNotReservedError(f"slot {index} is not reserved")
        if slot.owner is not None:
            self._apply(MISUSE)
            raise errors.SlotOwnedError(f"slot {index} is registered to another thread state")
        self._apply("S-REG-1")
        slot.owner = tstate
        thread.slot = index

    def unregister(self, tstate: int) -> None:
        """S-UNREG-1: a detached slot of its owner is cleared and pushed on the freelist."""
        slot = self._slot_of(tstate)
        if slot.seq != QSBR_OFFLINE:
            self._apply(MISUSE)
            raise errors.StillAttachedError(f"thread state {tstate} is still attached")
        index = self.threads[tstate].slot
        assert index is not None
        self._apply("S-UNREG-1", "S-FREE-3")
        if self._has_bookkeeping(slot):
            self._apply("S-DEF-3")      # a port that resets it on unregister differs here
        slot.owner = None
        slot.allocated = False
        self._push_free(index)      # S-FREE-3: LIFO; seq stays 0, bookkeeping stays
        self.threads[tstate].slot = None

    def fini(self) -> None:
        """S-FINI-1: free the array; the sequences are left as they were."""
        self._apply("S-FINI-1")
        self.slots = []
        self.freelist = None
        for thread in self.threads.values():
            if thread.slot is not None:
                thread.stale = True

    def after_fork(self, tstate: int) -> None:
        """S-FORK-1: in the fork child, free every other allocated slot, in index order."""
        mine = self._slot_of(tstate)
        self._apply("S-FORK-1")
        for index, slot in enumerate(self.slots):
            if slot is not mine and slot.allocated:
                if self._has_bookkeeping(slot):
                    self._apply("S-DEF-3")
                if slot.owner is not None:
                    self.threads[slot.owner].stale = True
                slot.owner = None
                slot.allocated = False
                self._push_free(index)      # seq is NOT reset

    # -- reading and writing sequences ------------------------------------------------------

    def attach(self, tstate: int) -> None:
        """S-ATTACH-1: seq := wr_seq (the slot must be detached)."""
        slot = self._slot_of(tstate)
        if slot.seq != QSBR_OFFLINE:
            self._apply(MISUSE)
            raise errors.AlreadyAttachedError(f"thread state {tstate} is already attached")
        self._apply("S-ATTACH-1")
        slot.seq = self.wr_seq

    def detach(self, tstate: int) -> None:
        """S-DETACH-1: seq := QSBR_OFFLINE (the slot must be attached)."""
        slot = self._slot_of(tstate)
        if slot.seq == QSBR_OFFLINE:
            self._apply(MISUSE)
            raise errors.NotAttachedError(f"thread state {tstate} is not attached")
        self._apply("S-DETACH-1", "S-SEQ-1")
        slot.seq = QSBR_OFFLINE

    def quiescent_state(self, tstate: int) -> None:
        """S-QS-1: seq := wr_seq, attached or not."""
        slot = self._slot_of(tstate)
        self._apply("S-QS-1")
        slot.seq = self.wr_seq

    def advance(self) -> int:
        """S-ADV-1: wr_seq += 2 (modulo 2^64, S-SEQ-4); return the new value."""
        self._apply("S-ADV-1", "S-SEQ-1")
        self.wr_seq = (self.wr_seq + QSBR_INCR) & _MASK
        if self.wr_seq < QSBR_INCR:
            self._apply("S-SEQ-4")      # this advance crossed 2^64
        return self.wr_seq

    def deferred_advance(self, tstate: int) -> int:
        """S-DEF-1 (3.13): count; below the limit return wr_seq + 2, else reset and advance."""
        self._thread(tstate)
        self._require_profile("3.13", "deferred_advance")
        slot = self._slot_of(tstate)
        self._apply("S-DEF-1")
        if self._has_bookkeeping(slot):
            self._apply("S-DEF-3")      # the count so far belongs to the slot
        slot.bookkeeping["deferrals"] += 1
        if slot.bookkeeping["deferrals"] < QSBR_DEFERRED_LIMIT:
            goal = (self.wr_seq + QSBR_INCR) & _MASK
            if goal < QSBR_INCR:
                self._apply("S-SEQ-4")
            return goal
        slot.bookkeeping["deferrals"] = 0
        return self.advance()

    def shared_next(self) -> int:
        """S-DEF-2 (3.14): wr_seq + 2, without advancing."""
        self._require_profile("3.14", "shared_next")
        self._apply("S-DEF-2")
        goal = (self.wr_seq + QSBR_INCR) & _MASK
        if goal < QSBR_INCR:
            self._apply("S-SEQ-4")
        return goal

    def should_process(self, tstate: int) -> bool:
        """S-DEF-2 (3.14): the slot's flag, as set by the allocator."""
        self._thread(tstate)
        self._require_profile("3.14", "should_process")
        slot = self._slot_of(tstate)
        self._apply("S-DEF-2")
        return bool(slot.bookkeeping["should_process"])

    def set_bookkeeping(self, tstate: int, deferred_count: int, deferred_memory: int,
                        deferred_page_memory: int, should_process: bool) -> None:
        """3.14: what CPython's allocator writes into the slot (qsbr.c never does)."""
        self._thread(tstate)
        self._require_profile("3.14", "set_bookkeeping")
        slot = self._slot_of(tstate)
        self._apply("S-DEF-3")
        slot.bookkeeping.update(deferred_count=deferred_count, deferred_memory=deferred_memory,
                                deferred_page_memory=deferred_page_memory,
                                should_process=bool(should_process))

    def goal_reached(self, tstate: int, goal: int) -> bool:
        """S-GOAL-1: QSBR_LEQ(goal, rd_seq), no scan."""
        errors.check_u64(goal, "goal")
        self._slot_of(tstate)
        self._apply("S-GOAL-1")
        reached = qsbr_leq(goal, self.rd_seq)
        if reached != _plain_leq(goal, self.rd_seq):
            self._apply("S-SEQ-3")      # wrap-around decided the answer
        return reached

    def poll(self, tstate: int, goal: int) -> bool:
        """S-POLL-1: reached already, or scan every slot for the minimum attached seq."""
        errors.check_u64(goal, "goal")
        self._slot_of(tstate)
        self._apply("S-POLL-1")
        before = self.rd_seq
        reached = self._poll(goal, qsbr_lt, qsbr_leq)
        if (reached, self.rd_seq) != self._plain_poll(goal, before):
            self._apply("S-SEQ-3")      # wrap-around decided the answer or the new rd_seq
        return reached

    def _poll(self, goal: int, lt: Any, leq: Any) -> bool:
        if leq(goal, self.rd_seq):
            return True
        self._apply("S-POLL-2")     # the scan's new rd_seq: never back, never past a reader
        minimum = self.wr_seq
        for slot in self.slots:     # every slot, allocated or not: by seq alone
            if slot.seq != QSBR_OFFLINE and lt(slot.seq, minimum):
                minimum = slot.seq
        rd_seq = self.rd_seq
        if lt(rd_seq, minimum):
            self.rd_seq = rd_seq = minimum      # S-POLL-2: only ever forward
        return bool(leq(goal, rd_seq))

    def _plain_poll(self, goal: int, rd_before: int) -> tuple[bool, int]:
        """What a poll with plain unsigned comparisons would have answered (and left)."""
        rd_after, self.rd_seq = self.rd_seq, rd_before
        try:
            reached = self._poll(goal, _plain_lt, _plain_leq)
            return reached, self.rd_seq
        finally:
            self.rd_seq = rd_after

    # -- observation -------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        freelist = []
        index = self.freelist
        while index is not None:
            freelist.append(index)
            index = self.slots[index].next_free
        return Snapshot(
            wr_seq=self.wr_seq,
            rd_seq=self.rd_seq,
            size=len(self.slots),
            slots=tuple(SlotView(seq=s.seq, allocated=s.allocated, owner=s.owner,
                                 bookkeeping=tuple(s.bookkeeping.items()))
                        for s in self.slots),
            freelist=tuple(freelist),
            threads={handle: (STALE if t.stale else t.slot)
                     for handle, t in self.threads.items()},
        )

    def close(self) -> None:
        self.threads.clear()


class Oracle:
    """The oracle as an implementation of the adapter protocol."""

    name = "oracle"
    version = "1"

    def __init__(self, profile: str = "3.13") -> None:
        self.profile = profile

    def new_interpreter(self) -> OracleInterpreter:
        return OracleInterpreter(self.profile)

    qsbr_lt = staticmethod(qsbr_lt)
    qsbr_leq = staticmethod(qsbr_leq)


def oracle(profile: str = "3.13") -> Oracle:
    """Adapter factory: ``--impl conformance.oracle:oracle``."""
    return Oracle(profile)
