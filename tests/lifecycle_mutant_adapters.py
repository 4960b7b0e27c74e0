"""Wrong implementations of the kinds issue 33 found a default run missing: allocation failure
across the lifecycle, state shared between interpreters, and bugs whose blame named the wrong
fact.

Written the way porters err, each as the oracle (conformance.oracle) with one realistic edit,
like tests/seqgen_mutant_adapters.py; none of the suite's checks was written against one of
them.  ``MUTANTS`` lists them with the facts a default run must name (``exact``: the run must
name exactly these, no more); tests/runs/test_lifecycle.py runs them.
"""

from __future__ import annotations

from conformance.model.oracle import Oracle, OracleInterpreter

# -- allocation failure across the lifecycle --------------------------------------------------


class _FiniForgetsArmedCount(OracleInterpreter):
    """fini resets the allocator's fault injection with the array: a failure armed before fini
    no longer fails the re-initialisation."""

    def fini(self) -> None:
        super().fini()
        self._failing_allocations = 0                   # bug: the count is not fini's


class _GrowthConsumesTwo(OracleInterpreter):
    """A failed growth consumes two armed failures (it retries the allocation once before
    giving up, and the retry fails too)."""

    def _grow(self) -> bool:
        if self._failing_allocations >= 2:
            self._failing_allocations -= 1              # bug: the retry eats another one
        return super()._grow()


class _HalfGrownAfterFini(OracleInterpreter):
    """After fini, a failed growth leaves the new size recorded with no slot free (the size is
    set before the allocation and rolled back only from the old array, which fini freed)."""

    def _grow(self) -> bool:
        failing = bool(self._failing_allocations)
        ok = super()._grow()
        if failing and not ok and self.finished and not self.slots:
            self.slots = [self._new_slot() for _ in range(8)]   # bug: half-grown
            for index in range(8):
                self.slots[index].allocated = True
        return ok


class _AfterForkDisarms(OracleInterpreter):
    """after_fork re-initialises the allocator's hooks in the child and so forgets the armed
    failures."""

    def after_fork(self, tstate: int) -> None:
        super().after_fork(tstate)
        self._failing_allocations = 0                   # bug


# -- state shared between interpreters -------------------------------------------------------

class _Shared:
    """What a port wrongly keeps once per process instead of once per interpreter."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}


def _shared_attribute(name: str) -> property:
    def get(self):
        return self._process.values[name]

    def put(self, value) -> None:
        self._process.values[name] = value
    return property(get, put)


class _SharesAcrossInterpreters(OracleInterpreter):
    """Keeps ``shared`` attributes in one object for every interpreter of the implementation
    (a static ``_qsbr_shared`` instead of ``interp->qsbr``)."""

    shared: tuple[str, ...] = ()
    _process: _Shared

    def __init__(self, profile: str, process: _Shared | None = None) -> None:
        self._process = process or _Shared()
        super().__init__(profile)       # re-initialises the static state for every interpreter


class _SharedSequences(_SharesAcrossInterpreters):
    """S-INTERP-1: wr_seq and rd_seq are process globals."""

    shared = ("wr_seq", "rd_seq")
    wr_seq = _shared_attribute("wr_seq")
    rd_seq = _shared_attribute("rd_seq")


class _SharedTable(_SharesAcrossInterpreters):
    """S-INTERP-1: one slot table (array and freelist) for the whole process."""

    shared = ("slots", "freelist")
    slots = _shared_attribute("slots")
    freelist = _shared_attribute("freelist")
    pushed_by = _shared_attribute("pushed_by")


class _SharedThreadStates(_SharesAcrossInterpreters):
    """S-INTERP-2: one table of thread states for the process: every interpreter lists the
    others' thread states too."""

    shared = ("threads", "_next_handle")
    threads = _shared_attribute("threads")
    _next_handle = _shared_attribute("_next_handle")


# -- blame by the field and the rule ----------------------------------------------------------

class _AdvanceZeroesBookkeeping(OracleInterpreter):
    """3.14: advance resets every slot's deferral bookkeeping (a port that treats an advance
    as the end of every batch).  S-DEF-2/S-DEF-3, not S-ADV-1 or S-SEQ-1."""

    def advance(self) -> int:
        goal = super().advance()
        for slot in self.slots:
            slot.bookkeeping = self._new_slot().bookkeeping     # bug
        return goal


class _AdvancePullsReadSequence(OracleInterpreter):
    """advance also moves rd_seq to wr_seq when no slot is attached (an eager scan).  S-ADV-1
    alone: no constant is wrong."""

    def advance(self) -> int:
        goal = super().advance()
        if not any(s.seq for s in self.slots):
            self.rd_seq = self.wr_seq                           # bug
        return goal


class _IncrementIsFour(OracleInterpreter):
    """QSBR_INCR is 4: a wrong constant (S-SEQ-1) and so a wrong advance (S-ADV-1)."""

    def advance(self) -> int:
        super().advance()
        self.wr_seq = (self.wr_seq + 2) & ((1 << 64) - 1)      # bug: +4 in all
        return self.wr_seq


class _AfterForkMovesReadSequence(OracleInterpreter):
    """after_fork moves rd_seq to wr_seq (a port that "resets" reclamation in the child).
    S-FORK-1, not S-DEF-3."""

    def after_fork(self, tstate: int) -> None:
        super().after_fork(tstate)
        self.rd_seq = self.wr_seq                               # bug


