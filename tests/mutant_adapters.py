"""Deliberately wrong QSBR implementations, each plugged in through the adapter protocol.

Each one is the oracle with a single realistic bug; the conformance run must reject it and
name the fact the bug breaks.  They double as examples of small adapters.
"""

from __future__ import annotations

from conformance.model.oracle import Oracle, OracleInterpreter, qsbr_leq

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
