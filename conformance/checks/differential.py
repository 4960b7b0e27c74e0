"""The differential state machine: an implementation and the oracle, driven side by side.

Every rule performs one API operation on both, then compares the return values (or the
exception types) and the whole observable state (snapshots).  Invariants check the semantic
rules on the implementation's state.  Every check is credited to the fact ids whose rules
the oracle applied for that step; a mismatch is blamed on them, and the failure message names
them.  Hypothesis shrinks a failing run to a minimal step sequence and prints it.
"""

from __future__ import annotations

import copy
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

from ..drivers import interrupt
from ..model import boundaries, errors
from ..model.adapter import Implementation, SlotView, Snapshot
from ..model.boundaries import BoundaryLedger
from ..model.facts import MISUSE
from ..model.ledger import FactLedger
from ..model.observed import observes_wider_state, wider_differences
from ..model.oracle import OracleInterpreter, qsbr_leq
from . import composites
from .blame import blame
from .compare import Expected, Observed, compare_step
from .failure import ConformanceFailure  # noqa: F401 - the failure record's old name
from .interpreters import MACHINE_OPERATIONS, SeveralInterpreters
from .statediff import DiffEntry, outcome_diff, state_of_snapshot
from .steps import NO_RESULT, StepRecord

U64 = (1 << 64) - 1
HALF = 1 << 63

#: Logical thread id of a handle no implementation ever returned (misuse: an unknown thread
#: state that was never created), and the value passed for it on both sides.
NEVER = -1
NEVER_HANDLE = ("qsbr-conformance", "never a thread state")

#: Goals and sequences the protocol rejects (BadSequenceError): out of range, and values Python
#: would coerce to an int (docs/adapter-protocol.md, "Errors": nothing is coerced).
BAD_VALUES: tuple[Any, ...] = (-1, 1 << 64, True, 3.0, "3")
#: register indices the protocol rejects with IndexOutOfRangeError before the slot checks.
BAD_INDEX_TYPES: tuple[Any, ...] = (True, 0.0, "0", 1 << 63, -(1 << 63) - 1)

#: Operations misuse_combination draws from (every profile's: a profile's missing ones must
#: raise UnsupportedOperationError, never silently work).
MISUSE_OPERATIONS: tuple[str, ...] = (
    "poll", "goal_reached", "register", "attach", "detach", "quiescent_state", "unregister",
    "after_fork", "delete_thread_state", "deferred_advance", "should_process",
    "set_bookkeeping", "shared_next", "set_sequences")

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


