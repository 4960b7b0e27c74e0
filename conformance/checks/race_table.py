"""Which operations may run at the same time, as data, and the race probes derived from it.

The table is docs/adapter-protocol.md's ('Thread safety', the table of concurrency classes);
tests/concurrency/test_race_table.py reads that table and requires it to say the same.  From it
:func:`pairs` generates every unordered pair of operations the protocol lets two threads run at
once (two operations of the per-thread-state class only on different thread states, which the
probes always use), and :data:`TRIPLES` adds the three-thread shapes a scan depends on.

Every probe starts from each of the states in :data:`STATES` that its operations can start
from (:func:`states_for`), built by :func:`build` one step at a time on the implementation and
the model alike (conformance.checks.races._Round), each thread state handled by the worker
thread that races with it:

- ``smaller-seq-later``: a later slot holds a smaller ``seq`` than an earlier one (a scan that
  reads a slot twice forgets the smaller one if it changes in between), no free slot (a reserve
  grows);
- ``smaller-seq-first``: the same with the roles of the racing thread states swapped, one free
  slot (a reserve pops);
- ``after-growth``: worker 0 has completed a poll (a goal_reached in another worker must see
  what it published), then the last worker grew the array and attached a reader in a slot the
  growth created (a poll must scan the new array); poll's goal is held back by that reader,
  goal_reached's goal was reached by worker 0's poll;
- ``quiet``: no thread state but the racing ones, none attached but those an operation needs
  attached, goal = wr_seq (a scan's minimum is wr_seq itself unless it sees a racing attach).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Concurrency classes (docs/adapter-protocol.md, 'Thread safety').
ANY_TIME = ("reserve", "advance", "shared_next", "new_thread_state")
PER_THREAD_STATE = ("delete_thread_state", "register", "unregister", "attach", "detach",
                    "quiescent_state", "deferred_advance", "should_process",
                    "set_bookkeeping", "poll", "goal_reached")
ALONE = ("fini", "after_fork", "snapshot", "set_sequences", "fail_next_allocations", "close")
PROFILE_ONLY = {"deferred_advance": "3.13", "shared_next": "3.14", "should_process": "3.14",
                "set_bookkeeping": "3.14"}


def concurrency_class(operation: str) -> str:
    for name, members in (("any time", ANY_TIME), ("per thread state", PER_THREAD_STATE),
                          ("alone", ALONE)):
        if operation in members:
            return name
    raise KeyError(operation)


def may_overlap(a: str, b: str) -> bool:
    """Whether the protocol lets ``a`` and ``b`` run at the same time (a per-thread-state
    operation beside another: on different thread states)."""
    kinds = {concurrency_class(a), concurrency_class(b)}
    return "alone" not in kinds


def operations(profile: str) -> list[str]:
    return [op for op in ANY_TIME + PER_THREAD_STATE
            if PROFILE_ONLY.get(op, profile) == profile]


def pairs(profile: str) -> list[tuple[str, str]]:
    """Every unordered pair the protocol allows on this line (an operation beside itself
    included), in a fixed order."""
    ops = operations(profile)
    return [(a, b) for i, a in enumerate(ops) for b in ops[i:] if may_overlap(a, b)]


#: Three threads: the scan beside an attach and an advance (a scan that reads wr_seq after
#: the slots, or an attach that publishes a seq read before the advance), and a poll beside a
#: growth and an attach.
TRIPLES: list[tuple[str, ...]] = [("poll", "attach", "advance"),
                                  ("poll", "reserve", "quiescent_state")]

#: What each operation's thread state must be before the race (valid calls only: misuse is
#: the sequential run's business).  ``attached``: registered and attached; ``registered``:
#: registered, detached; ``reserved``: no slot, an index reserved for it; ``bare``: no slot.
NEEDS = {"attach": "registered", "unregister": "registered", "register": "reserved",
         "delete_thread_state": "bare"}
#: Overrides for a probe (by its operations): the triple's poll runs detached, so the scan's
#: minimum is not held back by the poller's own seq.
NEEDS_IN: dict[tuple[str, ...], dict[int, str]] = {
    ("poll", "attach", "advance"): {0: "registered"}}

STATES = ("smaller-seq-later", "smaller-seq-first", "after-growth", "quiet")


def needs(ops: tuple[str, ...], i: int) -> str | None:
    if ops[i] in ANY_TIME:
        return None
    return NEEDS_IN.get(ops, {}).get(i, NEEDS.get(ops[i], "attached"))


def states_for(ops: tuple[str, ...]) -> tuple[str, ...]:
    """The start states a probe runs from: all of them for a scan or a goal; for a reserve
    the ones where it grows and where it pops; else the two that differ most."""
    if {"poll", "goal_reached"} & set(ops):
        return STATES
    if "reserve" in ops:
        return ("smaller-seq-later", "smaller-seq-first", "after-growth")
    return ("smaller-seq-later", "after-growth")


def probe_name(ops: tuple[str, ...]) -> str:
    return " | ".join(ops)


def build(rnd: Any, ops: tuple[str, ...], state: str, op_type: Callable[..., Any],
          profile: str) -> list[list[Any]]:
    """Brings ``rnd`` (a races._Round) into ``state`` for the probe ``ops`` and returns the
    racing threads' operation lists."""
    Op = op_type
    n = len(ops)
    role = [f"t{i}" for i in range(n)]
    need = [needs(ops, i) for i in range(n)]
    goals: dict[str, int] = {}

    attached: set[int] = set()

    def register_roles(attach_if: Callable[[int], bool]) -> None:
        for i in range(n):
            if need[i] in ("attached", "registered"):
                rnd.thread_state(role[i], i)
        for i in range(n):
            if need[i] == "attached" and attach_if(i):
                rnd.step(Op("attach", role[i]), i)
                attached.add(i)

    def late_roles() -> None:
        for i in range(n):
            if need[i] == "attached" and i not in attached:
                rnd.step(Op("attach", role[i]), i)
                attached.add(i)
            elif need[i] in ("bare", "reserved"):
                rnd.thread_state(role[i], i, register=False)
                if need[i] == "reserved":
                    rnd.pending[role[i]] = rnd.step(Op("reserve"), i)

    if state in ("smaller-seq-later", "smaller-seq-first"):
        low = (lambda i: i >= 1) if state == "smaller-seq-later" else (lambda i: i == 0)
        # The growth pushes 0 .. size-1, so reserve pops the highest free index first
        # (S-FREE-2): x, registered last, gets the lowest index of them.
        register_roles(low)                            # attached at wr_seq 1: the lower seqs
        rnd.thread_state("x")                          # an earlier slot, a higher seq
        index = rnd.model.snapshot().threads
        if any(need[i] == "attached" and low(i)
               and index[rnd.model_handle[role[i]]] < index[rnd.model_handle["x"]]
               for i in range(n)):
            raise RuntimeError("set-up: the low seq is not in a later slot")
        rnd.step(Op("advance"))
        rnd.step(Op("attach", "x"))
        late_roles()                                   # the others, attached at 3
        goals["poll"] = goals["goal_reached"] = rnd.step(Op("advance"))
        for i in sorted(attached):
            if not low(i):                             # at wr_seq: only x and the low hold
                rnd.step(Op("quiescent_state", role[i]), i)
        rnd.fill(0 if state == "smaller-seq-later" else 1)
    elif state == "after-growth":
        for w in range(1, n):                          # threads that exist before it
            rnd.thread_state(f"w{w}", w)
        rnd.thread_state("p", 0, attach=True)
        first_goal = rnd.step(Op("advance"))
        rnd.step(Op("quiescent_state", "p"), 0)
        rnd.step(Op("poll", "p", (first_goal,)), 0)    # worker 0's poll, completed
        rnd.fill(0)
        rnd.thread_state("q", n - 1, attach=True)      # grows: q in a slot growth created
        register_roles(lambda i: True)
        late_roles()
        goals["poll"] = rnd.step(Op("advance"))        # q holds it back
        goals["goal_reached"] = first_goal             # reached by worker 0's poll
        rnd.step(Op("quiescent_state", "p"), 0)
    else:                                              # quiet
        register_roles(lambda i: True)
        late_roles()
        rnd.step(Op("advance"))
        for i in range(n):
            if need[i] == "attached":
                rnd.step(Op("quiescent_state", role[i]), i)
        goals["poll"] = goals["goal_reached"] = rnd.model.wr_seq
    lists = []
    for i, op in enumerate(ops):
        if op in ANY_TIME:
            lists.append([Op(op)])
            continue
        args: tuple = ()
        if op in ("poll", "goal_reached"):
            args = (goals[op],)
        elif op == "register":
            args = (rnd.pending[role[i]],)
        elif op == "set_bookkeeping":
            args = (1, 2, 3, True)
        lists.append([Op(op, role[i], args)])
    return lists
