"""Several live interpreters in the differential machine (S-INTERP-1, S-INTERP-2).

CPython keeps one ``struct _qsbr_shared`` per interpreter (``PyInterpreterState.qsbr``) and a
thread state belongs to the interpreter that made it, so several interpreters alive at once
(subinterpreters) must not see each other's sequences, array, freelist or thread states.  The
machine holds up to :data:`MAX_INTERPRETERS` of them, each paired with its own oracle; the steps
act on the *current* one and ``use_interpreter(i)`` chooses another.  A parked interpreter's
snapshot is compared with its oracle when it becomes current again, so whatever a step on
another interpreter changed in it is seen there and charged to the isolation facts (by the part
that differs: thread states and owners to S-INTERP-2, the rest to S-INTERP-1).

Both operations are machine steps with records of their own (``new_interpreter() -> 1``,
``use_interpreter(0)``), so a report prints them and a replay repeats them.  Armed allocation
failures are disarmed on both sides before another interpreter is used: the adapter protocol
arms them on an interpreter, and an implementation may keep the count per process (the
reference port's allocator does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from ..model.oracle import OracleInterpreter
from .steps import StepRecord

#: Most interpreters alive at once in one example.
MAX_INTERPRETERS = 3

#: The facts a parked interpreter's comparison credits (and is blamed on).
ISOLATION_FACTS = frozenset({"S-INTERP-1", "S-INTERP-2"})

#: The machine's per-interpreter attributes (what is parked while another one is current).
_PER_INTERPRETER = ("impl", "oracle", "threads", "impl_handle", "oracle_handle", "dead",
                    "live_impl_handles", "goals", "readers_at_goal", "last_rd", "snap",
                    "_expected_slots")

#: Operations of the machine itself, not of an interpreter (DifferentialMachine.step).
MACHINE_OPERATIONS = frozenset({"new_interpreter", "use_interpreter"})


class SeveralInterpreters:
    """Mixed into conformance.checks.differential.DifferentialMachine."""

    # set by the machine
    implementation: Any
    profile: str
    trace: list[StepRecord]
    ledger: Any
    snap: Any
    impl: Any
    oracle: OracleInterpreter
    threads: list[int]
    impl_handle: dict[int, Any]
    oracle_handle: dict[int, int]
    dead: dict[int, tuple[Any, Any]]
    live_impl_handles: set[Any]
    goals: list[int]
    readers_at_goal: dict[int, set[int]]
    last_rd: int | None
    _expected_slots: tuple

    #: [an interpreter of this implementation was compared fresh and agreed] (per machine
    #: class): after that, a new interpreter that does not start fresh shows state left by
    #: another interpreter, alive or closed (S-INTERP-1/2), not a wrong initial value (S-SEQ-2)
    fresh_seen: list[bool] = [False]

    def _compare_fresh(self, label: str) -> None:
        seen = self.fresh_seen[0]
        self._compare_state(set(ISOLATION_FACTS) if seen else {"S-SEQ-2"}, label)
        if seen:
            self.ledger.passed("S-SEQ-2")
        self.fresh_seen[0] = True

    def _init_interpreters(self) -> None:
        self.current = 0
        self.parked: dict[int, dict[str, Any]] = {}

    @property
    def interpreter_count(self) -> int:
        return len(self.parked) + 1

    def _park(self) -> None:
        self._disarm()
        self.parked[self.current] = {name: getattr(self, name) for name in _PER_INTERPRETER}

    def _disarm(self) -> None:
        if self.oracle._failing_allocations:
            self._arm_failures(0)

    # Provided by the machine this mixes into (conformance.checks.differential).
    _arm_failures: Callable[[int], None]
    _compare_state: Callable[..., None]

    def _new_interpreter(self) -> int:
        """Open another interpreter beside the current ones (both sides) and make it current;
        its fresh state is compared (a state shared with the others shows there)."""
        index = self.interpreter_count
        self._park()
        self.impl = self.implementation.new_interpreter()
        self.oracle = OracleInterpreter(self.profile)
        self.threads, self.impl_handle, self.oracle_handle, self.dead = [], {}, {}, {}
        self.live_impl_handles = set()
        self.goals, self.readers_at_goal = [1], {}
        self.last_rd, self.snap, self._expected_slots = None, None, ()
        self.current = index
        self.trace.append(StepRecord("new_interpreter", result=index,
                                     note="several interpreters"))
        self._compare_fresh(f"new_interpreter() -> {index}")
        self.last_rd = self.snap.rd_seq if self.snap is not None else None
        return index

    def _use_interpreter(self, index: int) -> None:
        """Make interpreter ``index`` current and compare it with its oracle: nothing done on
        the others since it was parked may show in it."""
        if index == self.current or index not in self.parked:
            return
        self._park()
        for name, value in self.parked.pop(index).items():
            setattr(self, name, value)
        self.current = index
        self.trace.append(StepRecord("use_interpreter", None, (index,),
                                     note="several interpreters"))
        self._compare_state(set(ISOLATION_FACTS), f"use_interpreter({index})")

    def _close_parked(self) -> None:
        """Close every parked interpreter (teardown), the current one excepted."""
        from ..model import errors

        for context in self.parked.values():
            try:
                context["impl"].fail_next_allocations(0)
                context["impl"].close()
            except errors.ImplementationCrashedError:
                pass
            context["oracle"].close()
        self.parked.clear()

    # -- rules ---------------------------------------------------------------------------

    @precondition(lambda self: self.interpreter_count < MAX_INTERPRETERS)
    @rule()
    def new_interpreter(self) -> None:
        self._new_interpreter()

    @precondition(lambda self: self.interpreter_count > 1)
    @rule(data=st.data())
    def use_interpreter(self, data: st.DataObject) -> None:
        self._use_interpreter(data.draw(st.sampled_from(sorted(self.parked)),
                                        label="interpreter"))