class DifferentialMachine(SeveralInterpreters, RuleBasedStateMachine):
    """Configured by :func:`make_machine`; not used directly."""

    implementation: Implementation
    ledger: FactLedger
    #: boundaries credited once the implementation agreed (conformance.model.boundaries)
    boundaries: BoundaryLedger | None = None
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
        self.dead: dict[int, tuple[Any, Any]] = {}  # deleted: logical -> (oracle, impl) handle
        self.live_impl_handles: set[Any] = set()    # the implementation's, at the last snapshot
        self.next_logical = 0
        self.goals: list[int] = [1]
        self.readers_at_goal: dict[int, set[int]] = {}   # goal -> attached threads at retire
        self.last_rd: int | None = None
        self.snap: Snapshot | None = None
        self.steps = 0
        self.trace: list[StepRecord] = []   # every call made, for reports (conformance.steps)
        self._expected_slots: tuple = ()
        self._init_interpreters()       # several live interpreters (checks.interpreters)
        type(self).last_instance[0] = self

    # -- the differential step ---------------------------------------------------------------

    def _logical_snapshot(self, snap: Snapshot, handles: dict[int, Any]) -> Snapshot:
        # Snapshots of either side in logical thread ids, so they compare equal; the optional
        # wider fields are checked on their own (conformance.model.observed), not compared.
        # A handle the machine does not know (deleted, or another interpreter's) is kept under
        # a name of its own, so that it differs from the other side.
        side = 0 if handles is self.oracle_handle else 1
        to_logical = {pair[side]: logical for logical, pair in self.dead.items()}
        to_logical.update((handle, logical) for logical, handle in handles.items())
        slots = tuple(SlotView(s.seq, s.allocated, to_logical.get(s.owner, s.owner),
                               tuple(s.bookkeeping)) for s in snap.slots)
        threads: dict[Any, int | str | None] = {
            to_logical.get(h, f"unknown handle {h!r}"): slot for h, slot in snap.threads.items()}
        return Snapshot(snap.wr_seq, snap.rd_seq, snap.size, slots, tuple(snap.freelist),
                        threads)

    def step(self, operation: str, *args: Any, thread: int | None = None) -> Any:
        """Run one operation on both sides, compare, and return the implementation's result."""
        interrupt.check()           # a Ctrl-C dropped somewhere comes back here
        if operation in MACHINE_OPERATIONS:     # of the machine: which interpreter
            return getattr(self, f"_{operation}")(*args)
        self.steps += 1
        self.oracle.applied = []
        self.oracle.reached = []
        if thread is None:
            oracle_args = impl_args = args
        else:
            oracle_handle, impl_handle = self._handles(thread)
            oracle_args, impl_args = (oracle_handle, *args), (impl_handle, *args)
        record = StepRecord(operation, thread, tuple(args),
                            note="never created" if thread == NEVER else "")
        label = record.call()

        expected_error = result_expected = None
        try:
            result_expected = getattr(self.oracle, operation)(*oracle_args)
        except errors.QsbrError as exc:
            expected_error = exc
        applied = set(self.oracle.applied) or {MISUSE}
        misuse = expected_error is not None
        # what blame needs beyond the parts (conformance.checks.blame)
        context: dict[str, Any] = {"profile": self.profile,
                                   "after_fini": self.oracle.regrown_after_fini
                                   and operation == "reserve"}

        actual_error = result_actual = None
        raised = traceback = None
        try:
            result_actual = getattr(self.impl, operation)(*impl_args)
        except errors.ImplementationCrashedError as exc:
            self.trace.append(replace(record, error=type(exc).__name__))
            self._fail(blame(applied, ["result"], operation=operation, **context),
                       f"{label}: {exc}",
                       self._outcome_diff(exc, None, expected_error, result_expected))
        except errors.QsbrError as exc:
            actual_error = exc
        except Exception as exc:  # noqa: BLE001 - any other exception is a protocol breach
            raised, traceback = f"{type(exc).__name__}: {exc}", _own_traceback(exc)
        self.trace.append(replace(
            record, error=raised if raised is not None else type(actual_error).__name__
            if actual_error is not None else None,
            result=NO_RESULT if actual_error is not None or result_actual is None
            else result_actual))
        expected = Expected(operation, label, frozenset(applied),
                            type(expected_error).__name__ if expected_error else None,
                            result_expected, thread=thread,
                            before=state_of_snapshot(self.snap) if self.snap else None,
                            **context)
        verdict = compare_step(expected, Observed(
            type(actual_error).__name__ if actual_error is not None else None, result_actual,
            raised))
        if verdict is not None:
            self._fail(verdict.facts, verdict.message + (traceback or ""), verdict.diff)
        copied = (self.oracle.grown_from or 0) if operation == "reserve" else 0
        self._compare_state(applied, label, misuse=misuse, copied=copied, operation=operation,
                            thread=thread, **context)
        if self.boundaries is not None:
            reached = list(self.oracle.reached)
            if expected_error is not None:
                reached.append(boundaries.misuse(operation, type(expected_error).__name__))
            self.boundaries.reached(*reached)
        return result_actual

    def _handles(self, thread: int) -> tuple[Any, Any]:
        """(oracle handle, implementation handle) of a logical thread, live or not."""
        if thread in self.impl_handle:
            return self.oracle_handle[thread], self.impl_handle[thread]
        if thread in self.dead and self.dead[thread][1] not in self.live_impl_handles:
            return self.dead[thread]
        # Never created, or deleted and its handle reused by the implementation (allowed):
        # a value that was never a handle on either side.
        return NEVER_HANDLE, NEVER_HANDLE

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

    def _compare_state(self, facts: set[str], label: str, misuse: bool = False,
                       copied: int = 0, operation: str | None = None,
                       thread: int | None = None, profile: str = "3.13",
                       after_fini: bool = False) -> None:
        """Compare the whole state; credit ``facts`` once for the step when it agrees.

        ``copied``: this step grew the array from that many slots; a difference in one of
        them is the growth's copy (S-RES-1), not the pop's (S-FREE-1).  ``operation``,
        ``thread``, ``profile`` and ``after_fini`` are for blame (conformance.checks.blame)."""
        before = self.snap
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
        try:
            self.live_impl_handles = set(raw.threads)
        except TypeError:
            self.live_impl_handles = set()
        wider = tuple(wider_differences(raw, self.profile))
        verdict = None if actual == expected and not wider else compare_step(Expected(
            operation, f"{label}", frozenset(facts), "MISUSE" if misuse else None,
            state=state_of_snapshot(expected),
            before=state_of_snapshot(before) if before is not None else None, thread=thread,
            copied=copied, after_fini=after_fini, profile=self.profile),
            Observed(state=state_of_snapshot(actual), wider=wider), outcome=False)
        if verdict is not None:
            self._fail(verdict.facts, verdict.message, verdict.diff)
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
        self._compare_fresh("start")
        self.last_rd = self.snap.rd_seq if self.snap else None

    @precondition(lambda self: self.snap is not None and self.snap.size == 0)
    @rule(wr=start_sequences.filter(lambda v: v is not None), behind=st.integers(0, 3),
          variant=st.sampled_from(("behind", "behind", "even", "ahead")))
    def set_sequences(self, wr: int, behind: int, variant: str) -> None:
        """Fresh, or after fini: restart the sequences, near the wrap or anywhere, with
        rd_seq up to three increments behind wr_seq, or even or after wr_seq (misuse: the
        parity and order rules on the second argument).  (rd_seq 2^63 behind is valid but
        leaves no room: one advance puts rd_seq "after" wr_seq, where S-POLL-2's bounds no
        longer say anything; the misuse scenario and the exploration check it.)"""
        rd = {"behind": wr - 2 * behind, "even": wr - 1 - 2 * behind,
              "ahead": wr + 2 + 2 * behind}[variant] & U64
        self.step("set_sequences", wr, rd)
        if self.snap is not None and self.snap.wr_seq == wr:
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
        self._compare_state({"S-SLOT-1", "S-TSTATE-1"}, f"new_thread_state() -> t{logical}",
                            operation="new_thread_state")
        return logical

    @precondition(lambda self: len(self.threads) < 40)
    @rule()
    def create_thread(self) -> None:
        """What CPython's new_threadstate() does: reserve a slot, then register it."""
        composites.create_thread(self._composite_call)

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def destroy_thread(self, data: st.DataObject) -> None:
        """What CPython's thread-state deletion does: detach, unregister, free."""
        self._destroy(self._any_thread(data))

    def _destroy(self, t: int) -> None:
        slot = self.snap.threads.get(t) if self.snap is not None else None
        registered = isinstance(slot, int)
        composites.destroy_thread(
            self._composite_call, t, registered=registered,
            attached=registered and self.snap is not None
            and self.snap.slots[slot].seq != 0)     # type: ignore[index]
        self._forget(t)

    def _composite_call(self, operation: str, thread: int | None, *args: Any,
                        note: str = "") -> Any:
        """One call of a composite action (conformance.checks.composites), compared."""
        if operation == "new_thread_state":
            return self._new_thread()
        return self.step(operation, *args, thread=thread)

    def _forget(self, t: int) -> None:
        """A deleted thread state: its handles are kept to try them again (misuse)."""
        self.threads.remove(t)
        self.dead[t] = (self.oracle_handle.pop(t), self.impl_handle.pop(t))

    @precondition(lambda self: self.threads)
    @rule(data=st.data())
    def delete_thread_state(self, data: st.DataObject) -> None:
        t = self._any_thread(data)
        self.step("delete_thread_state", thread=t)
        if self.oracle_handle[t] not in self.oracle.threads:     # both sides deleted it
            self._forget(t)

    @rule()
    def reserve(self) -> None:
        self.step("reserve")

    @rule(failures=st.integers(1, 4), growths=st.integers(1, 3))
    def reserve_out_of_memory(self, failures: int, growths: int) -> None:
        """Arm ``failures`` allocation failures, then make ``growths`` reserves that must grow
        (the freelist drained before each): fewer growths than failures leave some armed for
        whatever comes next (fini, after_fork, another interpreter's step, re-initialisation);
        more show the growth that succeeds once they are used up."""
        self._arm_failures(failures)
        for _ in range(growths):
            self.drain_freelist()
            if self.snap is not None and self.snap.size > 16:
                break
            self.step("reserve")

    @rule(count=st.integers(0, 4))
    def fail_next_allocations(self, count: int) -> None:
        """Arm (or disarm) allocation failures and leave them armed: the later steps, in any
        lifecycle state, consume them (both sides armed alike, so a difference is the
        implementation's)."""
        self._arm_failures(count)

    @rule()
    def drain_freelist(self) -> None:
        """Reserve until the freelist is empty, so that the next reserve must grow (bounded:
        nothing past 16 slots; the growth scenario goes past 64)."""
        while self.snap is not None and self.snap.freelist and self.snap.size <= 16:
            self.step("reserve")

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
        wr, rd = self.snap.wr_seq, self.snap.rd_seq
        return data.draw(st.one_of(
            st.sampled_from(self.goals),
            st.integers(-4, 4).map(lambda d: (wr + 2 * d) & U64),
            st.integers(-1, 1).map(lambda d: (rd + HALF + 2 * d) & U64),   # the half range
            st.integers(0, U64),
        ), label="goal")

    # -- rules: misuse in combination ---------------------------------------------------------

    def _some_handle(self, data: st.DataObject) -> int:
        """A thread: live (registered or not, stale), deleted, or never created."""
        choices = [st.sampled_from([NEVER])]
        if self.threads:
            choices.append(st.sampled_from(self.threads))
        if self.dead:
            choices.append(st.sampled_from(sorted(self.dead)))
        return data.draw(st.one_of(*choices), label="thread")

    @rule(data=st.data(), operation=st.sampled_from(MISUSE_OPERATIONS))
    def misuse_combination(self, data: st.DataObject, operation: str) -> None:
        """Any operation (the profile's or not) on any handle with valid or invalid arguments,
        so that several misuse conditions hold at once: the first in the protocol's order
        must win (docs/adapter-protocol.md, "Errors")."""
        assert self.snap is not None
        if operation == "shared_next":
            self.step("shared_next")
            return
        if operation == "set_sequences":
            wr = data.draw(st.sampled_from((self.snap.wr_seq, 4, *BAD_VALUES)), label="wr")
            rd = data.draw(st.sampled_from((self.snap.rd_seq, (self.snap.wr_seq + HALF) & U64,
                                            2, *BAD_VALUES)), label="rd")
            if not self.oracle.misuse_conditions("set_sequences", wr, rd):
                return      # a valid restart is the set_sequences rule's
            self.step("set_sequences", wr, rd)
            return
        t = self._some_handle(data)
        args: tuple[Any, ...] = ()
        if operation in ("poll", "goal_reached"):
            args = (data.draw(st.one_of(st.sampled_from(BAD_VALUES),
                                        st.just(self.snap.wr_seq)), label="goal"),)
        elif operation == "register":
            args = (data.draw(st.one_of(st.sampled_from(BAD_INDEX_TYPES),
                                        st.integers(-1, self.snap.size)), label="index"),)
        elif operation == "set_bookkeeping":
            args = (1, 64, 128, True)
        trial = copy.deepcopy(self.oracle)
        try:
            getattr(trial, operation)(self._handles(t)[0], *args)
        except errors.QsbrError:
            self.step(operation, *args, thread=t)   # misuse: compared, state unchanged

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
        self._close_parked()
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


def make_machine(implementation: Implementation, ledger: FactLedger,
                 on_example_done: Callable[[FactLedger], None] | None = None,
                 boundaries: BoundaryLedger | None = None) -> type[DifferentialMachine]:
    """A machine class bound to one implementation and one ledger (and a boundary ledger)."""
    return type("QsbrDifferential", (DifferentialMachine,), {
        "implementation": implementation,
        "ledger": ledger,
        "boundaries": boundaries,
        "on_example_done": staticmethod(on_example_done) if on_example_done else None,
        "last_instance": [None],        # per class: the runner reads the machine that failed
        "fresh_seen": [False],          # per class: an interpreter of it was seen fresh
    })


#: Names that moved to conformance.checks.scenarios, still importable from here.
_SCENARIO_NAMES = frozenset({
    "_invariants", "coverage_scenario", "wrap_scenario", "misuse_scenario", "growth_scenario",
    "GROWTH_STARTS", "GROWTH_LIMIT", "fault_scenario"})


def __getattr__(name: str) -> Any:
    if name in _SCENARIO_NAMES:
        from . import scenarios
        return getattr(scenarios, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
