"""Deliberately wrong QSBR implementations, each plugged in through the adapter protocol.

Each one is the oracle with a single realistic bug; the conformance run must reject it and
name the fact the bug breaks.  They double as examples of small adapters.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from conformance.model.oracle import Oracle, OracleInterpreter, _as_int64, qsbr_leq
from conformance.reference import reference_port

_MASK = (1 << 64) - 1


class _AdvanceReturnsOld(OracleInterpreter):
    def advance(self) -> int:
        old = self.wr_seq
        super().advance()
        return old                      # bug: the pre-advance value


class _FifoFreelist(OracleInterpreter):
    def unregister(self, tstate: int) -> None:
        index = self.threads[tstate].slot if tstate in self.threads else None
        super().unregister(tstate)
        if index is None or self.freelist != index:
            return
        # bug: the freed slot goes to the tail of the freelist instead of its head
        self.freelist = self.slots[index].next_free
        self.slots[index].next_free = None
        if self.freelist is None:
            self.freelist = index
            return
        tail = self.freelist
        while self.slots[tail].next_free is not None:
            tail = self.slots[tail].next_free
        self.slots[tail].next_free = index


def _plain_lt(a: int, b: int) -> bool:
    return (a & _MASK) < (b & _MASK)    # bug: not wrap-around safe


def _plain_leq(a: int, b: int) -> bool:
    return (a & _MASK) <= (b & _MASK)


class _PlainCompare(OracleInterpreter):
    def poll(self, tstate: int, goal: int) -> bool:
        self._slot_of(tstate)
        if _plain_leq(goal, self.rd_seq):
            return True
        minimum = self.wr_seq
        for slot in self.slots:
            if slot.seq != 0 and _plain_lt(slot.seq, minimum):
                minimum = slot.seq
        if _plain_lt(self.rd_seq, minimum):
            self.rd_seq = minimum
        return qsbr_leq(goal, self.rd_seq)

    def goal_reached(self, tstate: int, goal: int) -> bool:
        self._slot_of(tstate)
        return _plain_leq(goal, self.rd_seq)


class _Mutant(Oracle):
    interpreter_class: type[OracleInterpreter] = OracleInterpreter

    def __init__(self, profile: str = "3.13") -> None:
        super().__init__(profile)
        self.name = f"mutant {type(self).__name__}"

    def new_interpreter(self) -> OracleInterpreter:
        return self.interpreter_class(self.profile)


class AdvanceReturnsOld(_Mutant):
    interpreter_class = _AdvanceReturnsOld


class FifoFreelist(_Mutant):
    interpreter_class = _FifoFreelist


class PlainCompare(_Mutant):
    interpreter_class = _PlainCompare
    qsbr_lt = staticmethod(_plain_lt)
    qsbr_leq = staticmethod(_plain_leq)


def advance_returns_old(profile: str = "3.13") -> AdvanceReturnsOld:
    return AdvanceReturnsOld(profile)


def fifo_freelist(profile: str = "3.13") -> FifoFreelist:
    return FifoFreelist(profile)


def plain_compare(profile: str = "3.13") -> PlainCompare:
    return PlainCompare(profile)


# -- mutants of the kinds measured from outside (issue 14): each is one edit of one rule ------
# The exhaustive exploration of the default run must find every one of them by construction;
# nothing in the fixed coverage scenario was written for them.

class _ScanSkipsUnallocated(OracleInterpreter):
    """S-POLL-1: the scan looks at allocated slots only, so the stale seq after_fork leaves
    on a released slot no longer holds rd_seq back."""

    def _poll(self, goal, lt, leq):
        if leq(goal, self.rd_seq):
            return True
        minimum = self.wr_seq
        for slot in self.slots:
            if slot.allocated and slot.seq != 0 and lt(slot.seq, minimum):   # bug
                minimum = slot.seq
        if lt(self.rd_seq, minimum):
            self.rd_seq = minimum
        return bool(leq(goal, self.rd_seq))


class _ScanSkipsOwnSlot(OracleInterpreter):
    """S-POLL-1: the scan skips the caller's own slot."""

    def poll(self, tstate, goal):
        self._polling = self.threads[tstate].slot if tstate in self.threads else None
        try:
            return super().poll(tstate, goal)
        finally:
            self._polling = None

    def _poll(self, goal, lt, leq):
        if leq(goal, self.rd_seq):
            return True
        minimum = self.wr_seq
        for index, slot in enumerate(self.slots):
            if index == getattr(self, "_polling", None):
                continue                                                    # bug
            if slot.seq != 0 and lt(slot.seq, minimum):
                minimum = slot.seq
        if lt(self.rd_seq, minimum):
            self.rd_seq = minimum
        return bool(leq(goal, self.rd_seq))


