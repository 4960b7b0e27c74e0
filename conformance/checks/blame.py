"""Blame the deciding rule: which fact a difference from the oracle is charged to.

A step applies several rules (the oracle records them in ``OracleInterpreter.applied``), but a
difference in one part of the result or of the state is decided by only some of them: a poll
whose answer differs is charged to S-POLL-1, and to S-SEQ-3 only when wrap-around decided the
answer (the oracle records S-SEQ-3 only then); a difference in a slot's bookkeeping after an
unregister is charged to S-DEF-3, not to S-FREE-3.  :func:`blame` intersects the facts the step
applied with the facts that decide the part that differs; when the intersection is empty (a bug
in a part the step should not have touched at all), every applied fact is named (the step's
rules are what was broken: fini that resets the sequences breaks S-FINI-1, not S-ADV-1).

Growth: a difference in a slot that the step's growth copied (part ``copied``) is the growth's
(S-RES-1: growth carries every field of every slot), not the pop's (S-FREE-1); a reserve that
returns -1 where the oracle grew the array is a growth that did not happen (S-SLOT-3, S-RES-1),
e.g. a fixed-size table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..model.facts import MISUSE

#: The facts that decide each part of the observable state.
STATE_FACTS: dict[str, frozenset[str]] = {
    "wr_seq": frozenset({"S-ADV-1", "S-DEF-1", "S-SEQ-1", "S-SEQ-2", "S-SEQ-4", "S-INTERP-1"}),
    "rd_seq": frozenset({"S-POLL-1", "S-SEQ-2", "S-SEQ-3", "S-INTERP-1"}),
    "size": frozenset({"S-SLOT-3", "S-FINI-1", "S-FREE-4", "S-INTERP-1"}),
    "freelist": frozenset({"S-FREE-1", "S-FREE-2", "S-FREE-3", "S-FREE-4", "S-FORK-1",
                           "S-FINI-1", "S-INTERP-1"}),
    "threads": frozenset({"S-REG-1", "S-UNREG-1", "S-FORK-1", "S-FINI-1", "S-SLOT-3",
                          "S-INTERP-2"}),
    "seq": frozenset({"S-ATTACH-1", "S-DETACH-1", "S-QS-1", "S-SEQ-1", "S-FREE-1",
                      "S-UNREG-1", "S-FORK-1", "S-INTERP-1"}),
    "allocated": frozenset({"S-FREE-1", "S-UNREG-1", "S-FORK-1", "S-FREE-4", "S-INTERP-1"}),
    "owner": frozenset({"S-REG-1", "S-UNREG-1", "S-FORK-1", "S-INTERP-2"}),
    "bookkeeping": frozenset({"S-DEF-1", "S-DEF-2", "S-DEF-3", "S-INTERP-1"}),
    "copied": frozenset({"S-RES-1"}),
    "freelist_next": frozenset({"S-FREE-1", "S-SLOT-1"}),
    "shared": frozenset({"S-FREE-1", "S-SLOT-1"}),
    "alignment": frozenset({"S-SLOT-2"}),
}

#: Parts decided by one fact whatever the step applied: the array's alignment is S-SLOT-2's
#: rule (the 64-byte aligned array of 3.14.4+), even when a growth (S-SLOT-3) made the array.
ABSOLUTE_PARTS: dict[str, str] = {"alignment": "S-SLOT-2"}

#: The facts that decide each operation's return value.
RESULT_FACTS: dict[str, frozenset[str]] = {
    "advance": frozenset({"S-ADV-1", "S-SEQ-4"}),
    "deferred_advance": frozenset({"S-DEF-1", "S-ADV-1", "S-SEQ-4"}),
    "shared_next": frozenset({"S-DEF-2", "S-SEQ-4"}),
    "should_process": frozenset({"S-DEF-2", "S-DEF-3"}),
    "poll": frozenset({"S-POLL-1", "S-SEQ-3"}),
    "goal_reached": frozenset({"S-GOAL-1", "S-SEQ-3"}),
    "reserve": frozenset({"S-RES-1", "S-FREE-1", "S-FREE-2", "S-FREE-3", "S-FREE-4",
                          "S-SLOT-3", "S-FORK-1"}),
    # accepted or rejected: the order of rd_seq and wr_seq (S-SEQ-3 at 2^63 apart)
    "set_sequences": frozenset({"S-SEQ-3"}),
}


def blame(applied: Iterable[str], parts: Iterable[str], *, misuse: bool = False,
          operation: str | None = None, got: Any = None, expected: Any = None) -> set[str]:
    """The facts to charge a difference in ``parts`` to.

    ``parts`` names what differs: ``"result"``, ``"error"``, or state parts (keys of
    :data:`STATE_FACTS`).  ``misuse`` says the oracle rejected the call (or the implementation
    rejected a call the oracle accepted): then the difference is a MISUSE failure, since a
    rejected call must leave the state exactly as it was.  ``got`` and ``expected`` are the
    implementation's and the oracle's return values, where a result differs.
    """
    applied = set(applied)
    if misuse:
        return {MISUSE}
    deciding: set[str] = set()
    parts = list(parts)
    absolute = {ABSOLUTE_PARTS[part] for part in parts if part in ABSOLUTE_PARTS}
    if absolute and all(part in ABSOLUTE_PARTS for part in parts):
        return absolute
    if (operation == "reserve" and "result" in parts and got == -1 and expected != -1
            and "S-SLOT-3" in applied):
        return {"S-SLOT-3", "S-RES-1"}      # the oracle grew the array; the port could not
    if operation == "reserve" and "result" in parts:
        # Which index reserve returns is decided by the freelist's head: the rebuild after a
        # growth (S-FREE-2), a failed growth (S-FREE-4), or the pop itself (S-FREE-1); who
        # pushed the head (S-FREE-3, S-FORK-1) was compared when it was pushed.
        for fact in ("S-FREE-4", "S-FREE-2", "S-FREE-1"):
            if fact in applied:
                return {fact}
    for part in parts:
        if part == "result" and operation is not None:
            deciding |= RESULT_FACTS.get(operation, frozenset())
        else:
            deciding |= STATE_FACTS.get(part, frozenset())
    return (applied & deciding) or applied or {MISUSE}
