"""Wrong implementations of the kinds a default run used to miss (issues 24 and 25): growth that
drops a field or stops at a fixed 64-slot table, misuse precedence, profile, argument-type and
unknown-handle slips, set_sequences' rules on its second argument and at 2^63 apart.

Written the way porters err, each as the oracle (conformance.oracle) with one realistic edit,
like tests/mutant_adapters.py; none of the suite's checks was written against one of them.
``MUTANTS`` lists them with the fact a default run must name; tests/test_seqgen.py runs them.
"""

from __future__ import annotations

from conformance.model import errors
from conformance.model.oracle import Oracle, OracleInterpreter, qsbr_leq, qsbr_lt

_MASK = (1 << 64) - 1


class _GrowthDropsField(OracleInterpreter):
    """Growth copies the old slots field by field and forgets one (``field``)."""

    field = "seq"

    def _grow(self) -> bool:
        old = len(self.slots)
        if not super()._grow():
            return False
        for slot in self.slots[:old]:                   # bug: the copy drops the field
            if self.field == "seq":
                slot.seq = 0
            else:
                slot.bookkeeping[self.field] = type(slot.bookkeeping[self.field])()
        return True


class _GrowthDropsSeq(_GrowthDropsField):
    """S-RES-1: growth does not carry an attached slot's seq (the new array's is 0)."""

    field = "seq"


class _GrowthDropsPageMemory(_GrowthDropsField):
    """S-RES-1 (3.14): growth does not carry ``deferred_page_memory``."""

    field = "deferred_page_memory"


class _GrowthDropsShouldProcess(_GrowthDropsField):
    """S-RES-1 (3.14): growth does not carry ``should_process``, the last bookkeeping field."""

    field = "should_process"


class _FixedTable64(OracleInterpreter):
    """S-SLOT-3: a static table of 64 slots; the growth past it fails (reserve returns -1)."""

    def _grow(self) -> bool:
        if max(2 * len(self.slots), 8) > 64:
            return False                                # bug: no room past the table
        return super()._grow()


class _PollHandleBeforeGoal(OracleInterpreter):
    """MISUSE: poll and goal_reached look the handle up before checking the goal, so a bad
    goal on an unknown thread state raises UnknownThreadStateError, not BadSequenceError."""

    def poll(self, tstate, goal):
        self._thread(tstate)                            # bug: rule 2 before rule 1
        return super().poll(tstate, goal)

    def goal_reached(self, tstate, goal):
        self._thread(tstate)
        return super().goal_reached(tstate, goal)


class _SetSequencesFreshFirst(OracleInterpreter):
    """MISUSE: set_sequences checks "not fresh" before the arguments' range."""

    def set_sequences(self, wr_seq, rd_seq):
        if self.slots:                                  # bug: rule 6 before rule 1
            raise errors.NotFreshError("sequences can only be set before the array exists")
        super().set_sequences(wr_seq, rd_seq)


class _SharedNextOn313(OracleInterpreter):
    """MISUSE: a 3.13 port that also offers 3.14's shared_next, and it works."""

    def shared_next(self):
        if self.profile == "3.13":
            return (self.wr_seq + 2) & _MASK            # bug: not UnsupportedOperationError
        return super().shared_next()


class _DeferredAdvanceOn314(OracleInterpreter):
    """MISUSE: a 3.14 port that kept 3.13's deferred_advance working (counting nowhere)."""

    def deferred_advance(self, tstate):
        if self.profile == "3.14":
            self._slot_of(tstate)
            return (self.wr_seq + 2) & _MASK            # bug
        return super().deferred_advance(tstate)


class _CoercesGoal(OracleInterpreter):
    """MISUSE: poll and goal_reached coerce their goal with int() (True, 3.0 and "3" work)."""

    @staticmethod
    def _coerce(goal):
        return int(goal) if isinstance(goal, (bool, float, str)) else goal    # bug

    def poll(self, tstate, goal):
        return super().poll(tstate, self._coerce(goal))

    def goal_reached(self, tstate, goal):
        return super().goal_reached(tstate, self._coerce(goal))


class _CoercesIndex(OracleInterpreter):
    """MISUSE: register takes any index operator.index() accepts (True is slot 1)."""

    def register(self, tstate, index):
        if isinstance(index, bool):
            index = int(index)                          # bug
        return super().register(tstate, index)


class _DeleteUnknownSilent(OracleInterpreter):
    """MISUSE: deleting a thread state that does not exist (any more) does nothing."""

    def delete_thread_state(self, tstate):
        if tstate not in self.threads:
            return                                      # bug: not UnknownThreadStateError
        super().delete_thread_state(tstate)


