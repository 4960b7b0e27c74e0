"""A port with a boundary-only bug, for the campaign tests (tests/test_campaign.py).

``wrap_with_many_readers``: poll's scan compares sequence numbers as plain unsigned integers
(not wrap-safe, S-SEQ-3) but only when it runs just after the 2^64 wrap with four or more
readers attached, one of them from before the wrap.  Such a poll reports a goal reached while a
reader that attached before the wrap still holds it back (S-SAFE-1, S-POLL-1).

The default run misses it: the coverage scenario crosses the wrap with two threads, the
bounded-exhaustive exploration holds at most three thread states, and a random example has
to start near the wrap, create and attach four readers and cross the wrap before it polls.
Each stage of the condition is its own branch, so a coverage-guided fuzzer (HypoFuzz) climbs
it one stage at a time.
"""

from __future__ import annotations

from conformance.model.oracle import Oracle, OracleInterpreter

_MASK = (1 << 64) - 1
_NEAR = 1 << 16


def _plain_leq(a: int, b: int) -> bool:
    return (a & _MASK) <= (b & _MASK)


class _WrapWithManyReaders(OracleInterpreter):
    def poll(self, tstate: int, goal: int) -> bool:
        if self.wr_seq < _NEAR and self.threads.get(tstate) is not None:
            attached = [s.seq for s in self.slots if s.seq != 0]
            if any(seq > _MASK - _NEAR for seq in attached):           # a reader from before
                if len(attached) >= 2:
                    if len(attached) >= 3:
                        if len(attached) >= 4 and self.threads[tstate].slot is not None \
                                and not self.threads[tstate].stale:
                            # bug: the fast path compares plainly
                            if _plain_leq(goal, self.rd_seq):
                                self._slot_of(tstate)
                                self._apply("S-POLL-1")
                                return True
        return super().poll(tstate, goal)


class WrapWithManyReaders(Oracle):
    """The oracle with the bug above, as an adapter."""

    def __init__(self, profile: str = "3.13") -> None:
        super().__init__(profile)
        self.name = "boundary-only mutant wrap_with_many_readers"

    def new_interpreter(self) -> _WrapWithManyReaders:
        return _WrapWithManyReaders(self.profile)


def wrap_with_many_readers(profile: str = "3.13") -> WrapWithManyReaders:
    return WrapWithManyReaders(profile)
