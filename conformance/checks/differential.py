"""The differential state machine: an implementation and the oracle, driven side by side.

Every rule performs one API operation on both, then compares the return values (or the
exception types) and the whole observable state (snapshots).  Invariants check the semantic
rules on the implementation's state.  Every check is credited to the fact ids whose rules
the oracle applied for that step; a mismatch is blamed on them, and the failure message names
them.  Hypothesis shrinks a failing run to a minimal step sequence and prints it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ..model import errors
from ..model.adapter import Implementation, SlotView, Snapshot
from ..model.facts import MISUSE
from ..model.ledger import FactLedger
from ..model.observed import observes_wider_state, wider_differences
from ..model.oracle import OracleInterpreter, qsbr_leq
from . import interrupt
from .blame import blame
from .statediff import DiffEntry, outcome_diff, snapshot_diff, wider_diff
from .steps import NO_RESULT, StepRecord

U64 = (1 << 64) - 1

#: Starting sequences: fresh, just below the 2^64 wrap, or anywhere (odd).
start_sequences = st.one_of(
    st.just(None),
    st.integers(0, 6).map(lambda k: U64 - 2 * k),
    st.integers(0, (1 << 63) - 1).map(lambda n: 2 * n + 1),
)


def _own_traceback(exc: BaseException) -> str:
    """The implementation's own traceback (the suite's frames left out), indented."""
    from ..model.adapter import implementation_traceback

    text = getattr(exc, "traceback_text", None) or implementation_traceback(exc)
    return "".join(f"\n    {line}" for line in text.splitlines()) if text else ""


class ConformanceFailure(AssertionError):
    """An implementation disagreed with the oracle or broke an invariant."""

    def __init__(self, facts: set[str] | tuple[str, ...], message: str,
                 diff: list[DiffEntry] | None = None,
                 records: list[StepRecord] | None = None) -> None:
        self.facts = tuple(sorted(set(facts)))
        #: per field, observed and expected (conformance.checks.statediff)
        self.diff = list(diff or [])
        #: the steps, where the raiser keeps no trace of its own (the comparisons check)
        self.records = list(records or [])
        super().__init__(f"[{', '.join(self.facts)}] {message}")


class DifferentialMachine(RuleBasedStateMachine):
    """Configured by :func:`make_machine`; not used directly."""

    implementation: Implementation
    ledger: FactLedger
    on_example_done: Callable[[FactLedger], None] | None = None
    #: [the machine built last]: after a Hypothesis failure, the shrunk case's (set per class)
    last_instance: list[DifferentialMachine | None] = [None]

    def __init__(self) -> None:
        super().__init__()
        type(self).last_instance[0] = None      # set once built (new_interpreter may fail)
        self.profile = self.implementation.profile
        self.impl = self.implementation.new_interpreter()
        self.oracle = OracleInterpreter(self.profile)
        self.threads: list[int] = []            # live logical thread ids
        self.impl_handle: dict[int, Any] = {}
        self.oracle_handle: dict[int, int] = {}
        self.next_logical = 0
        self.goals: list[int] = [1]
        self.readers_at_goal: dict[int, set[int]] = {}   # goal -> attached threads at retire
        self.last_rd: int | None = None
        self.snap: Snapshot | None = None
        self.steps = 0
        self.trace: list[StepRecord] = []   # every call made, for reports (conformance.steps)
        self._expected_slots: tuple = ()
        type(self).last_instance[0] = self

    # -- the differential step ---------------------------------------------------------------

    def _logical_snapshot(self, snap: Snapshot, handles: dict[int, Any]) -> Snapshot:
        # Snapshots of either side in logical thread ids, so they compare equal; the optional
        # wider fields are checked on their own (conformance.model.observed), not compared.
        to_logical = {handle: logical for logical, handle in handles.items()}
        slots = tuple(SlotView(s.seq, s.allocated, to_logical.get(s.owner, s.owner),
                               tuple(s.bookkeeping)) for s in snap.slots)
        threads: dict[Any, int | str | None] = {
            to_logical[h]: slot for h, slot in snap.threads.items() if h in to_logical}
        return Snapshot(snap.wr_seq, snap.rd_seq, snap.size, slots, tuple(snap.freelist),
                        threads)

    def step(self, operation: str, *args: Any, thread: int | None = None) -> Any:
        """Run one operation on both sides, compare, and return the implementation's result."""
        interrupt.check()           # a Ctrl-C dropped somewhere comes back here
        self.steps += 1
        self.oracle.applied = []
        oracle_args = args if thread is None else (self.oracle_handle[thread], *args)
        impl_args = args if thread is None else (self.impl_handle[thread], *args)
        record = StepRecord(operation, thread, tuple(args))
        label = record.call()

        expected_error = result_expected = None
        try:
            result_expected = getattr(self.oracle, operation)(*oracle_args)
        except errors.QsbrError as exc:
            expected_error = exc
        applied = set(self.oracle.applied) or {MISUSE}
        misuse = expected_error is not None

        actual_error = result_actual = None
        try:
            result_actual = getattr(self.impl, operation)(*impl_args)
        except errors.ImplementationCrashedError as exc:
            self.trace.append(replace(record, error=type(exc).__name__))
            self._fail(blame(applied, ["result"], operation=operation), f"{label}: {exc}",
                       self._outcome_diff(exc, None, expected_error, result_expected))
        except errors.QsbrError as exc:
            actual_error = exc
        except Exception as exc:  # noqa: BLE001 - any other exception is a protocol breach
            self.trace.append(replace(record, error=f"{type(exc).__name__}: {exc}"))
            self._fail(blame(applied, ["result"], misuse=misuse, operation=operation),
                       f"{label}: raised {type(exc).__name__}: {exc} "
                       f"(expected {self._describe(expected_error, result_expected)})"
                       + _own_traceback(exc),
                       self._outcome_diff(exc, None, expected_error, result_expected))
        self.trace.append(replace(
            record, error=type(actual_error).__name__ if actual_error is not None else None,
            result=NO_RESULT if actual_error is not None or result_actual is None
            else result_actual))

        if type(actual_error) is not type(expected_error):
            self._fail(blame(applied, ["error"], misuse=True),
                       f"{label}: got {self._describe(actual_error, result_actual)}, "
                       f"expected {self._describe(expected_error, result_expected)}",
                       self._outcome_diff(actual_error, result_actual, expected_error,
                                          result_expected))
        if expected_error is None and result_actual != result_expected:
            self._fail(blame(applied, ["result"], operation=operation),
                       f"{label}: got {self._describe(actual_error, result_actual)}, "
                       f"expected {self._describe(expected_error, result_expected)}",
                       self._outcome_diff(actual_error, result_actual, expected_error,
                                          result_expected))
        self._compare_state(applied, label, misuse=misuse)
        return result_actual

    @staticmethod
    def _describe(error: BaseException | None, result: Any) -> str:
        return f"{type(error).__name__}" if error is not None else repr(result)

    @staticmethod
    def _outcome_diff(error: BaseException | None, result: Any,
                      expected_error: BaseException | None,
                      expected_result: Any) -> list[DiffEntry]:
        return outcome_diff(type(error).__name__ if error is not None else None, result,
                            type(expected_error).__name__ if expected_error is not None
                            else None, expected_result)

    def _compare_state(self, facts: set[str], label: str, misuse: bool = False) -> None:
        """Compare the whole state; credit ``facts`` once for the step when it agrees."""
        expected = self._logical_snapshot(self.oracle.snapshot(), self.oracle_handle)
        try:
            raw = self.impl.snapshot()
            actual = self._logical_snapshot(raw, self.impl_handle)
        except Exception as exc:  # noqa: BLE001 - the implementation's failure, not ours
            raised = (f"after {label}: snapshot() raised {type(exc).__name__}: {exc}"
                      + _own_traceback(exc))
        else:
            raised = ""
        if raised:      # raised outside the handler: the failure carries no chained context
            self._fail(facts, raised)
        differences = []
        parts = []
        wider = wider_differences(raw, self.profile)
        for part, message in wider:
            parts.append(part)
            differences.append(message)
        for name in ("wr_seq", "rd_seq", "size", "freelist", "threads"):
            if getattr(actual, name) != getattr(expected, name):
                parts.append(name)
                differences.append(f"{name}: got {getattr(actual, name)!r}, "
                                   f"expected {getattr(expected, name)!r}")
        if actual.slots != expected.slots and actual.size == expected.size:
            for index, (got, want) in enumerate(zip(actual.slots, expected.slots, strict=True)):
                if got != want:
                    differences.append(f"slot {index}: got {got}, expected {want}")
                    parts += [part for part in ("seq", "allocated", "owner", "bookkeeping")
                              if getattr(got, part) != getattr(want, part)]
        if differences:
            self._fail(blame(facts, parts, misuse=misuse),
                       f"after {label}, the state differs from the oracle:\n  "
                       + "\n  ".join(differences),
                       snapshot_diff(actual, expected) + wider_diff(wider))
        credited = set(facts)
        if expected.slots != self._expected_slots and observes_wider_state(raw):
            credited.add("S-SLOT-1")    # a slot was written: its every field was checked
        self._expected_slots = expected.slots
        self.ledger.passed(*credited)
        self.snap = actual

    def _fail(self, facts: set[str] | tuple[str, ...], message: str,
              diff: list[DiffEntry] | None = None) -> None:
        self.ledger.failed(facts, message)
        raise ConformanceFailure(facts, message, diff)

    def _check(self, ok: bool, facts: tuple[str, ...], message: str) -> None:
        if not ok:
            self._fail(facts, message)
        self.ledger.passed(*facts)

    def _verify(self, ok: bool, facts: tuple[str, ...], message: str) -> None:
        """Like _check, without credit: for checks that cannot fail once the state compared."""
        if not ok:
            self._fail(facts, message)

    # -- choosing arguments ------------------------------------------------------------------

    def _any_thread(self, data: st.DataObject) -> int:
        """Mostly a registered thread (valid calls), sometimes any (misuse)."""
        registered = [t for t in self.threads
                      if self.snap is not None and isinstance(self.snap.threads.get(t), int)]
        choices = st.sampled_from(self.threads)
        if registered:
            choices = st.one_of(st.sampled_from(registered), st.sampled_from(registered), choices)
        return data.draw(choices, label="thread")

    def _rarely(self, data: st.DataObject) -> bool:
        """For operations that reset most state (fini, after_fork): about one draw in five."""
        return data.draw(st.integers(0, 4), label="rarely") == 0

    def _attached(self) -> set[Any]:
        assert self.snap is not None
        return {t for t, slot in self.snap.threads.items()
                if isinstance(slot, int) and self.snap.slots[slot].seq != 0}

    def _record_goal(self, goal: int) -> None:
        # S-SAFE-1 bookkeeping: the threads that may hold a pointer retired with this goal.
        self.goals.append(goal)
        self.readers_at_goal.setdefault(goal, set()).update(self._attached())

    # -- setup -------------------------------------------------------------------------------

    @initialize()
    def start(self, start: int | None = None) -> None:
        """Every random run starts fresh; a start near the wrap is the set_sequences rule (a
        step the shrinker can delete when a bug has nothing to do with the wrap)."""
        if start is not None:
            self.step("set_sequences", start, start)
            self.goals.append(start)
        self._compare_state({"S-SEQ-2"}, "start")
        self.last_rd = self.snap.rd_seq if self.snap else None

    @precondition(lambda self: self.snap is not None and self.snap.size == 0)
    @rule(wr=start_sequences.filter(lambda v: v is not None), behind=st.integers(0, 3))
    def set_sequences(self, wr: int, behind: int) -> None:
        """Fresh, or after fini: restart the sequences, near the wrap or anywhere, with
        rd_seq up to three increments behind wr_seq."""
        rd = (wr - 2 * behind) & U64
        self.step("set_sequences", wr, rd)
        self.goals += [wr, rd]
        self.last_rd = self.snap.rd_seq if self.snap else None

    @rule(count=st.integers(1, 4))
    def advance_many(self, count: int) -> None:
        """Several advances in a row: from a start near 2^64 this wraps in mid-run."""
        for _ in range(count):
            self._record_goal(self.step("advance"))

    # -- rules: thread states and lifecycle ---------------------------------------------------

    @precondition(lambda self: len(self.threads) < 40)
    @rule()
    def new_thread_state(self) -> None:
        self._new_thread()

    def _new_thread(self) -> int:
        logical = self.next_logical
        self.next_logical += 1
        self.oracle_handle[logical] = self.oracle.new_thread_state()
        self.impl_handle[logical] = self.impl.new_thread_state()
        self.threads.append(logical)
        self.trace.append(StepRecord("new_thread_state", result=logical))
        self._compare_state({"S-SLOT-1"}, f"new_thread_state() -> t{logical}")
        return logical

    @precondition(lambda self: len(self.threads) < 40)
    @rule()
    def create_thread(self) -> None:
        """What CPython's new_threadstate() does: reserve a slot, then register it."""
        logical = self._new_thread()
        index = self.step("reserve")
        if index >= 0:
            self.step("register", index, thread=logical)

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def destroy_thread(self, data: st.DataObject) -> None:
        """What CPython's thread-state deletion does: detach, unregister, free."""
        self._destroy(self._any_thread(data))

    def _destroy(self, t: int) -> None:
        slot = self.snap.threads.get(t) if self.snap is not None else None
        if isinstance(slot, int):
            if self.snap is not None and self.snap.slots[slot].seq != 0:
                self.step("detach", thread=t)
            self.step("unregister", thread=t)
        self.step("delete_thread_state", thread=t)
        self.threads.remove(t)
        del self.oracle_handle[t], self.impl_handle[t]

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def delete_thread_state(self, data: st.DataObject) -> None:
        t = self._any_thread(data)
        self.step("delete_thread_state", thread=t)
        if self.oracle_handle[t] not in self.oracle.threads:     # both sides deleted it
            self.threads.remove(t)
            del self.oracle_handle[t], self.impl_handle[t]

    @rule()
    def reserve(self) -> None:
        self.step("reserve")

    @rule(failures=st.integers(1, 2))
    def reserve_out_of_memory(self, failures: int) -> None:
        self._arm_failures(failures)
        self.step("reserve")
        # Leave no armed failure behind for later steps on one side only.
        self._arm_failures(0)

    def _arm_failures(self, count: int) -> None:
        self.oracle.fail_next_allocations(count)
        self.impl.fail_next_allocations(count)
        self.trace.append(StepRecord("fail_next_allocations", None, (count,), note="test hook"))

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def register(self, data: st.DataObject) -> None:
        t = self._any_thread(data)
        assert self.snap is not None
        reserved = [i for i, s in enumerate(self.snap.slots) if s.allocated and s.owner is None]
        candidates = st.integers(-2, self.snap.size + 2)
        if reserved:
            candidates = st.one_of(st.sampled_from(reserved), candidates)
        index = data.draw(candidates, label="index")
        self.step("register", index, thread=t)

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def unregister(self, data: st.DataObject) -> None:
        self.step("unregister", thread=self._any_thread(data))

    @rule(data=st.data())
    def fini(self, data: st.DataObject) -> None:
        if self._rarely(data):
            self.step("fini")
            self.readers_at_goal.clear()

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def after_fork(self, data: st.DataObject) -> None:
        if self._rarely(data):
            self.step("after_fork", thread=self._any_thread(data))

    def _registered(self) -> list[int]:
        assert self.snap is not None
        return [t for t in self.threads if isinstance(self.snap.threads.get(t), int)]

    @precondition(lambda self: self.threads and len(self.threads) < 40)
    @rule(data=st.data())
    def fork_poll_reuse(self, data: st.DataObject) -> None:
        """after_fork, then poll (a released slot's stale seq may hold rd_seq back), then a new
        thread state that reserves the freed slot (and inherits that seq)."""
        registered = self._registered()
        if not registered:
            return
        t = data.draw(st.sampled_from(registered), label="forking thread")
        self.step("after_fork", thread=t)
        assert self.snap is not None
        self.step("poll", self.snap.wr_seq, thread=t)
        self.create_thread()

    @precondition(lambda self: self.threads and len(self.threads) < 40)
    @rule(data=st.data(), count=st.integers(1, 9))
    def reuse_slot_with_deferrals(self, data: st.DataObject, count: int) -> None:
        """Deferrals pending in a slot, its thread state destroyed, the slot reused."""
        registered = self._registered()
        if not registered:
            return
        t = data.draw(st.sampled_from(registered), label="deferring thread")
        if self.profile == "3.13":
            for _ in range(count):
                goal = self.step("deferred_advance", thread=t)
                if goal is not None:
                    self._record_goal(goal)
        else:
            self.step("set_bookkeeping", count, 512 * count, 0, count % 2 == 1, thread=t)
        self._destroy(t)
        self.create_thread()

    # -- rules: sequences --------------------------------------------------------------------

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def attach(self, data: st.DataObject) -> None:
        self.step("attach", thread=self._any_thread(data))

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def detach(self, data: st.DataObject) -> None:
        self.step("detach", thread=self._any_thread(data))

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def quiescent_state(self, data: st.DataObject) -> None:
        self.step("quiescent_state", thread=self._any_thread(data))

    @rule()
    def advance(self) -> None:
        self._record_goal(self.step("advance"))

    @precondition(lambda self: self.threads and self.profile == "3.13")
    @rule(data=st.data())
    def deferred_advance(self, data: st.DataObject) -> None:
        goal = self.step("deferred_advance", thread=self._any_thread(data))
        if goal is not None:
            self._record_goal(goal)

    @precondition(lambda self: self.profile == "3.14")
    @rule()
    def shared_next(self) -> None:
        self._record_goal(self.step("shared_next"))

    @precondition(lambda self: self.threads and self.profile == "3.14")
    @rule(data=st.data())
    def should_process(self, data: st.DataObject) -> None:
        self.step("should_process", thread=self._any_thread(data))

    @precondition(lambda self: self.threads and self.profile == "3.14")
    @rule(data=st.data(), count=st.integers(0, 200), memory=st.integers(0, 1 << 20),
          page=st.integers(0, 1 << 20), flag=st.booleans())
    def set_bookkeeping(self, data: st.DataObject, count: int, memory: int, page: int,
                        flag: bool) -> None:
        self.step("set_bookkeeping", count, memory, page, flag, thread=self._any_thread(data))

    def _goal(self, data: st.DataObject) -> int:
        assert self.snap is not None
        wr = self.snap.wr_seq
        return data.draw(st.one_of(
            st.sampled_from(self.goals),
            st.integers(-4, 4).map(lambda d: (wr + 2 * d) & U64),
            st.integers(0, U64),
        ), label="goal")

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def poll(self, data: st.DataObject) -> None:
        goal = self._goal(data)
        reached = self.step("poll", goal, thread=self._any_thread(data))
        if reached:
            self._check_safety(goal)

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def goal_reached(self, data: st.DataObject) -> None:
        goal = self._goal(data)
        if self.step("goal_reached", goal, thread=self._any_thread(data)):
            self._check_safety(goal)

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def every_reader_passes_quiescent_state(self, data: st.DataObject) -> None:
        """S-SAFE-2: once every attached thread has reported a quiescent state, poll succeeds."""
        assert self.snap is not None
        owners: set[Any] = {t for t, slot in self.snap.threads.items()
                            if isinstance(slot, int)}
        if any(s.seq != 0 and s.owner not in owners for s in self.snap.slots):
            return      # a slot of a vanished thread still holds rd_seq (S-FORK-1)
        poller = data.draw(st.sampled_from(sorted(owners)) if owners else st.none(),
                           label="poller")
        if poller is None:
            return
        for t in sorted(self._attached()):
            self.step("quiescent_state", thread=t)
        # The newest goal handed out by advance/deferred_advance/shared_next that the write
        # sequence has reached: memory retired with it must now be reclaimable.
        wr = self.snap.wr_seq
        goal = next((g for g in reversed(self.goals) if qsbr_leq(g, wr)), wr)
        self._check(self.step("poll", goal, thread=poller) is True, ("S-SAFE-2",),
                    f"poll(t{poller}, {goal}) is False although every attached thread "
                    f"reported a quiescent state at {wr}")
        self._check_safety(goal)

    # -- semantic checks on the implementation's state ---------------------------------------

    def _check_safety(self, goal: int) -> None:
        """S-SAFE-1: a reached goal means every thread attached at retire time moved on."""
        assert self.snap is not None
        readers = self.readers_at_goal.get(goal, ())
        for t in sorted(readers):
            slot = self.snap.threads.get(t)
            if not isinstance(slot, int):
                continue        # unregistered (detached first) or released: cannot read
            seq = self.snap.slots[slot].seq
            self._verify(seq == 0 or qsbr_leq(goal, seq), ("S-SAFE-1", "S-POLL-2"),
                        f"goal {goal} reported reached while t{t}, attached when it was "
                        f"retired, still reads at seq {seq}")
        if readers:
            self.ledger.passed("S-SAFE-1")

    # The invariants check the implementation's snapshot, which the step just compared equal
    # to the oracle's: they guard the oracle itself and credit no fact (a check that cannot
    # tell a wrong implementation apart does not count).

    @invariant()
    def write_sequence_is_odd(self) -> None:
        if self.snap is not None:
            self._verify(self.snap.wr_seq % 2 == 1, ("S-SEQ-2",),
                        f"wr_seq {self.snap.wr_seq} is even")

    @invariant()
    def read_sequence_only_moves_forward(self) -> None:
        if self.snap is None:
            return
        if self.last_rd is not None:
            self._verify(qsbr_leq(self.last_rd, self.snap.rd_seq), ("S-POLL-2", "S-SEQ-3"),
                        f"rd_seq moved back from {self.last_rd} to {self.snap.rd_seq}")
        self.last_rd = self.snap.rd_seq

    @invariant()
    def read_sequence_bounds(self) -> None:
        if self.snap is None:
            return
        rd, wr = self.snap.rd_seq, self.snap.wr_seq
        self._verify(qsbr_leq(rd, wr), ("S-POLL-2",), f"rd_seq {rd} is ahead of wr_seq {wr}")
        for index, slot in enumerate(self.snap.slots):
            if slot.seq != 0:
                self._verify(qsbr_leq(rd, slot.seq) and qsbr_leq(slot.seq, wr),
                            ("S-POLL-2", "S-SEQ-3"),
                            f"slot {index} attached at {slot.seq} outside [rd_seq {rd}, "
                            f"wr_seq {wr}]")

    @invariant()
    def freelist_matches_allocation(self) -> None:
        if self.snap is None:
            return
        free = self.snap.freelist
        unallocated = {i for i, s in enumerate(self.snap.slots) if not s.allocated}
        self._verify(len(free) == len(set(free)) and set(free) == unallocated,
                    ("S-FREE-1", "S-FREE-3"),
                    f"freelist {free} is not exactly the unallocated slots {sorted(unallocated)}")
        for t, slot in self.snap.threads.items():
            if isinstance(slot, int):
                self._verify(self.snap.slots[slot].owner == t, ("S-REG-1", "S-SLOT-3"),
                            f"t{t} points at slot {slot}, owned by {self.snap.slots[slot].owner}")

    def teardown(self) -> None:
        try:
            self.impl.fail_next_allocations(0)
            self.impl.close()
        except errors.ImplementationCrashedError:
            pass        # already reported by the step that found it
        self.oracle.close()
        self.ledger.steps += self.steps
        self.ledger.examples += 1
        if self.on_example_done is not None:
            self.on_example_done(self.ledger)


