"""Thread-safe Python ports with one realistic race each, and the honest one they come from.

``locked`` is a pure-Python QSBR that declares ``thread_safe = True`` (docs/adapter-protocol.md,
'Thread safety') and keeps the promise the simple way a porter would: every operation runs
under one lock, and growth copies the slot records into a new list (like upstream's memcpy
into a new array), which is safe because nobody touches a slot without the lock.  It is the
model (conformance.model.oracle) under that lock, so one thread at a time it conforms exactly.

Each racy port changes one method of it the way ports go wrong when someone takes the lock out
of a hot path or moves a store past the unlock.  One thread at a time each is still exact (the
sequential run passes them); only two threads inside operations at once can tell.  In every one
the racing window holds a function call, as real code does: on a GIL build the interpreter
switches threads only at such points (see conformance.checks.races).

| factory                   | the race                                               | fact       |
|---------------------------|--------------------------------------------------------|------------|
| unlocked_advance          | read-modify-write of wr_seq without the lock           | S-ADV-1    |
| goal_reread_after_unlock  | advance's goal read again after the lock is released   | S-ADV-1    |
| freelist_pop_outside_lock | reserve reads the freelist head before taking the lock | S-RES-1    |
| claim_after_unlock        | reserve marks its slot allocated after the unlock      | S-RES-1    |
| growth_copy_outside_lock  | growth copies the slot records outside the lock        | S-RES-1    |
| detach_without_lock       | detach stores seq through a slot looked up unlocked    | S-DETACH-1 |
| owner_after_unlock        | register stores the owner after the unlock             | S-REG-1    |
| poll_cached_rd_seq        | poll reads rd_seq unlocked, compares with that copy    | S-POLL-2   |
| deferred_advance_unlocked | 3.13: deferred_advance advances at the limit, unlocked | S-ADV-1    |

(The registry races are named S-RES-1 as well: a reserve took part.)
"""

from __future__ import annotations

import functools
import threading
from dataclasses import replace
from typing import Any

from conformance.model import errors
from conformance.model.oracle import (
    QSBR_DEFERRED_LIMIT,
    QSBR_INCR,
    QSBR_OFFLINE,
    Oracle,
    OracleInterpreter,
    qsbr_leq,
    qsbr_lt,
)

_MASK = (1 << 64) - 1

_PUBLIC = ("set_sequences", "fail_next_allocations", "new_thread_state",
           "delete_thread_state", "reserve", "register", "unregister", "fini", "after_fork",
           "attach", "detach", "quiescent_state", "advance", "deferred_advance", "shared_next",
           "should_process", "set_bookkeeping", "goal_reached", "poll", "snapshot", "close")


def _add(seq: int, incr: int) -> int:
    """Unsigned 64-bit addition (a port's helper)."""
    return (seq + incr) & _MASK


def _locked(name: str) -> Any:
    method = getattr(OracleInterpreter, name)

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any) -> Any:
        with self._lock:
            return method(self, *args)
    return wrapper


class LockedInterp(OracleInterpreter):
    """The honest thread-safe port: every operation under one (re-entrant) lock."""

    def __init__(self, profile: str) -> None:
        super().__init__(profile)
        self._lock = threading.RLock()

    for _name in _PUBLIC:
        locals()[_name] = _locked(_name)
    del _name

    def _grow(self) -> bool:
        # Copy the records into a new list, like upstream's memcpy into a new array; the
        # thread states keep their index, which designates the copy from now on.
        old = self.slots
        self.slots = [replace(s, bookkeeping=dict(s.bookkeeping)) for s in old]
        if not OracleInterpreter._grow(self):
            self.slots = old
            return False
        return True

    def _scan(self) -> int:
        minimum = self.wr_seq
        for slot in self.slots:
            if slot.seq != QSBR_OFFLINE and qsbr_lt(slot.seq, minimum):
                minimum = slot.seq
        return minimum


# --- one race each -----------------------------------------------------------------------

class UnlockedAdvance(LockedInterp):
    def advance(self) -> int:
        wr = self.wr_seq                    # bug: read ...
        goal = _add(wr, QSBR_INCR)
        self.wr_seq = goal                  # ... and written back without the lock
        return goal


class GoalRereadAfterUnlock(LockedInterp):
    def advance(self) -> int:
        with self._lock:
            OracleInterpreter.advance(self)
        return self.wr_seq                  # bug: the goal read again after the unlock


class FreelistPopOutsideLock(LockedInterp):
    def reserve(self) -> int:
        index = self.freelist               # bug: the head read before taking the lock
        if index is None or not self._reusable(index):
            with self._lock:
                return OracleInterpreter.reserve(self)
        with self._lock:
            slot = self.slots[index]
            self.freelist = slot.next_free
            slot.next_free = None
            slot.allocated = True
        return index

    def _reusable(self, index: int) -> bool:
        return 0 <= index < len(self.slots)


class ClaimAfterUnlock(LockedInterp):
    def reserve(self) -> int:
        with self._lock:
            index = self.freelist
            if index is None:
                if not self._grow():
                    return -1
                index = self.freelist
            assert index is not None
            slot = self.slots[index]
            self.freelist, slot.next_free = slot.next_free, None
        self._claim(index)                  # bug: the slot is marked allocated after the unlock
        return index

    def _claim(self, index: int) -> None:
        self.slots[index].allocated = True


