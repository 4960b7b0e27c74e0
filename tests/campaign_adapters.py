"""A port with a boundary-only bug, for the campaign tests (tests/runs/test_campaign.py).

``wrap_with_many_threads``: a port with a fast path for busy interpreters.  When a fourth
thread state registers just below the 2^64 wrap, it sets a flag; once the write sequence has
wrapped, poll takes the fast path, which compares sequence numbers as plain unsigned integers
(not wrap-safe, S-SEQ-3): a goal just after the wrap reads as reached while a reader that
attached before the wrap still holds it back (S-POLL-1, S-SAFE-1).

The default run misses it: the coverage scenario crosses the wrap with two thread states, the
bounded-exhaustive exploration holds at most three, and a random example has to start near the
wrap, register four thread states there, attach one, cross the wrap and poll.  Each stage (two,
three, four thread states registered near the wrap) is a branch of its own, so a
coverage-guided fuzzer (HypoFuzz) keeps an example that reaches one stage and goes on from it.
"""

from __future__ import annotations

from conformance.model.oracle import Oracle, OracleInterpreter

_MASK = (1 << 64) - 1
_NEAR = 1 << 16


def _plain_leq(a: int, b: int) -> bool:
    return (a & _MASK) <= (b & _MASK)


class _WrapWithManyThreads(OracleInterpreter):
    many_threads_at_wrap = False

    def register(self, tstate: int, index: int) -> None:
        super().register(tstate, index)
        if self.wr_seq > _MASK - _NEAR:             # registered just below the wrap
            registered = sum(1 for slot in self.slots if slot.owner is not None)
            if registered >= 2:
                if registered >= 3:
                    if registered >= 4:
                        self.many_threads_at_wrap = True

    def poll(self, tstate: int, goal: int) -> bool:
        if self.many_threads_at_wrap and self.wr_seq < _NEAR:     # after the wrap
            self._slot_of(tstate)
            if _plain_leq(goal, self.rd_seq):       # bug: the fast path compares plainly
                self._apply("S-POLL-1")
                return True
        return super().poll(tstate, goal)


class WrapWithManyThreads(Oracle):
    """The oracle with the bug above, as an adapter."""

    def __init__(self, profile: str = "3.13") -> None:
        super().__init__(profile)
        self.name = "boundary-only mutant wrap_with_many_threads"

    def new_interpreter(self) -> _WrapWithManyThreads:
        return _WrapWithManyThreads(self.profile)


def wrap_with_many_threads(profile: str = "3.13") -> WrapWithManyThreads:
    return WrapWithManyThreads(profile)
