"""The one comparator: one call's expected outcome and state beside what the implementation did.

:func:`compare_step` is used by every check that compares an implementation with the oracle
call by call: the differential machine (the random sequences, the fixed scenarios and replay,
which all drive it) and the bounded-exhaustive exploration.  It compares the outcome (the
exception class, or the return value) and then the whole observable state, in the normal form
of conformance.checks.statediff (thread states in logical ids), and returns None when they
agree, else a :class:`Verdict`: the facts the difference is charged to
(conformance.checks.blame), the message, the per-field difference and the parts that differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .blame import CONSTANT, blame, constant_differs
from .statediff import DiffEntry, outcome_diff, state_diff, wider_diff


@dataclass(frozen=True)
class Expected:
    """What the oracle says one call must give."""

    operation: str | None
    label: str
    #: the rules the oracle applied (blame intersects them with the parts that differ)
    applied: frozenset[str]
    error: str | None = None            # the class name of the QsbrError it raises
    result: Any = None
    #: the state after the call (statediff normal form); None: not compared
    state: dict[str, Any] | None = None
    #: the state before the call (for blame: which constant a difference shows)
    before: dict[str, Any] | None = None
    thread: int | None = None           # the logical thread state the call was made on
    copied: int = 0                     # the call grew the array from that many slots
    after_fini: bool = False            # the call grew the array again after fini
    profile: str = "3.13"


@dataclass(frozen=True)
class Observed:
    """What the implementation did on the call."""

    error: str | None = None            # the class name of the QsbrError it raised
    result: Any = None
    #: an exception outside the protocol, as "Type: message" (None: none)
    raised: str | None = None
    state: dict[str, Any] | None = None
    #: rules on the wider optional fields it broke: (part, message) (conformance.model.observed)
    wider: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Verdict:
    facts: tuple[str, ...]
    message: str
    diff: list[DiffEntry] = field(default_factory=list)
    parts: tuple[str, ...] = ()


def _describe(error: str | None, result: Any) -> str:
    return error if error is not None else repr(result)


def compare_step(expected: Expected, observed: Observed, *,
                 outcome: bool = True) -> Verdict | None:
    """None when the implementation agreed with the oracle on the call, else the verdict.

    ``outcome``: compare the call's outcome (False for a comparison of the state alone, e.g.
    a fresh interpreter)."""
    misuse = expected.error is not None
    label = expected.label
    if outcome:
        verdict = _compare_outcome(expected, observed, misuse)
        if verdict is not None:
            return verdict
    if expected.state is None or observed.state is None:
        return None
    parts, lines = state_differences(observed.state, expected.state, expected.copied)
    parts += [part for part, _ in observed.wider]
    lines += [message for _, message in observed.wider]
    if not lines:
        return None
    if expected.before is not None and _state_constant(expected, observed.state):
        parts.append(CONSTANT)
    facts = blame(expected.applied, parts, misuse=misuse, operation=expected.operation,
                  profile=expected.profile, after_fini=expected.after_fini)
    return Verdict(tuple(sorted(facts)),
                   f"after {label}, the state differs from the oracle:\n  " + "\n  ".join(lines),
                   state_diff(observed.state, expected.state) + wider_diff(observed.wider),
                   tuple(parts))


def _compare_outcome(expected: Expected, observed: Observed, misuse: bool) -> Verdict | None:
    want = _describe(expected.error, expected.result)
    common: dict[str, Any] = {"operation": expected.operation, "profile": expected.profile,
                              "after_fini": expected.after_fini}
    if observed.raised is not None:
        facts = blame(expected.applied, ["result"], misuse=misuse, **common)
        return Verdict(tuple(sorted(facts)),
                       f"{expected.label}: raised {observed.raised} (expected {want})",
                       outcome_diff(observed.raised.split(":")[0], None, expected.error,
                                    expected.result), ("result",))
    if observed.error != expected.error:
        # A misuse accepted or answered with the wrong error is MISUSE; a valid call rejected
        # is charged to the rules that made it valid (e.g. S-SEQ-3 at 2^63 apart).
        parts = ["error"] if misuse else ["result"]
        facts = blame(expected.applied, parts, misuse=misuse, **common)
        return Verdict(tuple(sorted(facts)), f"{expected.label}: got "
                       f"{_describe(observed.error, observed.result)}, expected {want}",
                       outcome_diff(observed.error, observed.result, expected.error,
                                    expected.result), tuple(parts))
    if expected.error is None and observed.result != expected.result:
        before = expected.before["wr_seq"] if expected.before is not None else None
        parts = ["result"] + ([CONSTANT] if constant_differs(
            expected.operation, before, observed.result) else [])
        facts = blame(expected.applied, parts, got=observed.result, expected=expected.result,
                      **common)
        return Verdict(tuple(sorted(facts)), f"{expected.label}: got {observed.result!r}, "
                       f"expected {want}",
                       outcome_diff(None, observed.result, None, expected.result),
                       tuple(parts))
    return None


def _state_constant(expected: Expected, got: dict[str, Any]) -> bool:
    before = expected.before
    assert before is not None
    slot = before["threads"].get(expected.thread) if expected.thread is not None else None
    got_seq = before_seq = None
    if isinstance(slot, int) and slot < len(got["slots"]) and slot < len(before["slots"]):
        got_seq, before_seq = got["slots"][slot][0], before["slots"][slot][0]
    return expected.operation is not None and constant_differs(
        expected.operation, before["wr_seq"], got["wr_seq"], got_seq, before_seq)


_SLOT_PARTS = ("seq", "allocated", "owner", "bookkeeping")


def state_differences(got: dict[str, Any], want: dict[str, Any], copied: int = 0
                      ) -> tuple[list[str], list[str]]:
    """(differing parts for blame, readable lines) between two states in normal form;
    ``copied``: the call grew the array from that many slots (a difference in one of them is
    the growth's copy, part ``copied``, S-RES-1, not the pop's)."""
    parts: list[str] = []
    lines: list[str] = []
    for name in ("wr_seq", "rd_seq", "size"):
        if got[name] != want[name]:
            parts.append(name)
            lines.append(f"{name}: got {got[name]!r}, expected {want[name]!r}")
    slots_got, slots_want = got["slots"], want["slots"]
    if len(slots_got) == len(slots_want):
        for index, (g, w) in enumerate(zip(slots_got, slots_want, strict=True)):
            for position, part in enumerate(_SLOT_PARTS):
                gv, wv = g[position], w[position]
                if part == "bookkeeping":
                    gv, wv = tuple(gv), tuple(wv)
                if gv != wv:
                    if index < copied:
                        parts += ["copied"] + (["bookkeeping"] if part == "bookkeeping"
                                               else [])
                    else:
                        parts.append(part)
                    lines.append(f"slot {index} {part}: got {gv!r}, expected {wv!r}")
    elif "size" not in parts:
        parts.append("size")
        lines.append(f"slots: got {len(slots_got)}, expected {len(slots_want)}")
    for name in ("freelist", "threads"):
        if got[name] != want[name]:
            parts.append(name)
            shown = (tuple(got[name]), tuple(want[name])) if name == "freelist" else (
                got[name], want[name])
            lines.append(f"{name}: got {shown[0]!r}, expected {shown[1]!r}")
    return parts, lines