class _DeferralsPerThread(OracleInterpreter):
    """S-DEF-3: the deferral count is kept per thread state, not per slot (it follows the
    thread, and a thread that gets a reused slot starts from its own count)."""

    def __init__(self, profile):
        super().__init__(profile)
        self.counts = {}

    def deferred_advance(self, tstate):
        self._thread(tstate)
        self._require_profile("3.13", "deferred_advance")
        self._slot_of(tstate)
        self.counts[tstate] = self.counts.get(tstate, 0) + 1               # bug
        if self.counts[tstate] < 10:
            return (self.wr_seq + 2) & _MASK
        self.counts[tstate] = 0
        return self.advance()

    def snapshot(self):
        snap = super().snapshot()
        slots = tuple(replace(s, bookkeeping=(("deferrals", self.counts.get(s.owner, 0)
                                               if s.owner is not None else 0),))
                      for s in snap.slots)
        return replace(snap, slots=slots)


class _MisuseChangesSeq(OracleInterpreter):
    """MISUSE: attach on an attached slot stores wr_seq before it raises."""

    def attach(self, tstate):
        thread = self.threads.get(tstate)
        if thread is not None and thread.slot is not None and not thread.stale:
            self.slots[thread.slot].seq = self.slots[thread.slot].seq and self.wr_seq   # bug
        super().attach(tstate)


class _UnregisterAttachedClearsOwner(OracleInterpreter):
    """MISUSE: unregister of an attached slot clears the owner before it raises."""

    def unregister(self, tstate):
        thread = self.threads.get(tstate)
        if (thread is not None and thread.slot is not None and not thread.stale
                and self.slots[thread.slot].seq != 0):
            self.slots[thread.slot].owner = None                            # bug
        super().unregister(tstate)


class _ForkResetsSeq(OracleInterpreter):
    """S-FORK-1: after_fork resets the seq of the slots it releases."""

    def after_fork(self, tstate):
        mine = self._slot_of(tstate)
        before = [slot.allocated and slot is not mine for slot in self.slots]
        super().after_fork(tstate)
        for slot, released in zip(self.slots, before, strict=True):
            if released:
                slot.seq = 0                                                # bug


class _ReserveResetsSeq(OracleInterpreter):
    """S-FREE-1: reserve clears the seq of the slot it pops."""

    def reserve(self):
        index = super().reserve()
        if index >= 0:
            self.slots[index].seq = 0                                       # bug
        return index


class _UnregisterResetsBookkeeping(OracleInterpreter):
    """S-DEF-3: unregister resets the slot's bookkeeping."""

    def unregister(self, tstate):
        index = self.threads[tstate].slot if tstate in self.threads else None
        super().unregister(tstate)
        if index is not None:
            self.slots[index].bookkeeping = self._new_slot().bookkeeping    # bug


class _QuiescentIgnoredWhenDetached(OracleInterpreter):
    """S-QS-1: quiescent_state on a detached slot does nothing."""

    def quiescent_state(self, tstate):
        slot = self._slot_of(tstate)
        if slot.seq == 0:
            self._apply("S-QS-1")
            return                                                          # bug
        super().quiescent_state(tstate)