class GrowthCopyOutsideLock(LockedInterp):
    def reserve(self) -> int:
        with self._lock:
            if self.freelist is not None or self._failing_allocations:
                return OracleInterpreter.reserve(self)
        grown = self._grown_copy()          # bug: the records are copied without the lock
        with self._lock:
            self.slots = grown
            self.freelist = None
            for index, slot in enumerate(self.slots):
                if not slot.allocated:
                    self._push_free(index, "growth")
            index = self.freelist
            assert index is not None
            slot = self.slots[index]
            self.freelist, slot.next_free, slot.allocated = slot.next_free, None, True
            return index

    def _grown_copy(self) -> list:
        copied = [replace(s, bookkeeping=dict(s.bookkeeping)) for s in self.slots]
        return copied + [self._new_slot() for _ in range(max(2 * len(copied), 8)
                                                         - len(copied))]


class DetachWithoutLock(LockedInterp):
    def detach(self, tstate: Any) -> None:
        slot = self._slot_of(tstate)        # bug: the hot path takes no lock
        if slot.seq == QSBR_OFFLINE:
            raise errors.NotAttachedError(f"thread state {tstate} is not attached")
        self._apply("S-DETACH-1", "S-SEQ-1")
        slot.seq = QSBR_OFFLINE             # may land in the array a growth just replaced


class OwnerAfterUnlock(LockedInterp):
    def register(self, tstate: Any, index: Any) -> None:
        with self._lock:
            thread = self._thread(tstate)
            if not isinstance(index, int) or not -(1 << 63) <= index < (1 << 63):
                raise errors.IndexOutOfRangeError(f"slot index {index!r} is not valid")
            if thread.slot is not None:
                if thread.stale:
                    raise errors.StaleSlotError(f"thread state {tstate}: slot released")
                raise errors.AlreadyRegisteredError(f"thread state {tstate} has a slot")
            if not 0 <= index < len(self.slots):
                raise errors.IndexOutOfRangeError(f"slot index {index} outside the array")
            slot = self.slots[index]
            if not slot.allocated:
                raise errors.SlotNotReservedError(f"slot {index} is not reserved")
            if slot.owner is not None:
                raise errors.SlotOwnedError(f"slot {index} is registered")
            thread.slot = index
        self._publish_owner(slot, tstate)   # bug: the back pointer stored after the unlock

    @staticmethod
    def _publish_owner(slot: Any, tstate: Any) -> None:
        slot.owner = tstate


class PollCachedRdSeq(LockedInterp):
    def poll(self, tstate: Any, goal: Any) -> bool:
        errors.check_u64(goal, "goal")
        with self._lock:
            self._slot_of(tstate)
        rd = self.rd_seq                    # bug: read without the lock ...
        if qsbr_leq(goal, rd):
            return True
        with self._lock:
            minimum = self._scan()
        if qsbr_lt(rd, minimum):            # ... and trusted: rd_seq may move back
            self.rd_seq = rd = minimum
        return qsbr_leq(goal, rd)


class DeferredAdvanceUnlocked(LockedInterp):
    def deferred_advance(self, tstate: Any) -> int:
        with self._lock:
            self._thread(tstate)
            self._require_profile("3.13", "deferred_advance")
            slot = self._slot_of(tstate)
            slot.bookkeeping["deferrals"] += 1
            if slot.bookkeeping["deferrals"] < QSBR_DEFERRED_LIMIT:
                return _add(self.wr_seq, QSBR_INCR)
            slot.bookkeeping["deferrals"] = 0
        goal = _add(self.wr_seq, QSBR_INCR)     # bug: the advance done by hand, unlocked
        self.wr_seq = goal
        return goal


# --- the implementations -----------------------------------------------------------------

class ThreadSafePort(Oracle):
    thread_safe = True
    interpreter_class: type[LockedInterp] = LockedInterp

    def __init__(self, profile: str = "3.13") -> None:
        super().__init__(profile)
        self.name = f"locked Python port ({self.interpreter_class.__name__})"

    def new_interpreter(self) -> LockedInterp:      # type: ignore[override]
        return self.interpreter_class(self.profile)


def _factory(cls: type[LockedInterp]) -> Any:
    def make(profile: str = "3.13") -> ThreadSafePort:
        impl = ThreadSafePort(profile)
        impl.interpreter_class = cls
        impl.name = f"locked Python port ({cls.__name__})"
        return impl
    return make


locked = _factory(LockedInterp)
unlocked_advance = _factory(UnlockedAdvance)
goal_reread_after_unlock = _factory(GoalRereadAfterUnlock)
freelist_pop_outside_lock = _factory(FreelistPopOutsideLock)
claim_after_unlock = _factory(ClaimAfterUnlock)
growth_copy_outside_lock = _factory(GrowthCopyOutsideLock)
detach_without_lock = _factory(DetachWithoutLock)
owner_after_unlock = _factory(OwnerAfterUnlock)
poll_cached_rd_seq = _factory(PollCachedRdSeq)
deferred_advance_unlocked = _factory(DeferredAdvanceUnlocked)

#: factory name -> (profile, the fact its race breaks)
RACY = {
    "unlocked_advance": ("3.13", "S-ADV-1"),
    "goal_reread_after_unlock": ("3.13", "S-ADV-1"),
    "freelist_pop_outside_lock": ("3.13", "S-RES-1"),
    "claim_after_unlock": ("3.13", "S-RES-1"),
    "growth_copy_outside_lock": ("3.14", "S-RES-1"),
    "detach_without_lock": ("3.13", "S-DETACH-1"),
    "owner_after_unlock": ("3.14", "S-REG-1"),
    "poll_cached_rd_seq": ("3.13", "S-POLL-2"),
    "deferred_advance_unlocked": ("3.13", "S-ADV-1"),
}
