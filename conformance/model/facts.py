"""The semantic facts (``S-…`` ids) of CPython's QSBR, as stated in docs/semantics.md.

Every check the suite makes is attributed to one or more of these ids; the report lists each
id with its count, and an id that no check exercised fails the run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    id: str
    summary: str
    profiles: tuple[str, ...] = ("3.13", "3.14")
    #: the rule is about ordering or concurrency (docs/semantics.md, "Which facts need a
    #: concurrent check"): a sequential run cannot tell a wrong implementation apart
    ordering: bool = False


FACTS: tuple[Fact, ...] = (
    Fact("S-SEQ-1", "QSBR_OFFLINE = 0, QSBR_INITIAL = 1, QSBR_INCR = 2"),
    Fact("S-SEQ-2", "fresh state: wr_seq = rd_seq = 1; wr_seq stays odd, moves by +2"),
    Fact("S-SEQ-3", "QSBR_LT/LEQ compare (int64)(a - b): wrap-around safe"),
    Fact("S-SEQ-4", "sequence arithmetic is modulo 2^64, never an error"),
    Fact("S-SLOT-1", "a slot holds seq, shared, tstate, bookkeeping, allocated, freelist_next"),
    Fact("S-SLOT-2", "slots are 64-byte _qsbr_pad entries; struct layout as upstream"),
    Fact("S-SLOT-3", "the array grows only in reserve, to max(2*size, 8), re-pointing owners"),
    Fact("S-FREE-1", "reserve pops the freelist head: allocated, shared set; seq untouched"),
    Fact("S-FREE-2", "after growth the freelist is rebuilt in index order: highest index first"),
    Fact("S-FREE-3", "unregister pushes the slot on the freelist head (LIFO)"),
    Fact("S-FREE-4", "reserve returns -1 and changes nothing when growth cannot allocate"),
    Fact("S-RES-1", "reserve: pop, or stop the world, grow, pop; returns the index or -1",
         ordering=True),
    Fact("S-REG-1", "register: the reserved, unowned slot records its thread state", ordering=True),
    Fact("S-UNREG-1", "unregister: detached owned slot is cleared and freed (pointer re-read)",
         ordering=True),
    Fact("S-FINI-1", "fini frees the array (size 0, no freelist); sequences are kept"),
    Fact("S-FORK-1", "after_fork frees every other allocated slot in index order, keeps seq"),
    Fact("S-ATTACH-1", "attach stores the current wr_seq in seq (seq_cst)", ordering=True),
    Fact("S-DETACH-1", "detach stores QSBR_OFFLINE (release)", ordering=True),
    Fact("S-QS-1", "quiescent_state stores the current wr_seq, also on a detached slot",
         ordering=True),
    Fact("S-ADV-1", "advance adds 2 to wr_seq and returns the new value", ordering=True),
    Fact("S-DEF-1", "deferred_advance defers 9 calls (returns wr_seq+2), advances on the 10th",
         ("3.13",)),
    Fact("S-DEF-2", "shared_next returns wr_seq+2 without advancing; should_process reads "
         "the flag", ("3.14",)),
    Fact("S-DEF-3", "the deferral bookkeeping lives in the slot and survives reuse and growth"),
    Fact("S-GOAL-1", "goal_reached is QSBR_LEQ(goal, rd_seq), without a scan"),
    Fact("S-POLL-1", "poll scans attached slots for the minimum and CASes rd_seq forward",
         ordering=True),
    Fact("S-POLL-2", "rd_seq never moves back and never passes an attached seq; goals are "
         "reached exactly when every earlier reader has moved on", ordering=True),
    Fact("S-SAFE-1", "memory retired with goal g and freed once poll(g) is true is never "
         "read afterwards", ordering=True),
    Fact("S-SAFE-2", "if every attached thread keeps reporting quiescent states, every goal "
         "is reached", ordering=True),
    Fact("S-TSTATE-1", "a new thread state has no slot; delete removes one without a slot, "
         "which no snapshot lists afterwards"),
    Fact("S-INTERP-1", "each interpreter has its own _qsbr_shared: sequences, array, freelist; "
         "nothing done on one changes another"),
    Fact("S-INTERP-2", "a thread state and its slot belong to the interpreter that made it; "
         "no other interpreter lists it"),
    Fact("S-READ-1", "a reader's first protected load after attach must be seq_cst "
         "(acquire can be freed under; model-checked only)", ordering=True),
)

#: Facts only the model checker (reference_c/relacy, for the reference port) can exercise: without
#: its results they are n/a, never UNCHECKED, so a run of another implementation is not failed.
MODEL_CHECKED_ONLY = frozenset({"S-READ-1"})

FACT_BY_ID: dict[str, Fact] = {fact.id: fact for fact in FACTS}

#: The preconditions upstream only asserts; their checks are reported under this pseudo-id.
MISUSE = "MISUSE"


def facts_for_profile(profile: str) -> tuple[Fact, ...]:
    return tuple(fact for fact in FACTS if profile in fact.profiles)