def _invariants(m: DifferentialMachine) -> None:
    m.write_sequence_is_odd()
    m.read_sequence_only_moves_forward()
    m.read_sequence_bounds()
    m.freelist_matches_allocation()


def coverage_scenario(m: DifferentialMachine) -> None:
    """A fixed walk through every fact, run before the random exploration.

    Random runs may leave a rare fact unexercised when they are short; this walk makes sure
    each fact is checked at least once on every run, through the same differential step.
    Each part also pins a boundary that a plausible bug would cross (noted alongside): the
    mutant catalog (conformance.mutants) is how these were found to be needed.
    """
    m.start(None)
    threads = [m._new_thread() for _ in range(20)]
    for t in threads:                                   # growth 0 -> 8 -> 16 -> 32
        m.step("register", m.step("reserve"), thread=t)
        _invariants(m)
    a, b, c = threads[:3]
    m.step("attach", thread=a)
    m.step("attach", thread=b)
    goal = m.step("advance")
    m._record_goal(goal)
    m.step("poll", goal, thread=b)                      # a and b still read
    m.step("goal_reached", goal, thread=b)
    m.step("quiescent_state", thread=a)
    m.step("quiescent_state", thread=b)
    if m.step("poll", goal, thread=b):
        m._check_safety(goal)                           # S-SAFE-1
    m.step("goal_reached", goal, thread=b)              # goal == rd_seq: LEQ, not LT
    m.step("attach", thread=a)                          # misuse: already attached
    m.step("unregister", thread=b)                      # misuse: still attached
    m.step("detach", thread=b)
    m.step("unregister", thread=b)                      # LIFO push
    m.step("register", m.step("reserve"), thread=b)     # gets it back
    if m.profile == "3.13":
        for _ in range(10):
            m._record_goal(m.step("deferred_advance", thread=c))
    else:
        m._record_goal(m.step("shared_next"))
        m.step("set_bookkeeping", 3, 4096, 0, True, thread=c)
        m.step("should_process", thread=c)
    for t in sorted(m._attached()):                     # S-SAFE-2
        m.step("quiescent_state", thread=t)
    wr = m.snap.wr_seq if m.snap is not None else 1
    m._check(m.step("poll", wr, thread=a) is True, ("S-SAFE-2",),
             f"poll({wr}) is False after every attached thread reported a quiescent state")
    while m.snap is not None and m.snap.freelist:       # empty the freelist ...
        m.step("reserve")
    m._arm_failures(1)                                  # ... so the next reserve must grow
    m.step("reserve")                                   # S-FREE-4
    m._arm_failures(0)
    _invariants(m)
    m.step("attach", thread=c)                          # another attached slot at fork time:
    m.step("after_fork", thread=a)                      # S-FORK-1 keeps its seq
    _invariants(m)
    m.step("fini")                                      # S-FINI-1
    m.step("attach", thread=a)                          # misuse: stale slot
    _invariants(m)
    m.teardown()
    wrap_scenario(type(m)())


