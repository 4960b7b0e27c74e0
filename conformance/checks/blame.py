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
                          "S-INTERP-2", "S-TSTATE-1"}),
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


#: The rule each operation applies itself (docs/semantics.md): what a difference in a part that
#: none of the step's applied rules decides is charged to (after_fork moving rd_seq breaks
#: S-FORK-1, which says what after_fork does, not S-DEF-3, which it also applied).
OWN_FACTS: dict[str, frozenset[str]] = {
    "reserve": frozenset({"S-RES-1"}), "register": frozenset({"S-REG-1"}),
    "unregister": frozenset({"S-UNREG-1"}), "fini": frozenset({"S-FINI-1"}),
    "after_fork": frozenset({"S-FORK-1"}), "attach": frozenset({"S-ATTACH-1"}),
    "detach": frozenset({"S-DETACH-1"}), "quiescent_state": frozenset({"S-QS-1"}),
    "advance": frozenset({"S-ADV-1"}), "deferred_advance": frozenset({"S-DEF-1"}),
    "shared_next": frozenset({"S-DEF-2"}), "should_process": frozenset({"S-DEF-2"}),
    "set_bookkeeping": frozenset({"S-DEF-3"}), "goal_reached": frozenset({"S-GOAL-1"}),
    "poll": frozenset({"S-POLL-1"}), "set_sequences": frozenset({"S-SEQ-2"}),
    "new_thread_state": frozenset({"S-TSTATE-1"}),
    "delete_thread_state": frozenset({"S-TSTATE-1"}),
}

#: A part that the step's own rules do not decide, charged to the rule that owns the part:
#: the deferral bookkeeping belongs to the slot and only the batching rule resets it (S-DEF-3,
#: with the line's batching rule); see :func:`blame`.
PART_OWNERS: dict[str, dict[str, frozenset[str]]] = {
    "bookkeeping": {"3.13": frozenset({"S-DEF-1", "S-DEF-3"}),
                    "3.14": frozenset({"S-DEF-2", "S-DEF-3"})},
}

#: Part name: the observed values show one of S-SEQ-1's constants wrong (QSBR_INCR,
#: QSBR_OFFLINE, QSBR_INITIAL); see :func:`constant_differs`.
CONSTANT = "constant"

_U64 = (1 << 64) - 1


def constant_differs(operation: str | None, before_wr: int | None, got_wr: Any = None,
                     got_seq: Any = None, before_seq: Any = None) -> bool:
    """Whether what the implementation left shows a wrong S-SEQ-1 constant, not only a wrong
    rule: an advance that moved ``wr_seq`` by another non-zero step than QSBR_INCR (2); a
    detach that left a value that is neither 0, the slot's old ``seq`` nor ``wr_seq``
    (QSBR_OFFLINE); a fresh interpreter (``operation`` None) whose ``wr_seq`` is not
    QSBR_INITIAL (1)."""
    if operation is None:
        return got_wr is not None and got_wr != 1
    if operation in ("advance", "deferred_advance") and isinstance(got_wr, int) \
            and before_wr is not None:
        step = (got_wr - before_wr) & _U64
        return step not in (0, 2)
    if operation == "detach" and isinstance(got_seq, int):
        return got_seq not in (0, before_seq, before_wr)
    return False


def blame(applied: Iterable[str], parts: Iterable[str], *, misuse: bool = False,
          operation: str | None = None, got: Any = None, expected: Any = None,
          profile: str = "3.13", after_fini: bool = False) -> set[str]:
    """The facts to charge a difference in ``parts`` to.

    ``parts`` names what differs: ``"result"``, ``"error"``, or state parts (keys of
    :data:`STATE_FACTS`, and :data:`CONSTANT`).  ``misuse`` says the oracle rejected the call
    (or the implementation rejected a call the oracle accepted): then the difference is a
    MISUSE failure, since a rejected call must leave the state exactly as it was.  ``got`` and
    ``expected`` are the implementation's and the oracle's return values, where a result
    differs.  ``after_fini``: the step is the first growth after fini (the array made again
    from nothing), so what differs in it is fini's (S-FINI-1: a re-grown array not zeroed, a
    double free of the array fini freed, an array fini never freed).

    Each part is charged to the applied rules that decide it; a part none of them decides to
    the rule that owns it (:data:`PART_OWNERS`), else to the operation's own rule
    (:data:`OWN_FACTS`).  S-SEQ-1 is named only where the values show a wrong constant.
    """
    applied = set(applied)
    if misuse:
        return {MISUSE}
    parts = list(parts)
    if after_fini and operation == "reserve":
        return {"S-FINI-1"}
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
    constant = CONSTANT in parts
    charged: set[str] = set()
    undecided = False
    for part in parts:
        if part == CONSTANT:
            continue
        if part == "result" and operation is not None:
            deciding = RESULT_FACTS.get(operation, frozenset())
        else:
            deciding = STATE_FACTS.get(part, frozenset())
        found = (applied & deciding) - ({"S-SEQ-1"} if not constant else set())
        if not found and part in PART_OWNERS:
            found = set(PART_OWNERS[part].get(profile, frozenset()))
        if found:
            charged |= found
        else:
            undecided = True
    if undecided or not charged:
        own = set(OWN_FACTS.get(operation or "", frozenset()))
        charged |= (own & applied) or own or (applied - {"S-SEQ-1"}) or applied
    if constant:
        charged.add("S-SEQ-1")
    return charged or {MISUSE}
