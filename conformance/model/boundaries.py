"""Boundaries: coverage below the fact level (docs/semantics.md, "Boundaries").

A fact can be checked thousands of times without one check standing where a plausible port
goes wrong: at the 2^64 wrap, at values 2^63 apart (where ``QSBR_LEQ(a, b)`` and
``!QSBR_LT(b, a)`` part), at the fifth growth (past a fixed 64-slot table), after a fork with
deferrals pending, on a call where two misuse conditions hold at once.  A *boundary* names
such a place.  The oracle records the boundaries a call stood on (``OracleInterpreter.reached``);
a check credits them to a :class:`BoundaryLedger` only once the implementation agreed with the
oracle on that call, so a count means "checked there", not "visited".

This ledger is separate from the fact ledger (conformance.model.ledger): it decides no status
and fails nothing.  A boundary the run never reached is a *gap*, listed by name in the report
(:func:`render_text`, :func:`to_json`), so that "conforms" never silently means "conforms where
the generators happened to go".

The names are stable strings; :func:`expected` lists the ones a run of a profile should reach.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Array sizes growth passes through, from empty: four doublings after the first allocation,
#: the last one past 64 slots (a fixed-size table of 64 is a realistic port bug).
GROWTH_SIZES: tuple[int, ...] = (8, 16, 32, 64, 128)

#: The states growth is checked from: each, at every growth after the first (8 -> 16 ... 64 ->
#: 128), is a boundary ``growth from: <state>, <old> -> <new>``.
GROWTH_STATES: tuple[str, ...] = (
    "an attached reader behind wr_seq",     # a copied slot's seq must survive
    "bookkeeping set",                      # every bookkeeping field of a copied slot set
    "a reserved, unregistered slot",        # allocated, no owner: copied as such
    "a slot released by after_fork",        # stale seq on an unallocated slot; stale thread
    "an array rebuilt after fini",          # from nothing again, stale thread states around
)


def growth(old: int, new: int) -> str:
    return f"growth: {old} -> {new}"


def growth_from(state: str, old: int, new: int) -> str:
    return f"growth from: {state}, {old} -> {new}"


def misuse(operation: str, error: str) -> str:
    return f"misuse: {operation} raises {error}"


def precedence(operation: str, first: str, second: str) -> str:
    return f"precedence: {operation}: {first} before {second}"


def argument_type(operation: str, kind: str) -> str:
    return f"argument: {operation} rejects a {kind}"


#: Named boundaries that are not generated from a table.
SEQUENCE_BOUNDARIES: tuple[str, ...] = (
    "wrap: advance crosses 2^64",
    "wrap: a shared_next/deferred goal crosses 2^64",
    "wrap: poll decided by the wrap-safe comparison",
    "wrap: goal_reached decided by the wrap-safe comparison",
    "half-range: poll with goal and rd_seq 2^63 apart",
    "half-range: goal_reached with goal and rd_seq 2^63 apart",
    "half-range: set_sequences with rd_seq and wr_seq 2^63 apart",
)
FREELIST_BOUNDARIES: tuple[str, ...] = (
    "freelist: reserve pops a slot pushed by growth",
    "freelist: reserve pops a slot pushed by unregister",
    "freelist: reserve pops a slot pushed by after_fork",
    "freelist: after_fork pushes onto a non-empty freelist",
    "freelist: every slot free",
    "freelist: growth cannot allocate (reserve returns -1)",
)
FORK_BOUNDARIES: tuple[str, ...] = (
    "fork: releases a slot with bookkeeping pending",
    "fork: releases an attached slot (its seq stays)",
    "fork: a released slot's stale seq holds rd_seq back in a poll",
    "fork: a released slot with a stale seq is reused",
    "fini: leaves registered thread states stale",
)

#: Allocation failure across the lifecycle (``fail_next_allocations(n)``): where it was armed
#: (no array yet, an array, after fini), where a growth consumed it, across fini and after_fork,
#: the second and later of several failures, and a growth that succeeds once they are used up.
FAULT_STATES: tuple[str, ...] = ("before the array exists", "while an array exists",
                                 "after fini")
FAULT_RECOVERED = "faults: a growth succeeds once the armed failures are consumed"


def fault_state(has_array: bool, finished: bool) -> str:
    """The lifecycle state an interpreter is in, as the fault boundaries name it."""
    if has_array:
        return FAULT_STATES[1]
    return FAULT_STATES[2] if finished else FAULT_STATES[0]


def fault(armed: str, consumed: str) -> str:
    return f"faults: armed {armed}, consumed {consumed}"


def fault_consumed(armed: str, now: str, since: set[str] | frozenset[str],
                   consumed_before: int) -> list[str]:
    """The boundaries a growth that consumes an armed failure stands on."""
    names = [fault(armed, now)]
    if "fini" in since:
        names.append("faults: armed before fini, consumed after it")
    if "after_fork" in since:
        names.append("faults: armed before after_fork, consumed after it")
    if consumed_before:
        names.append("faults: a second armed failure consumed by the next growth")
    return names


FAULT_BOUNDARIES: tuple[str, ...] = (
    *(fault(armed, consumed) for armed, consumed in (
        (FAULT_STATES[0], FAULT_STATES[0]),     # fresh: the first array cannot be made
        (FAULT_STATES[1], FAULT_STATES[1]),     # an existing array cannot grow
        (FAULT_STATES[1], FAULT_STATES[2]),     # armed with an array, fini, re-init fails
        (FAULT_STATES[2], FAULT_STATES[2]),     # after fini: re-initialisation fails
    )),
    "faults: armed before fini, consumed after it",
    "faults: armed before after_fork, consumed after it",
    "faults: a second armed failure consumed by the next growth",
    FAULT_RECOVERED,
)

#: The misuse each operation can raise (docs/adapter-protocol.md, "Errors"), per profile line.
_SLOT = ("UnknownThreadStateError", "NotRegisteredError", "StaleSlotError")
MISUSE_TABLE: dict[str, dict[str, tuple[str, ...]]] = {
    "3.13": {
        "attach": (*_SLOT, "AlreadyAttachedError"),
        "detach": (*_SLOT, "NotAttachedError"),
        "quiescent_state": _SLOT,
        "unregister": (*_SLOT, "StillAttachedError"),
        "after_fork": _SLOT,
        "deferred_advance": _SLOT,
        "poll": ("BadSequenceError", *_SLOT),
        "goal_reached": ("BadSequenceError", *_SLOT),
        "register": ("UnknownThreadStateError", "IndexOutOfRangeError", "AlreadyRegisteredError",
                     "StaleSlotError", "SlotNotReservedError", "SlotOwnedError"),
        "delete_thread_state": ("UnknownThreadStateError", "StillRegisteredError"),
        "set_sequences": ("BadSequenceError", "NotFreshError"),
        "shared_next": ("UnsupportedOperationError",),
        "should_process": ("UnknownThreadStateError", "UnsupportedOperationError"),
        "set_bookkeeping": ("UnknownThreadStateError", "UnsupportedOperationError"),
    },
}
MISUSE_TABLE["3.14"] = {
    **{op: errs for op, errs in MISUSE_TABLE["3.13"].items()
       if op not in ("deferred_advance", "shared_next", "should_process", "set_bookkeeping")},
    "deferred_advance": ("UnknownThreadStateError", "UnsupportedOperationError"),
    "should_process": _SLOT,
    "set_bookkeeping": _SLOT,
}

#: Which conditions each operation checks, in the protocol's order (the first that holds wins):
#: the names :meth:`conformance.model.oracle.OracleInterpreter.misuse_conditions` returns.
#: A precedence boundary is a pair of them that can hold at once.
PRECEDENCE_PAIRS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "3.13": (
        ("poll", "argument", "handle"),
        ("poll", "argument", "slot"),
        ("goal_reached", "argument", "handle"),
        ("goal_reached", "argument", "slot"),
        ("set_sequences", "argument", "not fresh"),
        ("set_sequences", "not fresh", "values"),
        ("register", "handle", "index type"),
        ("register", "index type", "registered"),
        ("register", "registered", "index range"),
        ("should_process", "handle", "profile"),
        ("should_process", "profile", "slot"),
        ("set_bookkeeping", "handle", "profile"),
        ("set_bookkeeping", "profile", "slot"),
    ),
}
PRECEDENCE_PAIRS["3.14"] = tuple(
    p for p in PRECEDENCE_PAIRS["3.13"] if p[0] not in ("should_process", "set_bookkeeping")
) + (("deferred_advance", "handle", "profile"), ("deferred_advance", "profile", "slot"))

#: Argument kinds that Python would coerce (or that look like a number) and the protocol
#: rejects (conformance.model.errors.is_integer).
COERCIBLE: tuple[str, ...] = ("bool", "float", "str")
TYPED_OPERATIONS: tuple[str, ...] = ("poll", "goal_reached", "set_sequences", "register")


def expected(profile: str) -> list[str]:
    """Every boundary a run of ``profile`` should reach, in report order."""
    line = "3.14" if profile == "3.14" else "3.13"
    names = list(SEQUENCE_BOUNDARIES)
    names += [growth(old, new) for old, new in zip((0, *GROWTH_SIZES), GROWTH_SIZES,
                                                   strict=False)]
    names += [growth_from(state, old, new) for state in GROWTH_STATES
              for old, new in zip(GROWTH_SIZES, GROWTH_SIZES[1:], strict=False)]
    names += list(FREELIST_BOUNDARIES) + list(FORK_BOUNDARIES) + list(FAULT_BOUNDARIES)
    names += [misuse(op, err) for op, errs in MISUSE_TABLE[line].items() for err in errs]
    names += [precedence(*pair) for pair in PRECEDENCE_PAIRS[line]]
    names += [argument_type(op, kind) for op in TYPED_OPERATIONS for kind in COERCIBLE]
    return names


@dataclass
class BoundaryLedger:
    """Counts, per boundary name, the checks that stood on it and agreed with the oracle."""

    profile: str = "3.13"      # the API line ("3.13" or "3.14")
    counts: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reached(self, *names: str) -> None:
        if not names:
            return
        with self._lock:
            for name in set(names):
                self.counts[name] += 1

    def merge(self, other: BoundaryLedger) -> None:
        with self._lock:
            self.counts.update(other.counts)

    @property
    def gaps(self) -> list[str]:
        """The expected boundaries no check reached, in report order."""
        return [name for name in expected(self.profile) if not self.counts[name]]

    @property
    def extra(self) -> list[str]:
        """Boundaries reached that the expected list does not name (for the JSON)."""
        known = set(expected(self.profile))
        return sorted(name for name in self.counts if name not in known)


def render_text(ledger: BoundaryLedger) -> list[str]:
    """A few lines for the text report: how many boundaries were reached, grouped, and every
    gap by name."""
    names = expected(ledger.profile)
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split(":", 1)[0], []).append(name)
    reached = sum(1 for name in names if ledger.counts[name])
    lines = [f"boundaries: {reached} of {len(names)} reached"
             + (" (every boundary docs/semantics.md names)" if reached == len(names) else "")]
    parts = []
    for group, members in groups.items():
        hit = sum(1 for name in members if ledger.counts[name])
        parts.append(f"{group} {hit}/{len(members)}")
    lines.append("  " + ", ".join(parts))
    gaps = ledger.gaps
    if gaps:
        lines.append(f"  not reached ({len(gaps)}): " + "; ".join(gaps))
    return lines


def to_json(ledger: BoundaryLedger) -> dict[str, Any]:
    """``{"profile", "expected", "reached": {name: count}, "gaps": [names], "extra": [...]}``."""
    names = expected(ledger.profile)
    return {"profile": ledger.profile, "expected": len(names),
            "reached": {name: ledger.counts[name] for name in names if ledger.counts[name]},
            "gaps": ledger.gaps, "extra": ledger.extra}