class _RegrownNotZeroed(OracleInterpreter):
    """The array made again after fini is not zeroed (malloc where calloc was meant): its slots
    hold what the freed array's held.  S-FINI-1."""

    def fini(self) -> None:
        self._old_seqs = [s.seq for s in self.slots]
        super().fini()

    def _grow(self) -> bool:
        fresh = not self.slots and bool(getattr(self, "_old_seqs", None))
        ok = super()._grow()
        if ok and fresh:
            for slot, seq in zip(self.slots, self._old_seqs, strict=False):
                if not slot.allocated:
                    slot.seq = seq                              # bug: garbage
            self._old_seqs = []
        return ok


class _DoubleFreeAfterFini(OracleInterpreter):
    """fini frees the array but leaves the pointer; the first growth after it frees it again
    (the C ABI driver reports a crash).  S-FINI-1."""

    def _grow(self) -> bool:
        if self.finished and not self.slots and not self._failing_allocations:
            from conformance.model import errors
            raise errors.ImplementationCrashedError("free(): double free detected in tcache 2")
        return super()._grow()


class _FiniNeverFrees(OracleInterpreter):
    """fini empties the interpreter's view but keeps the array, and the growth after it
    reuses it as it was (the attached slots' seqs still in it).  S-FINI-1."""

    def fini(self) -> None:
        self._kept = [s.seq for s in self.slots]
        super().fini()

    def _grow(self) -> bool:
        kept = not self.slots and getattr(self, "_kept", None)
        ok = super()._grow()
        if ok and kept:
            for slot, seq in zip(self.slots, kept, strict=False):
                slot.seq = seq                                  # bug: the old array
            self._kept = []
        return ok


class _DeleteKeepsHandle(OracleInterpreter):
    """A valid delete_thread_state leaves the handle in the snapshot (the thread state is
    unlinked from nothing).  S-TSTATE-1, not MISUSE: no misuse was made."""

    def delete_thread_state(self, tstate: int) -> None:
        thread = self.threads.get(tstate)
        super().delete_thread_state(tstate)
        if thread is not None:
            self.threads[tstate] = thread                       # bug


class LifecycleMutant(Oracle):
    interpreter_class: type[OracleInterpreter] = OracleInterpreter

    def __init__(self, profile: str = "3.13", interpreter_class=None) -> None:
        super().__init__(profile)
        self.interpreter_class = interpreter_class or self.interpreter_class
        self.name = f"mutant {self.interpreter_class.__name__.lstrip('_')}"

    def new_interpreter(self) -> OracleInterpreter:
        if issubclass(self.interpreter_class, _SharesAcrossInterpreters):
            if not hasattr(self, "_process"):
                self._process = _Shared()
            return self.interpreter_class(self.profile, self._process)
        return self.interpreter_class(self.profile)


def _factory(cls, default_profile):
    def make(profile: str | None = None) -> LifecycleMutant:
        return LifecycleMutant(profile or default_profile, cls)
    make.__name__ = cls.__name__.lstrip("_")
    return make


#: name -> (class, profile, the facts a default run must name, kind, exact?)
MUTANTS: dict[str, tuple[type, str, frozenset[str], str, bool]] = {
    "fini_forgets_armed_count": (_FiniForgetsArmedCount, "3.13", frozenset({"S-FREE-4"}),
                                 "faults", False),
    "growth_consumes_two": (_GrowthConsumesTwo, "3.14", frozenset({"S-FREE-4"}), "faults",
                            False),
    "half_grown_after_fini": (_HalfGrownAfterFini, "3.13", frozenset({"S-FREE-4"}), "faults",
                              False),
    "after_fork_disarms": (_AfterForkDisarms, "3.14", frozenset({"S-FREE-4"}), "faults", False),
    "shared_sequences": (_SharedSequences, "3.13", frozenset({"S-INTERP-1"}), "interpreters",
                         True),
    "shared_table": (_SharedTable, "3.14", frozenset({"S-INTERP-1"}), "interpreters", True),
    "shared_thread_states": (_SharedThreadStates, "3.13", frozenset({"S-INTERP-2"}),
                             "interpreters", True),
    "advance_zeroes_bookkeeping": (_AdvanceZeroesBookkeeping, "3.14",
                                   frozenset({"S-DEF-2", "S-DEF-3"}), "blame", True),
    "advance_pulls_read_sequence": (_AdvancePullsReadSequence, "3.13", frozenset({"S-ADV-1"}),
                                    "blame", True),
    "increment_is_four": (_IncrementIsFour, "3.13", frozenset({"S-ADV-1", "S-SEQ-1"}), "blame",
                          True),
    "after_fork_moves_read_sequence": (_AfterForkMovesReadSequence, "3.14",
                                       frozenset({"S-FORK-1"}), "blame", True),
    "regrown_not_zeroed": (_RegrownNotZeroed, "3.13", frozenset({"S-FINI-1"}), "blame", True),
    "double_free_after_fini": (_DoubleFreeAfterFini, "3.14", frozenset({"S-FINI-1"}), "blame",
                               True),
    "fini_never_frees": (_FiniNeverFrees, "3.13", frozenset({"S-FINI-1"}), "blame", True),
    "delete_keeps_handle": (_DeleteKeepsHandle, "3.13", frozenset({"S-TSTATE-1"}), "blame",
                            True),
}

# Factories: --impl lifecycle_mutant_adapters:NAME with PYTHONPATH=tests
for _name, (_cls, _profile, *_rest) in MUTANTS.items():
    globals()[_name] = _factory(_cls, _profile)


def oracle_factory(profile: str = "3.13") -> LifecycleMutant:
    """The oracle itself through this module's factory (no edit): what a replay must pass."""
    return LifecycleMutant(profile)
