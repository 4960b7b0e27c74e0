"""The fixed scenarios of the differential run: the coverage walk, the 2^64 wrap, misuse in
combination, growth from every interesting state and allocation failure across the lifecycle.

Each drives a :class:`~conformance.checks.differential.DifferentialMachine` through the same
differential step as the random exploration (split from conformance.checks.differential, which
still exports these names).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from ..model import errors
from .differential import (
    BAD_INDEX_TYPES,
    BAD_VALUES,
    HALF,
    MISUSE_OPERATIONS,
    NEVER,
    U64,
    DifferentialMachine,
)


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
    misuse_scenario(type(m)())
    growth_scenario(type(m))
    fault_scenario(type(m))
    interpreters_scenario(type(m)())


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
    if m.profile == "3.13":                             # a non-advancing goal wraps to 1
        m._record_goal(m.step("deferred_advance", thread=writer))
    else:
        m._record_goal(m.step("shared_next"))
    goal = m.step("advance")                            # wraps to 1
    m._record_goal(goal)
    m.step("quiescent_state", thread=writer)
    m.step("poll", goal, thread=writer)                 # held back by the reader
    m.step("goal_reached", goal, thread=writer)
    m.step("quiescent_state", thread=reader)
    if m.step("poll", goal, thread=writer):
        m._check_safety(goal)
    assert m.snap is not None
    half = (m.snap.rd_seq + HALF) & U64                 # 2^63 from rd_seq: QSBR_LEQ holds
    m.step("goal_reached", half, thread=writer)
    m.step("poll", half, thread=writer)
    _invariants(m)
    for t in (reader, writer):
        m._destroy(t)                                   # every slot free again
    m.teardown()


# -- misuse in combination, and growth from every interesting state ---------------------------

def _misuse_arguments(m: DifferentialMachine, operation: str) -> list[tuple[Any, ...]]:
    """Valid and invalid arguments for ``operation`` (the handle excluded)."""
    assert m.snap is not None
    if operation in ("poll", "goal_reached"):
        return [(m.snap.wr_seq,), *((v,) for v in BAD_VALUES)]
    if operation == "register":
        reserved = [i for i, s in enumerate(m.snap.slots) if s.allocated and s.owner is None]
        owned = [i for i, s in enumerate(m.snap.slots) if s.owner is not None]
        free = [i for i, s in enumerate(m.snap.slots) if not s.allocated]
        return [(i,) for i in (*reserved[:1], *owned[:1], *free[:1], m.snap.size, -1,
                               *BAD_INDEX_TYPES)]
    if operation == "set_bookkeeping":
        return [(1, 64, 128, True)]
    return [()]


def _misuse_calls(m: DifferentialMachine, threads: Iterable[int]) -> None:
    """Every thread operation (the profile's or not) on each of ``threads`` with each argument
    kind, where at least one misuse condition holds: the oracle decides which error wins
    (valid calls are left out, so the state never changes)."""
    for t in threads:
        for operation in MISUSE_OPERATIONS:
            if operation in ("shared_next", "set_sequences"):
                continue
            for args in _misuse_arguments(m, operation):
                trial = copy.deepcopy(m.oracle)
                try:
                    getattr(trial, operation)(m._handles(t)[0], *args)
                except errors.QsbrError:
                    m.step(operation, *args, thread=t)


def _sequence_calls(m: DifferentialMachine) -> None:
    """set_sequences with every pair of valid, even, out-of-range and coercible values (misuse
    only), and shared_next (unsupported on 3.13)."""
    values = (5, 4, *BAD_VALUES)
    for wr in values:
        for rd in values:
            if m.oracle.misuse_conditions("set_sequences", wr, rd):
                m.step("set_sequences", wr, rd)
    if m.profile != "3.14":
        m.step("shared_next")


def misuse_scenario(m: DifferentialMachine) -> None:
    """Misuse generated as combinations of conditions: each operation × each kind of handle
    (registered and attached, registered and detached, without a slot, stale, deleted, never
    created) × each kind of argument (valid, out of range, a bool, a float, a str), fresh and
    not fresh; also rd_seq 2^63 from wr_seq (valid, QSBR_LEQ) in both directions."""
    m.start(None)
    _sequence_calls(m)                                  # fresh: values decide
    m.step("set_sequences", HALF + 1, 1)                # rd 2^63 behind wr: valid
    m.step("set_sequences", 1, HALF + 1)                # and 2^63 "ahead": valid too
    m.step("set_sequences", 1, 1)
    attached, detached, loose, deleted, stale = (m._new_thread() for _ in range(5))
    for t in (attached, detached, deleted, stale):
        m.step("register", m.step("reserve"), thread=t)
    m.step("attach", thread=attached)
    m._destroy(deleted)
    _sequence_calls(m)                                  # not fresh
    _misuse_calls(m, (attached, detached, loose, deleted, NEVER))
    m.step("after_fork", thread=detached)               # attached and stale lose their slots
    _misuse_calls(m, (stale,))
    m.step("fini")
    _misuse_calls(m, (detached,))                       # stale after fini
    _sequence_calls(m)                                  # fresh again after fini
    _invariants(m)
    m.teardown()


#: Growth is checked up to this size: four doublings after the first array, past 64 slots.
GROWTH_LIMIT = 128


def _grow_through(m: DifferentialMachine, size: int = GROWTH_LIMIT) -> None:
    """New thread states, each reserving and registering, until the array has grown to
    ``size`` and one slot past its half is taken; every step compared (a copied slot that
    differs is blamed on the growth, S-RES-1)."""
    while m.snap is not None and (m.snap.size < size or len(m.snap.freelist) >= size // 2):
        t = m._new_thread()
        index = m.step("reserve")
        if index < 0:
            return                  # compared: the oracle expected -1 as well
        m.step("register", index, thread=t)
    _invariants(m)


def _reader_behind(m: DifferentialMachine) -> None:
    first, second = m._new_thread(), m._new_thread()
    for t in (first, second):
        m.step("register", m.step("reserve"), thread=t)
    m.step("attach", thread=first)
    m._record_goal(m.step("advance"))
    m.step("attach", thread=second)
    m._record_goal(m.step("advance"))                   # both behind wr_seq now


def _bookkeeping(m: DifferentialMachine) -> None:
    threads = [m._new_thread() for _ in range(3)]
    for n, t in enumerate(threads, 1):
        m.step("register", m.step("reserve"), thread=t)
        if m.profile == "3.13":
            for _ in range(2 * n + 1):
                m._record_goal(m.step("deferred_advance", thread=t))
        else:       # every field set, each to its own value (the newest ones included)
            m.step("set_bookkeeping", 2 * n + 1, 4096 * n, 8192 * n + 64, True, thread=t)


def _reserved_unregistered(m: DifferentialMachine) -> None:
    t = m._new_thread()
    m.step("register", m.step("reserve"), thread=t)
    m.step("reserve")                                   # the new_threadstate window


def _after_fork(m: DifferentialMachine) -> None:
    _reader_behind(m)
    _bookkeeping(m)
    survivor = m._new_thread()
    m.step("register", m.step("reserve"), thread=survivor)
    m.step("after_fork", thread=survivor)               # stale seqs and bookkeeping left
    assert m.snap is not None
    m.step("poll", m.snap.wr_seq, thread=survivor)      # the released readers hold rd_seq


def _after_fini(m: DifferentialMachine) -> None:
    _reader_behind(m)
    m.step("fini")                                      # both thread states stale


#: The states growth is checked from (conformance.model.boundaries.GROWTH_STATES), each set up
#: on a fresh interpreter and then grown through 8, 16, 32, 64 and 128 slots.
GROWTH_STARTS: tuple[tuple[str, Callable[[DifferentialMachine], None]], ...] = (
    ("an attached reader behind wr_seq", _reader_behind),
    ("bookkeeping set", _bookkeeping),
    ("a reserved, unregistered slot", _reserved_unregistered),
    ("a slot released by after_fork", _after_fork),
    ("an array rebuilt after fini", _after_fini),
)


def growth_scenario(machine: type[DifferentialMachine]) -> None:
    """Growth from every interesting state, through four growths past 64 slots: a port whose
    growth drops a field of the slots it copies, or whose table is fixed at 64, differs."""
    for _name, setup in GROWTH_STARTS:
        m = machine()
        m.start(None)
        setup(m)
        _grow_through(m)
        m.teardown()


# -- allocation failure across the lifecycle ---------------------------------------------------

def _must_grow(m: DifferentialMachine) -> None:
    """Reserve until the freelist is empty: the next reserve must grow."""
    while m.snap is not None and m.snap.freelist:
        m.step("register", m.step("reserve"), thread=m._new_thread())


def _faults_fresh(m: DifferentialMachine) -> None:
    """Armed before the array exists, two failures: two reserves fail, the third makes it."""
    m._arm_failures(2)
    m.step("reserve")
    m.step("reserve")
    m.step("register", m.step("reserve"), thread=m._new_thread())


def _faults_growths(m: DifferentialMachine) -> None:
    """Armed with three failures while an array exists and readers hold it: three growths
    fail one after the other (each must consume one failure), the fourth grows; then another
    growth, nothing armed."""
    t = m._new_thread()
    m.step("register", m.step("reserve"), thread=t)
    m.step("attach", thread=t)
    m._record_goal(m.step("advance"))
    _must_grow(m)
    m._arm_failures(3)
    for _ in range(4):
        m.step("reserve")
    _must_grow(m)
    m.step("reserve")


def _faults_across_fini(m: DifferentialMachine) -> None:
    """Armed while an array exists and nothing needs to grow, then fini: the failure is still
    armed, so re-initialisation fails once and then succeeds; stale thread states around."""
    t = m._new_thread()
    m.step("register", m.step("reserve"), thread=t)
    m._arm_failures(2)
    m.step("register", m.step("reserve"), thread=m._new_thread())    # pops: nothing consumed
    m.step("fini")
    m.step("reserve")                       # re-initialisation fails
    m.step("reserve")                       # and again: the second failure
    m.step("register", m.step("reserve"), thread=m._new_thread())
    m.step("fini")
    m._arm_failures(1)                      # armed after fini: re-initialisation fails
    m.step("reserve")
    m.step("reserve")


def _faults_across_fork(m: DifferentialMachine) -> None:
    """Armed, then after_fork releases the other slots: the pops take the released slots
    without consuming the failure; the growth after them does."""
    threads = [m._new_thread() for _ in range(3)]
    for t in threads:
        m.step("register", m.step("reserve"), thread=t)
    m.step("attach", thread=threads[1])
    m._arm_failures(1)
    m.step("after_fork", thread=threads[0])
    _must_grow(m)
    m.step("reserve")                       # the growth fails
    m.step("register", m.step("reserve"), thread=m._new_thread())


#: Where allocation failure is armed and consumed (conformance.model.boundaries.FAULT_BOUNDARIES),
#: each on a fresh interpreter, every step compared.
FAULT_STARTS: tuple[tuple[str, Callable[[DifferentialMachine], None]], ...] = (
    ("before the array exists", _faults_fresh),
    ("several growths", _faults_growths),
    ("across fini and re-initialisation", _faults_across_fini),
    ("across after_fork", _faults_across_fork),
)


def fault_scenario(machine: type[DifferentialMachine]) -> None:
    """fail_next_allocations(n) armed in every lifecycle state, n from 1 to 3, consumed across
    several growths, fini, re-initialisation and after_fork (each armed count left armed until
    a growth consumes it)."""
    for _name, setup in FAULT_STARTS:
        m = machine()
        m.start(None)
        setup(m)
        _invariants(m)
        m.teardown()


# -- several live interpreters ----------------------------------------------------------------

def _busy(m: DifferentialMachine, threads: int, advances: int) -> list[int]:
    """Thread states with slots on the current interpreter, the first attached, advances made."""
    made = [m._new_thread() for _ in range(threads)]
    for t in made:
        m.step("register", m.step("reserve"), thread=t)
    m.step("attach", thread=made[0])
    for _ in range(advances):
        m._record_goal(m.step("advance"))
    return made


def interpreters_scenario(m: DifferentialMachine) -> None:
    """Three interpreters alive at once (S-INTERP-1, S-INTERP-2): each with its own thread
    states, sequences, array size and bookkeeping; every operation that changes one (growth,
    advance, poll, after_fork, fini, re-initialisation, armed allocation failure) made while
    the others are alive, and each compared with its own oracle when it is used again."""
    m.start(None)
    first = _busy(m, 2, 1)
    if m.profile == "3.13":
        m._record_goal(m.step("deferred_advance", thread=first[1]))
    else:
        m.step("set_bookkeeping", 2, 4096, 64, True, thread=first[1])
    m.step("new_interpreter")                           # 1: fresh beside 0
    second = _busy(m, 9, 3)                             # grown to 16, wr_seq 7
    m.step("poll", m.snap.wr_seq if m.snap else 1, thread=second[1])
    m.step("use_interpreter", 0)                        # 0 untouched by 1
    m.step("quiescent_state", thread=first[0])
    m.step("poll", m.snap.wr_seq if m.snap else 1, thread=first[0])
    m.step("after_fork", thread=first[0])
    m.step("use_interpreter", 1)                        # 1 untouched by 0's fork
    m._arm_failures(1)
    m.step("fini")
    m.step("new_interpreter")                           # 2: fresh beside 0 and a finished 1
    _busy(m, 1, 1)
    m.step("use_interpreter", 1)
    m.step("reserve")                                   # re-initialisation grows 1 only
    m.step("use_interpreter", 0)
    m.step("reserve")
    m.step("use_interpreter", 2)
    m.step("use_interpreter", 1)
    _invariants(m)
    m.teardown()