class _GoalReachedStrict(OracleInterpreter):
    """S-GOAL-1: goal_reached uses QSBR_LT instead of QSBR_LEQ."""

    def goal_reached(self, tstate, goal):
        super().goal_reached(tstate, goal)
        return _as_int64(goal - self.rd_seq) < 0                             # bug


class _FreelistRebuiltAscending(OracleInterpreter):
    """S-FREE-2: after growth the freelist is rebuilt with the lowest free index first."""

    def _grow(self):
        grown = super()._grow()
        if grown:
            free = [i for i, s in enumerate(self.slots) if not s.allocated]
            self.freelist = None
            for index in reversed(free):                                    # bug
                self._push_free(index)
        return grown


class _FiniResetsSequences(OracleInterpreter):
    """S-FINI-1: fini puts wr_seq and rd_seq back to 1."""

    def fini(self):
        super().fini()
        self.wr_seq = self.rd_seq = 1                                       # bug


class _SetSequencesWhileInUse(OracleInterpreter):
    """MISUSE: set_sequences is accepted while the array exists."""

    def set_sequences(self, wr_seq, rd_seq):
        slots, self.slots = self.slots, []
        try:
            super().set_sequences(wr_seq, rd_seq)                           # bug
        finally:
            self.slots = slots


class _DeferOffByOne(OracleInterpreter):
    """S-DEF-1: deferred_advance advances on the 9th call instead of the 10th."""

    def deferred_advance(self, tstate):
        self._thread(tstate)
        self._require_profile("3.13", "deferred_advance")
        slot = self._slot_of(tstate)
        slot.bookkeeping["deferrals"] += 1
        if slot.bookkeeping["deferrals"] < 9:                               # bug
            return (self.wr_seq + 2) & _MASK
        slot.bookkeeping["deferrals"] = 0
        return self.advance()


def _factory(interpreter_class, name):
    mutant = type(name, (_Mutant,), {"interpreter_class": interpreter_class})

    def make(profile: str = "3.13"):
        return mutant(profile)
    make.__name__ = name
    return make


#: factory name -> (factory, the fact a default run must name)
ISSUE14_MUTANTS = {
    "scan_skips_unallocated": (_ScanSkipsUnallocated, "S-POLL-1"),
    "deferrals_per_thread": (_DeferralsPerThread, "S-DEF-3"),
    "scan_skips_own_slot": (_ScanSkipsOwnSlot, "S-POLL-1"),
    "misuse_changes_seq": (_MisuseChangesSeq, "MISUSE"),
    "unregister_attached_clears_owner": (_UnregisterAttachedClearsOwner, "MISUSE"),
    "fork_resets_seq": (_ForkResetsSeq, "S-FORK-1"),
    "reserve_resets_seq": (_ReserveResetsSeq, "S-FREE-1"),
    "unregister_resets_bookkeeping": (_UnregisterResetsBookkeeping, "S-DEF-3"),
    "quiescent_ignored_when_detached": (_QuiescentIgnoredWhenDetached, "S-QS-1"),
    "goal_reached_strict": (_GoalReachedStrict, "S-GOAL-1"),
    "freelist_rebuilt_ascending": (_FreelistRebuiltAscending, "S-FREE-2"),
    "fini_resets_sequences": (_FiniResetsSequences, "S-FINI-1"),
    "set_sequences_while_in_use": (_SetSequencesWhileInUse, "MISUSE"),
    "defer_off_by_one": (_DeferOffByOne, "S-DEF-1"),
}
for _name, (_cls, _fact) in ISSUE14_MUTANTS.items():
    globals()[_name] = _factory(_cls, _name)


class _ReserveKeepsLink(OracleInterpreter):
    """S-FREE-1: reserve pops the head but leaves its freelist_next pointing at the next free
    slot.  Only visible in the wider snapshot, which this adapter reports."""

    def _allocate(self):
        index = self.freelist
        if index is None:
            return None
        slot = self.slots[index]
        self.freelist = slot.next_free              # bug: slot.next_free is not cleared
        slot.allocated = True
        return index

    def snapshot(self):
        snap = super().snapshot()
        slots = tuple(replace(view, freelist_next=slot.next_free, shared_is_interpreter=True)
                      for view, slot in zip(snap.slots, self.slots, strict=True))
        return replace(snap, slots=slots, array_address_mod_64=0 if self.slots else None)


