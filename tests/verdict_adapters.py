"""Adapters for the one-verdict tests: a thread-safe Python port, the same port with a race
that only concurrency reveals, and a port whose bug only shows across the 2^64 wrap.

The thread-safe port is the oracle behind one lock per interpreter (every operation is then
atomic, so the port is linearizable and declares ``thread_safe = True`` honestly).  The racy
one reads wr_seq under the lock and writes it back under the lock in a second critical
section: a lost update when two advances interleave, and nothing a sequential run can see.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from conformance.model.oracle import Oracle, OracleInterpreter, qsbr_leq

_MASK = (1 << 64) - 1


class _LockedInterpreter:
    def __init__(self, profile: str, racy_advance: bool = False) -> None:
        self._oracle = OracleInterpreter(profile)
        self._lock = threading.RLock()
        self._racy_advance = racy_advance
        self._allocated = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._oracle, name)
        if not callable(method):
            raise AttributeError(name)

        def locked(*args: Any) -> Any:
            with self._lock:
                return method(*args)
        return locked

    def advance(self) -> int:
        if not self._racy_advance:
            with self._lock:
                return self._oracle.advance()
        with self._lock:
            old = self._oracle.wr_seq                   # bug: read ...
        time.sleep(0)                                   # (any switch here loses an update)
        with self._lock:
            self._oracle.wr_seq = (old + 2) & _MASK     # ... and write in two sections
            return self._oracle.wr_seq


class LockedOracle(Oracle):
    """A thread-safe Python port (the oracle under one lock per interpreter)."""

    thread_safe = True

    def __init__(self, profile: str = "3.13", racy_advance: bool = False) -> None:
        super().__init__(profile)
        self.name = "locked oracle" + (" with a racy advance" if racy_advance else "")
        self._racy_advance = racy_advance

    def new_interpreter(self) -> Any:
        return _LockedInterpreter(self.profile, self._racy_advance)

    def live_allocations(self) -> int:
        return 0


def locked_oracle(profile: str = "3.13") -> LockedOracle:
    return LockedOracle(profile)


def racy_advance(profile: str = "3.13") -> LockedOracle:
    return LockedOracle(profile, racy_advance=True)


class _ScanPlainMinimum(OracleInterpreter):
    """poll's scan takes the minimum with a plain unsigned ``<``: right everywhere but
    across the 2^64 wrap, where a reader just below it no longer holds a goal just above."""

    def _poll(self, goal: int, lt: Any, leq: Any) -> bool:
        if leq(goal, self.rd_seq):
            return True
        minimum = self.wr_seq
        for slot in self.slots:
            if slot.seq != 0 and slot.seq < minimum:    # bug: plain unsigned comparison
                minimum = slot.seq
        if lt(self.rd_seq, minimum):
            self.rd_seq = minimum
        return bool(qsbr_leq(goal, self.rd_seq))


class ScanPlainMinimum(Oracle):
    name = "oracle whose scan compares with a plain unsigned <"

    def new_interpreter(self) -> OracleInterpreter:
        return _ScanPlainMinimum(self.profile)


def scan_plain_minimum(profile: str = "3.13") -> ScanPlainMinimum:
    return ScanPlainMinimum(profile)
