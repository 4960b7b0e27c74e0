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

Each method also records in ``reached`` the boundaries (conformance.model.boundaries) the call
stood on: the 2^64 wrap, values 2^63 apart, each growth size and the state growth started
from, where a popped slot came from, fork and fini corners, and which misuse conditions held
together (:meth:`OracleInterpreter.misuse_conditions`).  A check credits them only when the
implementation agreed with the oracle on that call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import boundaries, errors
from .adapter import BOOKKEEPING_FIELDS, STALE, SlotView, Snapshot
from .facts import MISUSE

# S-SEQ-1
QSBR_OFFLINE = 0
QSBR_INITIAL = 1
QSBR_INCR = 2

MIN_ARRAY_SIZE = 8          # S-SLOT-3
QSBR_DEFERRED_LIMIT = 10    # S-DEF-1

_MASK = (1 << 64) - 1
_HALF = 1 << 63

#: Operations by what they take (the misuse conditions they can meet).
THREAD_OPERATIONS = frozenset({
    "delete_thread_state", "register", "unregister", "after_fork", "attach", "detach",
    "quiescent_state", "deferred_advance", "should_process", "set_bookkeeping", "poll",
    "goal_reached"})
SLOT_OPERATIONS = frozenset({
    "unregister", "after_fork", "attach", "detach", "quiescent_state", "deferred_advance",
    "should_process", "set_bookkeeping", "poll", "goal_reached"})
PROFILE_OPERATIONS = {"deferred_advance": "3.13", "shared_next": "3.14",
                      "should_process": "3.14", "set_bookkeeping": "3.14"}


def _as_int64(value: int) -> int:
    value &= _MASK
    return value - (1 << 64) if value >> 63 else value


def qsbr_lt(a: int, b: int) -> bool:
    """S-SEQ-3: ``(int64_t)(a - b) < 0`` on unsigned 64-bit values."""
    return _as_int64(a - b) < 0


def qsbr_leq(a: int, b: int) -> bool:
    """S-SEQ-3: ``(int64_t)(a - b) <= 0`` on unsigned 64-bit values."""
    return _as_int64(a - b) <= 0


def _is_u64(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and 0 <= value < 1 << 64)