def wrap_scenario(m: DifferentialMachine) -> None:
    """S-SEQ-3/S-SEQ-4 across 2^64: a reader attached just below the wrap must hold back a
    goal just above it (a plain unsigned comparison in the scan would let it through)."""
    m.start(U64 - 2)
    reader, writer = m._new_thread(), m._new_thread()
    for t in (reader, writer):
        m.step("register", m.step("reserve"), thread=t)
    m.step("attach", thread=reader)                     # seq = 2^64 - 3
    m.step("attach", thread=writer)
    goal = m.step("advance")                            # 2^64 - 1
    m._record_goal(goal)
    goal = m.step("advance")                            # wraps to 1
    m._record_goal(goal)
    m.step("quiescent_state", thread=writer)
    m.step("poll", goal, thread=writer)                 # held back by the reader
    m.step("goal_reached", goal, thread=writer)
    m.step("quiescent_state", thread=reader)
    if m.step("poll", goal, thread=writer):
        m._check_safety(goal)
    _invariants(m)
    m.teardown()


def make_machine(implementation: Implementation, ledger: FactLedger,
                 on_example_done: Callable[[FactLedger], None] | None = None
                 ) -> type[DifferentialMachine]:
    """A machine class bound to one implementation and one ledger."""
    return type("QsbrDifferential", (DifferentialMachine,), {
        "implementation": implementation,
        "ledger": ledger,
        "on_example_done": staticmethod(on_example_done) if on_example_done else None,
    })
