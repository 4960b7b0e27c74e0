"""Thread-safe Python ports with the races of issue 33, and two honest ones beside them.

Each is tests/racy_adapters.py's locked port (every operation under one lock) with one method
changed the way ports go wrong; one thread at a time each is exact (the sequential run passes
them), so only the race probes can tell.

| factory                 | the race                                                | kind        |
|-------------------------|---------------------------------------------------------|-------------|
| scan_reloads_seq        | the scan compares a slot's seq, then loads it again     | scan        |
| rd_seq_check_then_store | poll's rd_seq update: check and store, unlocked, 1 line | scan        |
| scan_reads_wr_last      | the scan bounds the minimum by wr_seq read after slots  | triple      |
| thread_cached_size      | each OS thread scans as many slots as it last saw       | after growth |
| thread_cached_rd_seq    | goal_reached reads the rd_seq its OS thread last saw    | after a poll |
| handle_counter_unlocked | new_thread_state's handle counter: read, then written   | new handle  |
| thread_table_copied     | new_thread_state copies the thread table, unlocked      | new handle  |

Honest: ``lock_free_scan`` (CPython's shape: the scan without the lock, each seq loaded once,
rd_seq moved under the lock); ``nested_lock`` (the lock one attribute deeper,
``interp.q.mutex``); ``declared_lock`` (a lock the scan cannot reach, declared with
``race_locks()``); ``hidden_lock`` (the same undeclared: its stepped probes wait out their
limit, and the run says so).
"""

from __future__ import annotations

import threading
from typing import Any

import racy_adapters
from racy_adapters import LockedInterp, ThreadSafePort

from conformance.model import errors
from conformance.model.oracle import (
    QSBR_OFFLINE,
    OracleInterpreter,
    _ThreadState,
    qsbr_leq,
    qsbr_lt,
)


class LockFreeScan(LockedInterp):
    """Honest: poll scans without the lock, like CPython's (one load of each seq)."""

    def poll(self, tstate: Any, goal: Any) -> bool:
        errors.check_u64(goal, "goal")
        with self._lock:
            self._slot_of(tstate)
            if qsbr_leq(goal, self.rd_seq):
                return True
        minimum = self._scan()
        with self._lock:
            if qsbr_lt(self.rd_seq, minimum):
                self.rd_seq = minimum
            return qsbr_leq(goal, self.rd_seq)

    def _scan(self) -> int:
        minimum = self.wr_seq
        for slot in self.slots:
            seq = slot.seq
            if seq != QSBR_OFFLINE and qsbr_lt(seq, minimum):
                minimum = seq
        return minimum


class ScanReloadsSeq(LockFreeScan):
    def _scan(self) -> int:
        minimum = self.wr_seq
        for slot in self.slots:
            if slot.seq != QSBR_OFFLINE and qsbr_lt(slot.seq, minimum):
                minimum = slot.seq          # bug: loaded again after the compare
        return minimum


class RdSeqCheckThenStore(LockFreeScan):
    def poll(self, tstate: Any, goal: Any) -> bool:
        errors.check_u64(goal, "goal")
        with self._lock:
            self._slot_of(tstate)
            if qsbr_leq(goal, self.rd_seq):
                return True
        minimum = self._scan()
        if qsbr_lt(self.rd_seq, minimum): self.rd_seq = minimum    # noqa: E701 - bug: unlocked
        return qsbr_leq(goal, self.rd_seq)


class ScanReadsWrLast(LockFreeScan):
    def _scan(self) -> int:
        minimum = None
        for slot in self.slots:
            seq = slot.seq
            if seq != QSBR_OFFLINE and (minimum is None or qsbr_lt(seq, minimum)):
                minimum = seq
        wr = self.wr_seq                    # bug: the bound read after the slots
        return wr if minimum is None or qsbr_lt(wr, minimum) else minimum


class ThreadCachedSize(LockFreeScan):
    """Each OS thread remembers the array size it last saw (at its first scan, and when it
    grew the array or ran fini itself): exact one thread at a time."""

    def __init__(self, profile: str) -> None:
        super().__init__(profile)
        self._seen = threading.local()

    def _grow(self) -> bool:
        grown = LockedInterp._grow(self)
        self._seen.size = len(self.slots)
        return grown

    def fini(self) -> None:
        super().fini()
        self._seen.size = 0

    def _scan(self) -> int:
        size = getattr(self._seen, "size", None)
        if size is None:
            size = self._seen.size = len(self.slots)
        minimum = self.wr_seq
        for slot in self.slots[:size]:      # bug: another thread's growth is not seen
            seq = slot.seq
            if seq != QSBR_OFFLINE and qsbr_lt(seq, minimum):
                minimum = seq
        return minimum


class ThreadCachedRdSeq(LockedInterp):
    """Each OS thread remembers rd_seq as it last saw it (at its first call, and when its own
    poll or set_sequences moves it); goal_reached answers from that copy."""

    def __init__(self, profile: str) -> None:
        super().__init__(profile)
        self._seen = threading.local()

    def _remember(self) -> None:
        if not hasattr(self._seen, "rd"):
            self._seen.rd = self.rd_seq

    def new_thread_state(self) -> Any:
        self._remember()
        return super().new_thread_state()

    def set_sequences(self, wr: Any, rd: Any) -> None:
        super().set_sequences(wr, rd)
        self._seen.rd = self.rd_seq

    def poll(self, tstate: Any, goal: Any) -> bool:
        reached = super().poll(tstate, goal)
        self._seen.rd = self.rd_seq
        return reached

    def goal_reached(self, tstate: Any, goal: Any) -> bool:
        with self._lock:
            self._remember()
            errors.check_u64(goal, "goal")
            self._slot_of(tstate)
            return qsbr_leq(goal, self._seen.rd)    # bug: another thread's poll not seen