def _kind(value: object) -> str | None:
    """The argument kind a boundary names: a value Python would coerce to an int."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return None


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
        #: where the armed failures were armed, what happened to the interpreter since, and how
        #: many of them growth has consumed (the fault boundaries, conformance.model.boundaries)
        self._armed_in: str | None = None
        self._armed_since: set[str] = set()
        self._consumed = 0
        self.applied: list[str] = []
        self.reached: list[str] = []        # boundaries (conformance.model.boundaries)
        self.pushed_by: dict[int, str] = {}     # slot index -> what pushed it on the freelist
        self.finished = False               # fini ran at least once
        self.forked = False                 # after_fork released a slot of this array
        #: set by reserve: the size the array had before this call grew it (None: no growth)
        self.grown_from: int | None = None
        #: set by reserve: this call grew the array again from nothing after fini
        self.regrown_after_fini = False

    # -- helpers -----------------------------------------------------------------------------

    def _apply(self, *fact_ids: str) -> None:
        self.applied.extend(fact_ids)

    def _reach(self, *names: str) -> None:
        self.reached.extend(names)

    def misuse_conditions(self, operation: str, *args: Any) -> list[str]:
        """Every misuse condition that holds for ``operation(*args)`` in this state, in the
        protocol's order of precedence (docs/adapter-protocol.md, "Errors"); the first one is
        the error the call raises.  ``args`` are the call's, the handle first for operations
        on a thread state.  Names: ``argument`` (a goal or sequence that is not an int in
        [0, 2^64)), ``handle`` (not a live thread state), ``index type`` (register: not an int
        in the signed 64-bit range), ``profile`` (not part of this profile), ``slot`` (no slot,
        or a released one), ``not fresh`` and ``values`` (set_sequences), ``registered`` and
        ``index range`` (register), ``precondition`` (the operation's own)."""
        found: list[str] = []
        values: tuple[Any, ...] = ()
        if operation in ("poll", "goal_reached"):
            values = args[1:2]
        elif operation == "set_sequences":
            values = args[:2]
        if any(not _is_u64(v) for v in values):
            found.append("argument")
        thread = None
        if operation in THREAD_OPERATIONS:
            try:
                thread = self.threads.get(args[0]) if args else None
            except TypeError:       # an unhashable handle is no handle
                thread = None
            if thread is None:
                found.append("handle")
        if operation == "register" and not errors.is_index(args[1] if len(args) > 1 else None):
            found.append("index type")
        required = PROFILE_OPERATIONS.get(operation)
        if required is not None and required != self.profile:
            found.append("profile")
        if thread is not None and operation in SLOT_OPERATIONS and (
                thread.slot is None or thread.stale):
            found.append("slot")
        if operation == "set_sequences":
            if self.slots:
                found.append("not fresh")
            if len(values) == 2 and all(_is_u64(v) for v in values) and (
                    values[0] % 2 == 0 or values[1] % 2 == 0
                    or not qsbr_leq(values[1], values[0])):
                found.append("values")
        if operation == "register" and thread is not None:
            if thread.slot is not None:
                found.append("registered")
            index = args[1] if len(args) > 1 else None
            if isinstance(index, int) and errors.is_index(index) and not (
                    0 <= index < len(self.slots)):
                found.append("index range")
        return found

    def _conditions_met(self, operation: str, args: tuple[Any, ...]) -> None:
        """Record which misuse conditions held together (the first two, in order)."""
        found = self.misuse_conditions(operation, *args)
        if len(found) >= 2:
            self._reach(boundaries.precedence(operation, found[0], found[1]))
        values = args[1:] if operation in THREAD_OPERATIONS else args
        kinds = {kind for kind in map(_kind, values) if kind is not None}
        if found and operation in boundaries.TYPED_OPERATIONS:
            self._reach(*(boundaries.argument_type(operation, k) for k in sorted(kinds)))

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

    def _push_free(self, index: int, by: str) -> None:
        self.slots[index].next_free = self.freelist
        self.freelist = index
        self.pushed_by[index] = by

    # -- test hooks --------------------------------------------------------------------------

    def set_sequences(self, wr_seq: int, rd_seq: int) -> None:
        self._conditions_met("set_sequences", (wr_seq, rd_seq))
        errors.check_u64(wr_seq, "wr_seq")
        errors.check_u64(rd_seq, "rd_seq")
        if (wr_seq - rd_seq) & _MASK == _HALF:
            # QSBR_LEQ(rd, wr) holds here and !QSBR_LT(wr, rd) does not: the sign convention
            # at the half range decides (S-SEQ-3).
            self._apply("S-SEQ-3")
            self._reach("half-range: set_sequences with rd_seq and wr_seq 2^63 apart")
        if self.slots:
            raise errors.NotFreshError("sequences can only be set before the array exists")
        if wr_seq % 2 == 0 or rd_seq % 2 == 0 or not qsbr_leq(rd_seq, wr_seq):
            raise errors.BadSequenceError(
                f"sequences must be odd with rd_seq <= wr_seq, got {wr_seq}, {rd_seq}")
        self._apply("S-SEQ-2")
        self.wr_seq, self.rd_seq = wr_seq, rd_seq

    def fail_next_allocations(self, count_: int) -> None:
        """Test hook: the next ``count_`` allocations of the slot array fail (0 disarms).  The
        count belongs to the interpreter and only a growth consumes it: fini, after_fork and
        reserves that pop without growing leave it armed (docs/adapter-protocol.md)."""
        self._failing_allocations = max(0, count_)
        self._armed_in = boundaries.fault_state(bool(self.slots), self.finished)
        self._armed_since = set()
        self._consumed = 0

    # -- thread states -----------------------------------------------------------------------

    def new_thread_state(self) -> int:
        handle = self._next_handle
        self._next_handle += 1
        self.threads[handle] = _ThreadState()
        self._apply("S-TSTATE-1")
        return handle

    def delete_thread_state(self, tstate: int) -> None:
        self._conditions_met("delete_thread_state", (tstate,))
        thread = self._thread(tstate)
        if thread.slot is not None and not thread.stale:
            self._apply(MISUSE)
            raise errors.StillRegisteredError(f"thread state {tstate} still owns a slot")
        self._apply("S-TSTATE-1")
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
        by = self.pushed_by.get(index, "growth")
        self._reach(f"freelist: reserve pops a slot pushed by {by}")
        if by == "after_fork" and slot.seq != QSBR_OFFLINE:
            self._reach("fork: a released slot with a stale seq is reused")
        return index

    def _grow(self) -> bool:
        # S-FREE-4: the allocation can fail; then nothing changes.
        if self._failing_allocations:
            self._failing_allocations -= 1
            self._apply("S-FREE-4")
            self._reach("freelist: growth cannot allocate (reserve returns -1)")
            self._reach(*boundaries.fault_consumed(
                self._armed_in or "", boundaries.fault_state(bool(self.slots), self.finished),
                self._armed_since, self._consumed))
            self._consumed += 1
            return False
        if self._consumed:
            self._reach(boundaries.FAULT_RECOVERED)
            self._consumed = 0
        self._reach_growth_states()
        # S-SLOT-3: max(2 * size, 8); old slots copied as they are (S-DEF-3: bookkeeping too);
        # owners keep their index, which is what re-pointing them preserves.
        new_size = max(2 * len(self.slots), MIN_ARRAY_SIZE)
        self.grown_from = len(self.slots)
        self.regrown_after_fini = self.finished and not self.slots
        self._reach(boundaries.growth(len(self.slots), new_size))
        self.slots.extend(self._new_slot() for _ in range(new_size - len(self.slots)))
        # S-FREE-2: rebuild the freelist walking 0 .. size-1, pushing each free slot.
        self.freelist = None
        for index, slot in enumerate(self.slots):
            if not slot.allocated:
                self._push_free(index, "growth")
        self._apply("S-SLOT-3", "S-FREE-2")
        return True

    def _reach_growth_states(self) -> None:
        """The states a growth starts from that a port's copy may get wrong."""
        fields = BOOKKEEPING_FIELDS[self.profile]
        old, new = len(self.slots), max(2 * len(self.slots), MIN_ARRAY_SIZE)
        states = []
        if any(s.owner is not None and s.seq != QSBR_OFFLINE and s.seq != self.wr_seq
               for s in self.slots):
            states.append("an attached reader behind wr_seq")
        if any(all(s.bookkeeping.get(f) for f in fields) for s in self.slots):
            states.append("bookkeeping set")
        if any(s.allocated and s.owner is None for s in self.slots):
            states.append("a reserved, unregistered slot")
        if self.forked and self.slots:
            states.append("a slot released by after_fork")
        if self.finished and self.slots and any(t.stale for t in self.threads.values()):
            states.append("an array rebuilt after fini")
        self._reach(*(boundaries.growth_from(state, old, new) for state in states))

    def reserve(self) -> int:
        """S-RES-1: pop the freelist; if empty, (stop the world,) grow and pop; or -1."""
        self._apply("S-RES-1", "S-FREE-1")
        self.grown_from = None
        self.regrown_after_fini = False
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
        self._conditions_met("register", (tstate, index))
        thread = self._thread(tstate)
        if not errors.is_index(index):
            self._apply(MISUSE)
            raise errors.IndexOutOfRangeError(f"slot index {index!r} is not a valid index")
        if thread.slot is not None:
            self._apply(MISUSE)
            if thread.stale:
                raise errors.StaleSlotError(f"thread state {tstate}: its slot was released")
            raise errors.AlreadyRegisteredError(f"thread state {tstate} already has a slot")
        if not 0 <= index < len(self.slots):
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
        self._conditions_met("unregister", (tstate,))
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
        self._push_free(index, "unregister")    # S-FREE-3: LIFO; seq stays 0, bookkeeping too
        self.threads[tstate].slot = None
        if not any(s.allocated for s in self.slots):
            self._reach("freelist: every slot free")

    def fini(self) -> None:
        """S-FINI-1: free the array; the sequences are left as they were."""
        self._apply("S-FINI-1")
        if any(t.slot is not None and not t.stale for t in self.threads.values()):
            self._reach("fini: leaves registered thread states stale")
        self.slots = []
        self.freelist = None
        self.pushed_by = {}
        self.finished = True
        self.forked = False
        if self._failing_allocations:
            self._armed_since.add("fini")
        for thread in self.threads.values():
            if thread.slot is not None:
                thread.stale = True

    def after_fork(self, tstate: int) -> None:
        """S-FORK-1: in the fork child, free every other allocated slot, in index order."""
        self._conditions_met("after_fork", (tstate,))
        mine = self._slot_of(tstate)
        self._apply("S-FORK-1")
        if self._failing_allocations:
            self._armed_since.add("after_fork")
        for index, slot in enumerate(self.slots):
            if slot is not mine and slot.allocated:
                if self._has_bookkeeping(slot):
                    self._apply("S-DEF-3")
                    self._reach("fork: releases a slot with bookkeeping pending")
                if slot.seq != QSBR_OFFLINE:
                    self._reach("fork: releases an attached slot (its seq stays)")
                if self.freelist is not None:
                    self._reach("freelist: after_fork pushes onto a non-empty freelist")
                if slot.owner is not None:
                    self.threads[slot.owner].stale = True
                slot.owner = None
                slot.allocated = False
                self.forked = True
                self._push_free(index, "after_fork")    # seq is NOT reset
        if not any(s.allocated for s in self.slots):
            self._reach("freelist: every slot free")

    # -- reading and writing sequences ------------------------------------------------------

    def attach(self, tstate: int) -> None:
        """S-ATTACH-1: seq := wr_seq (the slot must be detached)."""
        self._conditions_met("attach", (tstate,))
        slot = self._slot_of(tstate)
        if slot.seq != QSBR_OFFLINE:
            self._apply(MISUSE)
            raise errors.AlreadyAttachedError(f"thread state {tstate} is already attached")
        self._apply("S-ATTACH-1")
        slot.seq = self.wr_seq

    def detach(self, tstate: int) -> None:
        """S-DETACH-1: seq := QSBR_OFFLINE (the slot must be attached)."""
        self._conditions_met("detach", (tstate,))
        slot = self._slot_of(tstate)
        if slot.seq == QSBR_OFFLINE:
            self._apply(MISUSE)
            raise errors.NotAttachedError(f"thread state {tstate} is not attached")
        self._apply("S-DETACH-1", "S-SEQ-1")
        slot.seq = QSBR_OFFLINE

    def quiescent_state(self, tstate: int) -> None:
        """S-QS-1: seq := wr_seq, attached or not."""
        self._conditions_met("quiescent_state", (tstate,))
        slot = self._slot_of(tstate)
        self._apply("S-QS-1")
        slot.seq = self.wr_seq

    def advance(self) -> int:
        """S-ADV-1: wr_seq += 2 (modulo 2^64, S-SEQ-4); return the new value."""
        self._apply("S-ADV-1", "S-SEQ-1")
        self.wr_seq = (self.wr_seq + QSBR_INCR) & _MASK
        if self.wr_seq < QSBR_INCR:
            self._apply("S-SEQ-4")      # this advance crossed 2^64
            self._reach("wrap: advance crosses 2^64")
        return self.wr_seq

    def deferred_advance(self, tstate: int) -> int:
        """S-DEF-1 (3.13): count; below the limit return wr_seq + 2, else reset and advance."""
        self._conditions_met("deferred_advance", (tstate,))
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
                self._reach("wrap: a shared_next/deferred goal crosses 2^64")
            return goal
        slot.bookkeeping["deferrals"] = 0
        return self.advance()

    def shared_next(self) -> int:
        """S-DEF-2 (3.14): wr_seq + 2, without advancing."""
        self._conditions_met("shared_next", ())
        self._require_profile("3.14", "shared_next")
        self._apply("S-DEF-2")
        goal = (self.wr_seq + QSBR_INCR) & _MASK
        if goal < QSBR_INCR:
            self._apply("S-SEQ-4")
            self._reach("wrap: a shared_next/deferred goal crosses 2^64")
        return goal

    def should_process(self, tstate: int) -> bool:
        """S-DEF-2 (3.14): the slot's flag, as set by the allocator."""
        self._conditions_met("should_process", (tstate,))
        self._thread(tstate)
        self._require_profile("3.14", "should_process")
        slot = self._slot_of(tstate)
        self._apply("S-DEF-2")
        return bool(slot.bookkeeping["should_process"])

    def set_bookkeeping(self, tstate: int, deferred_count: int, deferred_memory: int,
                        deferred_page_memory: int, should_process: bool) -> None:
        """3.14: what CPython's allocator writes into the slot (qsbr.c never does)."""
        self._conditions_met("set_bookkeeping", (tstate,))
        self._thread(tstate)
        self._require_profile("3.14", "set_bookkeeping")
        slot = self._slot_of(tstate)
        self._apply("S-DEF-3")
        slot.bookkeeping.update(deferred_count=deferred_count, deferred_memory=deferred_memory,
                                deferred_page_memory=deferred_page_memory,
                                should_process=bool(should_process))

    def goal_reached(self, tstate: int, goal: int) -> bool:
        """S-GOAL-1: QSBR_LEQ(goal, rd_seq), no scan."""
        self._conditions_met("goal_reached", (tstate, goal))
        errors.check_u64(goal, "goal")
        self._slot_of(tstate)
        self._apply("S-GOAL-1")
        reached = qsbr_leq(goal, self.rd_seq)
        if reached != _plain_leq(goal, self.rd_seq):
            self._apply("S-SEQ-3")      # wrap-around decided the answer
            self._reach("wrap: goal_reached decided by the wrap-safe comparison")
        if (goal - self.rd_seq) & _MASK == _HALF:
            self._apply("S-SEQ-3")      # QSBR_LEQ and !QSBR_LT part here
            self._reach("half-range: goal_reached with goal and rd_seq 2^63 apart")
        return reached

    def poll(self, tstate: int, goal: int) -> bool:
        """S-POLL-1: reached already, or scan every slot for the minimum attached seq."""
        self._conditions_met("poll", (tstate, goal))
        errors.check_u64(goal, "goal")
        self._slot_of(tstate)
        self._apply("S-POLL-1")
        before = self.rd_seq
        if (goal - before) & _MASK == _HALF:
            self._apply("S-SEQ-3")      # QSBR_LEQ and !QSBR_LT part here
            self._reach("half-range: poll with goal and rd_seq 2^63 apart")
        reached = self._poll(goal, qsbr_lt, qsbr_leq)
        if (reached, self.rd_seq) != self._plain_poll(goal, before):
            self._apply("S-SEQ-3")      # wrap-around decided the answer or the new rd_seq
            self._reach("wrap: poll decided by the wrap-safe comparison")
        if not qsbr_leq(goal, before) and any(
                not s.allocated and s.seq == self.rd_seq != self.wr_seq for s in self.slots):
            self._reach("fork: a released slot's stale seq holds rd_seq back in a poll")
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