class _SecondParityUnchecked(OracleInterpreter):
    """MISUSE: set_sequences checks wr_seq's parity and the order, not rd_seq's parity."""

    def set_sequences(self, wr_seq, rd_seq):
        errors.check_u64(wr_seq, "wr_seq")
        errors.check_u64(rd_seq, "rd_seq")
        if self.slots:
            raise errors.NotFreshError("sequences can only be set before the array exists")
        if wr_seq % 2 == 0 or not qsbr_leq(rd_seq, wr_seq):     # bug: rd_seq's parity
            raise errors.BadSequenceError("bad sequences")
        self.wr_seq, self.rd_seq = wr_seq, rd_seq


class _RdAfterWrByLt(OracleInterpreter):
    """S-SEQ-3: "rd_seq after wr_seq" read as QSBR_LT(wr, rd) instead of !QSBR_LEQ(rd, wr): the
    two differ only at values 2^63 apart, where this port rejects a valid pair."""

    def set_sequences(self, wr_seq, rd_seq):
        errors.check_u64(wr_seq, "wr_seq")
        errors.check_u64(rd_seq, "rd_seq")
        if self.slots:
            raise errors.NotFreshError("sequences can only be set before the array exists")
        if wr_seq % 2 == 0 or rd_seq % 2 == 0 or qsbr_lt(wr_seq, rd_seq):   # bug
            raise errors.BadSequenceError("bad sequences")
        self.wr_seq, self.rd_seq = wr_seq, rd_seq


class _GoalReachedByLt(OracleInterpreter):
    """S-SEQ-3: goal_reached as !QSBR_LT(rd_seq, goal): differs from QSBR_LEQ(goal, rd_seq)
    only for a goal 2^63 from rd_seq."""

    def goal_reached(self, tstate, goal):
        errors.check_u64(goal, "goal")
        self._slot_of(tstate)
        return not qsbr_lt(self.rd_seq, goal)           # bug


class SeqgenMutant(Oracle):
    interpreter_class: type[OracleInterpreter] = OracleInterpreter

    def __init__(self, profile: str = "3.13", interpreter_class=None) -> None:
        super().__init__(profile)
        self.interpreter_class = interpreter_class or self.interpreter_class
        self.name = f"mutant {self.interpreter_class.__name__.lstrip('_')}"

    def new_interpreter(self) -> OracleInterpreter:
        return self.interpreter_class(self.profile)


def _factory(cls, default_profile):
    def make(profile: str | None = None) -> SeqgenMutant:
        return SeqgenMutant(profile or default_profile, cls)
    make.__name__ = cls.__name__.lstrip("_")
    return make


#: name -> (factory, profile, the fact a default run must name, kind)
MUTANTS = {
    "growth_drops_seq": (_GrowthDropsSeq, "3.13", "S-RES-1", "growth"),
    "growth_drops_seq_314": (_GrowthDropsSeq, "3.14", "S-RES-1", "growth"),
    "growth_drops_page_memory": (_GrowthDropsPageMemory, "3.14", "S-RES-1", "growth"),
    "growth_drops_should_process": (_GrowthDropsShouldProcess, "3.14", "S-RES-1", "growth"),
    "fixed_table_64": (_FixedTable64, "3.13", "S-SLOT-3", "growth"),
    "poll_handle_before_goal": (_PollHandleBeforeGoal, "3.13", "MISUSE", "precedence"),
    "set_sequences_fresh_first": (_SetSequencesFreshFirst, "3.13", "MISUSE", "precedence"),
    "shared_next_on_313": (_SharedNextOn313, "3.13", "MISUSE", "profile"),
    "deferred_advance_on_314": (_DeferredAdvanceOn314, "3.14", "MISUSE", "profile"),
    "coerces_goal": (_CoercesGoal, "3.13", "MISUSE", "argument type"),
    "coerces_index": (_CoercesIndex, "3.14", "MISUSE", "argument type"),
    "delete_unknown_silent": (_DeleteUnknownSilent, "3.13", "MISUSE", "unknown handle"),
    "second_parity_unchecked": (_SecondParityUnchecked, "3.13", "MISUSE", "set_sequences"),
    "rd_after_wr_by_lt": (_RdAfterWrByLt, "3.13", "S-SEQ-3", "half range"),
    "goal_reached_by_lt": (_GoalReachedByLt, "3.14", "S-SEQ-3", "half range"),
}

# Factories: --impl seqgen_mutant_adapters:NAME with PYTHONPATH=tests
for _name, (_cls, _profile, _fact, _kind) in MUTANTS.items():
    globals()[_name] = _factory(_cls, _profile)
