"""Structured differences: what the implementation did beside what the oracle expected.

A failure of the differential comparison carries, besides its message, a list of entries::

    {"field": "slots[3].seq", "observed": 0, "expected": 5}

one per field of the snapshot that differs (``wr_seq``, ``rd_seq``, ``size``, each slot's
``seq``/``allocated``/``owner``/``bookkeeping.<name>``, ``freelist``, each thread state's slot
pointer ``threads[t2]``), and for the step itself ``error`` (the exception class raised, or None)
and ``result`` (the return value).  Thread states are named ``t0``, ``t1``, ... as in the step
records (conformance.checks.steps); a field that one side does not have is ``"<absent>"``.

The optional wider fields of the snapshot (``freelist_next``, ``shared``, the array's alignment:
conformance.model.observed) have no oracle value: they are rules checked on the implementation's
own snapshot.  Their entries name the part (``"field": "freelist_next"``), carry the broken rule
as ``observed`` and None as ``expected``.
"""

from __future__ import annotations

from typing import Any

#: The value of a field that one side does not have (a slot beyond the other's array, a thread
#: state the other side does not know).
ABSENT = "<absent>"

DiffEntry = dict[str, Any]

#: The fields of wider-state rules (conformance.model.observed): no oracle value to show.
WIDER_PARTS = frozenset({"freelist_next", "shared", "alignment"})


def entry(field: str, observed: Any, expected: Any) -> DiffEntry:
    return {"field": field, "observed": _plain(observed), "expected": _plain(expected)}


def _plain(value: Any) -> Any:
    """JSON-friendly: tuples become lists (recursively); everything else as it is."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def outcome_diff(observed_error: str | None, observed_result: Any,
                 expected_error: str | None, expected_result: Any) -> list[DiffEntry]:
    """The step's own outcome: ``error`` (class names, None for no exception) and ``result``
    (the return value; compared only where neither side raised, or where one side returned
    something while the other raised)."""
    found: list[DiffEntry] = []
    if observed_error != expected_error:
        found.append(entry("error", observed_error, expected_error))
        if observed_result is not None or expected_result is not None:
            found.append(entry("result", observed_result if observed_error is None else None,
                               expected_result if expected_error is None else None))
    elif observed_error is None and observed_result != expected_result:
        found.append(entry("result", observed_result, expected_result))
    return found


def _owner(value: Any) -> Any:
    return f"t{value}" if isinstance(value, int) and not isinstance(value, bool) else value


def _state_diff(got: dict[str, Any], want: dict[str, Any]) -> list[DiffEntry]:
    """Both sides in the normal form of :func:`_from_snapshot` / :func:`_from_fingerprint`."""
    found: list[DiffEntry] = []
    for name in ("wr_seq", "rd_seq", "size"):
        if got[name] != want[name]:
            found.append(entry(name, got[name], want[name]))
    slots_got, slots_want = got["slots"], want["slots"]
    for index in range(max(len(slots_got), len(slots_want))):
        if index >= len(slots_got) or index >= len(slots_want):
            shown = [_slot_dict(s[index]) if index < len(s) else ABSENT
                     for s in (slots_got, slots_want)]
            found.append(entry(f"slots[{index}]", *shown))
            continue
        g, w = slots_got[index], slots_want[index]
        for part, position in (("seq", 0), ("allocated", 1), ("owner", 2)):
            if g[position] != w[position]:
                convert = _owner if part == "owner" else (lambda v: v)
                found.append(entry(f"slots[{index}].{part}", convert(g[position]),
                                   convert(w[position])))
        book_got, book_want = dict(g[3]), dict(w[3])
        for key in sorted(set(book_got) | set(book_want), key=str):
            if book_got.get(key, ABSENT) != book_want.get(key, ABSENT):
                found.append(entry(f"slots[{index}].bookkeeping.{key}",
                                   book_got.get(key, ABSENT), book_want.get(key, ABSENT)))
    if got["freelist"] != want["freelist"]:
        found.append(entry("freelist", got["freelist"], want["freelist"]))
    threads_got, threads_want = got["threads"], want["threads"]
    for thread in sorted(set(threads_got) | set(threads_want), key=str):
        g_slot, w_slot = threads_got.get(thread, ABSENT), threads_want.get(thread, ABSENT)
        if g_slot != w_slot:
            found.append(entry(f"threads[{_owner(thread)}]", g_slot, w_slot))
    return found


def _slot_dict(slot: tuple) -> dict[str, Any]:
    return {"seq": slot[0], "allocated": slot[1], "owner": _owner(slot[2]),
            "bookkeeping": dict(slot[3])}


def _from_snapshot(snap: Any) -> dict[str, Any]:
    return {"wr_seq": snap.wr_seq, "rd_seq": snap.rd_seq, "size": snap.size,
            "slots": [(s.seq, bool(s.allocated), s.owner, tuple(s.bookkeeping))
                      for s in snap.slots],
            "freelist": list(snap.freelist), "threads": dict(snap.threads)}


def state_of_snapshot(snap: Any) -> dict[str, Any]:
    """The normal form of a snapshot in logical thread ids (conformance.checks.compare)."""
    return _from_snapshot(snap)


def state_of_fingerprint(fp: tuple) -> dict[str, Any]:
    """The normal form of a fingerprint of the exhaustive exploration."""
    return _from_fingerprint(fp)


def state_diff(observed: dict[str, Any], expected: dict[str, Any]) -> list[DiffEntry]:
    """Between two states in normal form (:func:`state_of_snapshot`,
    :func:`state_of_fingerprint`)."""
    return _state_diff(observed, expected)


def snapshot_diff(observed: Any, expected: Any) -> list[DiffEntry]:
    """Between two snapshots in logical thread ids (conformance.model.adapter.Snapshot, as the
    differential machine's ``_logical_snapshot`` gives them)."""
    return _state_diff(_from_snapshot(observed), _from_snapshot(expected))


def wider_diff(pairs: list[tuple[str, str]] | tuple) -> list[DiffEntry]:
    """Entries for the wider-state rules broken ((part, message) pairs of
    conformance.model.observed.wider_differences)."""
    return [entry(part, message, None) for part, message in pairs]


def _from_fingerprint(fp: tuple) -> dict[str, Any]:
    wr, rd, size, slots, freelist, threads = fp[:6]
    return {"wr_seq": wr, "rd_seq": rd, "size": size, "slots": list(slots),
            "freelist": list(freelist), "threads": dict(threads)}


def fingerprint_diff(observed: tuple, expected: tuple) -> list[DiffEntry]:
    """Between two fingerprints of the exhaustive exploration
    (conformance.checks.exhaustive.impl_fingerprint / oracle_fingerprint)."""
    found = _state_diff(_from_fingerprint(observed), _from_fingerprint(expected))
    if len(observed) > 6 and observed[6] != expected[6]:
        found += wider_diff(observed[6])
    return found


def render(diff: list[DiffEntry], limit: int = 24) -> list[str]:
    """One line per entry (``field: observed X, expected Y``), at most ``limit`` of them."""
    lines = []
    for item in diff[:limit]:
        if item["field"] in WIDER_PARTS:
            lines.append(f"{item['field']}: {item['observed']}")      # a rule, no oracle value
        else:
            lines.append(f"{item['field']}: observed {item['observed']!r}, "
                         f"expected {item['expected']!r}")
    if len(diff) > limit:
        lines.append(f"... {len(diff) - limit} more (all of them in the JSON report)")
    return lines