ISSUE14_MUTANTS["reserve_keeps_link"] = (_ReserveKeepsLink, "S-FREE-1")
reserve_keeps_link = _factory(_ReserveKeepsLink, "reserve_keeps_link")
class _Delegate:
    """An interpreter of the reference port, with the methods a subclass overrides changed."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _EarlyPollInterpreter(_Delegate):
    """The reference port with a grace-period bug: poll(goal) also answers true when the
    previous goal is reached, so a reader attached before the goal may still hold the object."""

    def poll(self, handle, goal):
        return (self._inner.goal_reached(handle, (goal - 2) & _MASK)   # bug: one period early
                or self._inner.poll(handle, goal))


class EarlyPoll:
    """A thread-safe adapter (for the Python-threads torture) with the grace-period bug above."""

    thread_safe = True

    def __init__(self, profile: str = "3.13") -> None:
        self._port = reference_port(profile)
        self.profile = profile
        self.name = "reference port with an early poll"
        self.version = "mutant"

    def new_interpreter(self):
        return _EarlyPollInterpreter(self._port.new_interpreter())

    def qsbr_lt(self, a, b):
        return self._port.qsbr_lt(a, b)

    def qsbr_leq(self, a, b):
        return self._port.qsbr_leq(a, b)


def early_poll(profile: str = "3.13") -> EarlyPoll:
    return EarlyPoll(profile)


class _DetachedBlocksInterpreter(_Delegate):
    """The reference port with a liveness bug: poll answers false while any other thread state
    is detached, as if an offline reader still had to pass a quiescent state."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self._detached: set = set()
        self._lock = threading.Lock()

    def attach(self, handle):
        self._inner.attach(handle)
        with self._lock:
            self._detached.discard(id(handle))

    def detach(self, handle):
        with self._lock:
            self._detached.add(id(handle))
        self._inner.detach(handle)

    def unregister(self, handle):
        with self._lock:
            self._detached.discard(id(handle))
        self._inner.unregister(handle)

    def poll(self, handle, goal):
        with self._lock:
            blocked = bool(self._detached - {id(handle)})
        return self._inner.poll(handle, goal) and not blocked   # bug: detached ones block


class DetachedBlocks(EarlyPoll):
    def __init__(self, profile: str = "3.13") -> None:
        super().__init__(profile)
        self.name = "reference port whose poll waits for detached thread states"

    def new_interpreter(self):
        return _DetachedBlocksInterpreter(self._port.new_interpreter())


def detached_blocks(profile: str = "3.13") -> DetachedBlocks:
    return DetachedBlocks(profile)


class _LeakyGrowthInterpreter(_Delegate):
    """The reference port, as an implementation that keeps each array it outgrew: every
    reserve that needs a larger array leaks one block (seen through live_allocations())."""

    def __init__(self, inner, leaks: list) -> None:
        super().__init__(inner)
        self._leaks = leaks
        self._capacity = 0
        self._lock = threading.Lock()

    def reserve(self):
        index = self._inner.reserve()
        with self._lock:
            while index >= self._capacity:          # the array doubled (8, 16, 32, ...)
                if self._capacity:
                    self._leaks.append(self._capacity)  # bug: the old array is never freed
                self._capacity = max(8, 2 * self._capacity)
        return index


class LeakyGrowth(EarlyPoll):
    def __init__(self, profile: str = "3.13") -> None:
        super().__init__(profile)
        self.name = "reference port whose growth leaks the old array"
        self._leaks: list = []

    def new_interpreter(self):
        return _LeakyGrowthInterpreter(self._port.new_interpreter(), self._leaks)

    def live_allocations(self) -> int:
        return self._port.live_allocations() + len(self._leaks)


def leaky_growth(profile: str = "3.13") -> LeakyGrowth:
    return LeakyGrowth(profile)