class HandleCounterUnlocked(LockedInterp):
    def new_thread_state(self) -> Any:
        handle = self._next_handle          # bug: read ...
        self._count_handle(handle)
        with self._lock:
            self.threads[handle] = _ThreadState()
        return handle

    def _count_handle(self, handle: int) -> None:
        self._next_handle = handle + 1      # ... and written back without the lock


class ThreadTableCopied(LockedInterp):
    def new_thread_state(self) -> Any:
        with self._lock:
            handle = self._next_handle
            self._next_handle += 1
        table = dict(self.threads)          # bug: copy-on-write outside the lock
        table[handle] = _ThreadState()
        self.threads = table
        return handle


class _Queue:
    def __init__(self) -> None:
        self.mutex = threading.RLock()


class NestedLock(LockedInterp):
    """Honest: the lock one attribute deeper (``interp.q.mutex``)."""

    def __init__(self, profile: str) -> None:
        OracleInterpreter.__init__(self, profile)
        self.q = _Queue()

    @property
    def _lock(self) -> Any:               # type: ignore[override]
        return self.q.mutex


_HIDDEN: dict[int, Any] = {}


class HiddenLock(LockedInterp):
    """Honest, but its lock sits where no attribute leads (a registry keyed by id)."""

    def __init__(self, profile: str) -> None:
        OracleInterpreter.__init__(self, profile)
        _HIDDEN[id(self)] = threading.RLock()

    @property
    def _lock(self) -> Any:               # type: ignore[override]
        return _HIDDEN[id(self)]


class DeclaredLock(HiddenLock):
    """The same, with its lock declared (docs/adapter-protocol.md, ``race_locks()``)."""

    def race_locks(self) -> list[Any]:
        return [self._lock]


lock_free_scan = racy_adapters._factory(LockFreeScan)
scan_reloads_seq = racy_adapters._factory(ScanReloadsSeq)
rd_seq_check_then_store = racy_adapters._factory(RdSeqCheckThenStore)
scan_reads_wr_last = racy_adapters._factory(ScanReadsWrLast)
thread_cached_size = racy_adapters._factory(ThreadCachedSize)
thread_cached_rd_seq = racy_adapters._factory(ThreadCachedRdSeq)
handle_counter_unlocked = racy_adapters._factory(HandleCounterUnlocked)
thread_table_copied = racy_adapters._factory(ThreadTableCopied)
nested_lock = racy_adapters._factory(NestedLock)
hidden_lock = racy_adapters._factory(HiddenLock)
declared_lock = racy_adapters._factory(DeclaredLock)

#: factory -> (the facts one of which its race must be charged to, an operation of the probe
#: that must catch it)
RACY = {
    "scan_reloads_seq": ({"S-POLL-1", "S-POLL-2"}, "poll"),
    "rd_seq_check_then_store": ({"S-POLL-1", "S-POLL-2"}, "poll"),
    "scan_reads_wr_last": ({"S-POLL-1", "S-POLL-2"}, "poll"),
    "thread_cached_size": ({"S-POLL-1", "S-POLL-2"}, "poll"),
    "thread_cached_rd_seq": ({"S-GOAL-1"}, "goal_reached"),
    "handle_counter_unlocked": ({"S-SLOT-1", "S-REG-1", "S-UNREG-1", "S-FORK-1", "S-FINI-1",
                                 "S-SLOT-3"}, "new_thread_state"),
    "thread_table_copied": ({"S-SLOT-1", "S-REG-1", "S-UNREG-1", "S-FORK-1", "S-FINI-1",
                             "S-SLOT-3"}, "new_thread_state"),
}
HONEST = ("lock_free_scan", "nested_lock", "declared_lock")

__all__ = ["RACY", "HONEST", "ThreadSafePort"]


class AssertsAlone(LockedInterp):
    """A port that asserts no other thread is inside quiescent_state (a debugging check left
    in): it raises AssertionError when two threads pass quiescent states at once."""

    def __init__(self, profile: str) -> None:
        super().__init__(profile)
        self._inside = 0

    def quiescent_state(self, tstate: Any) -> None:
        self._inside += 1
        try:
            assert self._inside == 1, "another thread is inside quiescent_state"
            super().quiescent_state(tstate)
        finally:
            self._inside -= 1


class ForgetsPushes(LockedInterp):
    """Every 5th unregister forgets to push the slot on the freelist (a lost update, as an
    unlocked push racing another shows): the torture's state check names it."""

    def __init__(self, profile: str) -> None:
        super().__init__(profile)
        self._unregisters = 0

    def _push_free(self, index: int, by: str) -> None:
        if by == "unregister":
            self._unregisters += 1
            if self._unregisters % 5 == 0:
                return
        super()._push_free(index, by)


asserts_alone = racy_adapters._factory(AssertsAlone)
forgets_pushes = racy_adapters._factory(ForgetsPushes)


class RaisingPoll(LockedInterp):
    """Its third poll raises ValueError (a bug, not a race): the torture charges it to poll."""

    def __init__(self, profile: str) -> None:
        super().__init__(profile)
        self._polls = 0

    def poll(self, tstate: Any, goal: Any) -> bool:
        self._polls += 1
        if self._polls == 3:
            raise ValueError("the third poll")
        return super().poll(tstate, goal)


raising_poll = racy_adapters._factory(RaisingPoll)
