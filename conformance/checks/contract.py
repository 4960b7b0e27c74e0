"""The grace-period contract, judged on the event history of a concurrent run.

Independent of CPython's algorithm (no sequence numbers, no scan): it holds for any correct QSBR
or epoch-based scheme, so an implementation with another algorithm can be told "safe" even
where it is not "CPython-exact".

History: one record per operation of a thread state, ``(before, after, tstate, kind, value,
result)``.  ``before`` and ``after`` are tickets drawn from ONE global counter (an atomic
fetch-and-add in C, a locked counter in Python) immediately before the operation starts and
immediately after it returns, in the thread that performs it.  Tickets are totally ordered,
and the ticket increments synchronize with each other, so ``a.after < b.before`` proves that
operation ``a`` happened before ``b``; operations whose ticket intervals overlap may have taken
effect in either order.  Each thread state's records are in its program order.

Kinds: ATTACH, DETACH, QS (quiescent state), GOAL_ADVANCE (value: the goal advance()
returned), GOAL_NEXT (value: a batching goal, shared_next/deferred_advance), POLL (value: the
goal, result: the answer).  A writer frees, oldest first, the objects whose goal poll said was
reached: its true polls consume its goals in the order it took them.

The judgement claims only what the tickets prove (no false alarm from a logging race):

- safety (S-SAFE-1): a poll that answered true for a goal taken at G is wrong if some thread
  state was certainly attached at G (its last operation that certainly precedes G left it
  attached) and certainly did not pass a quiescent state or detach between G and the poll (its
  next QS/DETACH starts after the poll returned);
- liveness (S-SAFE-2, goals from advance only; a batching goal is reached only once somebody
  advances): a poll that answered false is wrong if every thread state that may have been
  attached at G certainly passed a quiescent state or detached after G and before the poll.
- advances (S-ADV-1, with ``advances=True``, for the history of one interpreter): advance() is
  one atomic read-modify-write of wr_seq, so no two advances
  return the same goal, and an advance that certainly returned before another started returned
  the earlier goal (:func:`judge_advances` also checks that wr_seq moved by exactly 2 per
  advance when nothing else wrote it).
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

ATTACH, DETACH, QS, GOAL_ADVANCE, GOAL_NEXT, POLL = 1, 2, 3, 4, 5, 6
KIND_NAMES = {ATTACH: "attach", DETACH: "detach", QS: "quiescent_state",
              GOAL_ADVANCE: "advance", GOAL_NEXT: "batching goal", POLL: "poll"}
Event = tuple[int, int, int, int, int, int]         # before, after, tstate, kind, value, result
RECORD = struct.Struct("<6Q")


@dataclass
class ContractResult:
    events: int = 0
    safety_checked: int = 0         # true polls judged
    liveness_checked: int = 0       # false polls of advance goals judged
    errors: dict[str, list[str]] = field(default_factory=dict)

    def fail(self, fact: str, detail: str) -> None:
        details = self.errors.setdefault(fact, [])
        if len(details) < 3:
            details.append(detail)

    @property
    def ok(self) -> bool:
        return not self.errors


class _Thread:
    """One thread state's operations, in program order."""

    def __init__(self) -> None:
        self.ops: list[Event] = []

    def prepare(self) -> None:
        self.afters = [op[1] for op in self.ops]
        attached = False
        self.attached_after: list[bool] = []
        for op in self.ops:
            if op[3] == ATTACH:
                attached = True
            elif op[3] == DETACH:
                attached = False
            self.attached_after.append(attached)
        # next_release[i]: index of the first QS/DETACH at or after i (len(ops) if none)
        self.next_release = [len(self.ops)] * (len(self.ops) + 1)
        for i in range(len(self.ops) - 1, -1, -1):
            self.next_release[i] = i if self.ops[i][3] in (QS, DETACH) else \
                self.next_release[i + 1]
        self.first = self.ops[0][0] if self.ops else 0
        self.last = self.ops[-1][1] if self.ops else 0

    def last_before(self, ticket: int) -> int:
        """Index of the last operation that returned before ``ticket`` (-1 if none)."""
        return bisect_left(self.afters, ticket) - 1


def judge(events: list[Event], *, advances: bool = False) -> ContractResult:
    """Judge a history.  ``advances``: the history is of ONE interpreter, so its advance goals
    are judged too (S-ADV-1); a history that spans several interpreters (the C ABI torture's
    rounds) repeats goals legitimately."""
    result = ContractResult(events=len(events))
    threads: dict[int, _Thread] = {}
    for event in events:
        threads.setdefault(event[2], _Thread()).ops.append(event)
    for thread in threads.values():
        thread.prepare()
    by_first = sorted(threads.items(), key=lambda item: item[1].first)
    if advances:
        _check_advances(result, events)

    def live_during(start: int, end: int) -> list[tuple[int, _Thread]]:
        return [(tid, t) for tid, t in by_first if t.first < end and t.last > start]

    for tid, writer in threads.items():
        queue: list[Event] = []
        for op in writer.ops:
            kind = op[3]
            if kind in (GOAL_ADVANCE, GOAL_NEXT):
                queue.append(op)
                continue
            if kind != POLL or not queue or op[4] != queue[0][4]:
                continue
            goal = queue[0]
            if op[5]:
                queue.pop(0)
                result.safety_checked += 1
                _check_safety(result, tid, goal, op, live_during(goal[0], op[1]))
            elif goal[3] == GOAL_ADVANCE:
                result.liveness_checked += 1
                _check_liveness(result, goal, op, live_during(0, op[0]))
    return result


def _check_advances(result: ContractResult, events: list[Event]) -> None:
    advances = sorted((e for e in events if e[3] == GOAL_ADVANCE), key=lambda e: e[0])
    first: dict[int, Event] = {}
    for event in advances:
        twin = first.setdefault(event[4], event)
        if twin is not event:
            result.fail("S-ADV-1",
                        f"two advances returned the same goal {event[4]} (tickets "
                        f"{twin[0]}-{twin[1]} and {event[0]}-{event[1]}): an increment of "
                        "wr_seq was lost or a goal was read outside the atomic update")
    by_after = sorted(advances, key=lambda e: e[1])
    for earlier, later in zip(by_after, by_after[1:], strict=False):
        if earlier[1] < later[0] and not _lt(earlier[4], later[4]):
            result.fail("S-ADV-1",
                        f"advance at tickets {earlier[0]}-{earlier[1]} returned {earlier[4]}, "
                        f"and an advance that started after it returned (tickets "
                        f"{later[0]}-{later[1]}) returned {later[4]}, not a later goal")


def _lt(a: int, b: int) -> bool:
    return ((a - b) & ((1 << 64) - 1)) >> 63 == 1      # QSBR_LT: (int64_t)(a - b) < 0


def judge_advances(goals: list[int], wr_before: int,
                   wr_after: int | None = None) -> ContractResult:
    """S-ADV-1 for advances that ran at once from ``wr_seq == wr_before``: distinct goals,
    and, when ``wr_after`` is given (nothing else wrote wr_seq), exactly the goals
    ``wr_before + 2``, ``+ 4``, ... and ``wr_after == wr_before + 2 * len(goals)``."""
    result = ContractResult(events=len(goals))
    mask = (1 << 64) - 1
    if len(set(goals)) != len(goals):
        result.fail("S-ADV-1", f"advances run at once returned goals {sorted(goals)}: the "
                               "same goal twice (a lost increment, or the goal read outside "
                               "the atomic update)")
    if wr_after is not None:
        want = sorted((wr_before + 2 * k) & mask for k in range(1, len(goals) + 1))
        moved = (wr_after - wr_before) & mask
        if moved != 2 * len(goals) or sorted(goals) != want:
            result.fail("S-ADV-1", f"{len(goals)} advance(s) run at once from wr_seq "
                                   f"{wr_before} returned {sorted(goals)} and left wr_seq "
                                   f"{wr_after} (moved by {moved}, not {2 * len(goals)})")
    return result


def _check_safety(result: ContractResult, poller: int, goal: Event, poll: Event,
                  candidates: list[tuple[int, _Thread]]) -> None:
    for tid, thread in candidates:
        k = thread.last_before(goal[0])
        if k < 0 or not thread.attached_after[k]:
            continue
        release = thread.next_release[k + 1]
        if release < len(thread.ops) and thread.ops[release][0] < poll[1]:
            continue                # it may have passed a quiescent state in time
        attach = next(op for op in reversed(thread.ops[:k + 1]) if op[3] in (ATTACH, QS))
        result.fail("S-SAFE-1",
                    f"poll(goal {goal[4]}) answered true (tickets {poll[0]}-{poll[1]}) for "
                    f"a goal taken by {KIND_NAMES[goal[3]]} at tickets {goal[0]}-{goal[1]}, "
                    f"but thread state {tid} was attached then (since its "
                    f"{KIND_NAMES[attach[3]]} at {attach[0]}-{attach[1]}) and passed no "
                    f"quiescent state nor detach before the poll returned")
        return


def _check_liveness(result: ContractResult, goal: Event, poll: Event,
                    candidates: list[tuple[int, _Thread]]) -> None:
    for _tid, thread in candidates:
        k = thread.last_before(goal[0])
        maybe_attached = (k >= 0 and thread.attached_after[k]) or (
            k + 1 < len(thread.ops) and thread.ops[k + 1][3] == ATTACH
            and thread.ops[k + 1][0] < goal[1])
        if not maybe_attached:
            continue
        # a QS/DETACH that certainly started after the goal was taken and returned before
        # the poll started
        i = bisect_left(thread.afters, goal[1])
        moved_on = False
        while i < len(thread.ops) and thread.ops[i][1] < poll[0]:
            op = thread.ops[i]
            if op[3] in (QS, DETACH) and op[0] > goal[1]:
                moved_on = True
                break
            i += 1
        if not moved_on:
            return
    result.fail("S-SAFE-2",
                f"poll(goal {goal[4]}) answered false (tickets {poll[0]}-{poll[1]}) although "
                f"every thread attached when advance() returned that goal (tickets "
                f"{goal[0]}-{goal[1]}) had since passed a quiescent state or detached")


def read_file(path: str) -> list[Event]:
    with open(path, "rb") as handle:
        data = handle.read()
    usable = len(data) - len(data) % RECORD.size
    return [tuple(record) for record in RECORD.iter_unpack(data[:usable])]  # type: ignore[misc]


def judge_file(path: str) -> ContractResult:
    events = read_file(path)
    events.sort(key=lambda e: e[0])     # per-thread order is kept: tickets grow in each thread
    return judge(events)


# --- the state's invariants, quiesced -------------------------------------------------------

def state_invariants(snap: Any) -> dict[str, list[str]]:
    """What a quiesced snapshot (no operation in flight) must satisfy, by the fact a break
    names: every slot either on the freelist or allocated, never both, never twice on it
    (S-FREE-3, S-UNREG-1: a lost or doubled push; S-FREE-1, S-RES-1: a double pop); one thread
    state per slot and each registered thread state's slot owned by it (S-REG-1, S-RES-1);
    wr_seq odd, rd_seq not after wr_seq, and every attached seq between them (S-ADV-1,
    S-POLL-2, S-ATTACH-1/S-QS-1)."""
    out: dict[str, list[str]] = {}

    def fail(facts: tuple[str, ...], detail: str) -> None:
        for fact in facts:
            details = out.setdefault(fact, [])
            if len(details) < 3:
                details.append(detail)

    slots = list(snap.slots)
    freelist = list(snap.freelist)
    size = snap.size
    wr, rd = snap.wr_seq, snap.rd_seq
    threads = dict(snap.threads)
    if len(slots) != size:
        fail(("S-SLOT-3",), f"the snapshot has {len(slots)} slots for size {size}")
    twice = sorted({i for i in freelist if freelist.count(i) > 1})
    if twice:
        fail(("S-FREE-3", "S-UNREG-1"), f"slots {twice} are on the freelist twice "
                                        f"(freelist {freelist}): a push was doubled")
    allocated = {i for i, s in enumerate(slots) if s.allocated}
    both = sorted(allocated & set(freelist))
    if both:
        fail(("S-FREE-1", "S-RES-1"), f"slots {both} are allocated and on the freelist: a pop "
                                      "was lost or a slot handed out twice")
    lost = sorted(set(range(len(slots))) - allocated - set(freelist))
    if lost:
        fail(("S-FREE-3", "S-UNREG-1"), f"slots {lost} are neither allocated nor on the "
                                        "freelist: a push was lost")
    outside = sorted(i for i in freelist if not 0 <= i < len(slots))
    if outside:
        fail(("S-FREE-2",), f"the freelist holds {outside}, outside the array of {size}")
    owners: dict[int, list] = {}
    for handle, slot in threads.items():
        if isinstance(slot, int) and not isinstance(slot, bool):
            owners.setdefault(slot, []).append(handle)
            if not 0 <= slot < len(slots):
                fail(("S-REG-1",), f"thread state {handle!r} is registered to slot {slot}, "
                                   "outside the array")
            elif slots[slot].owner != handle or slot not in allocated:
                fail(("S-REG-1",), f"thread state {handle!r} is registered to slot {slot}, "
                                   f"whose owner is {slots[slot].owner!r}"
                                   + ("" if slot in allocated else " and which is free"))
    for slot, handles in owners.items():
        if len(handles) > 1:
            fail(("S-RES-1", "S-REG-1"), f"thread states {handles!r} share slot {slot}: "
                                         "it was handed out twice")
    if wr % 2 != 1:
        fail(("S-ADV-1",), f"wr_seq {wr} is even")
    if not _leq(rd, wr):
        fail(("S-POLL-2",), f"rd_seq {rd} is after wr_seq {wr}")
    for i, slot in enumerate(slots):
        seq = slot.seq
        if seq and slot.owner is not None and not (_leq(seq, wr)):
            fail(("S-ATTACH-1", "S-QS-1"), f"slot {i}'s seq {seq} is after wr_seq {wr}")
        elif seq and slot.owner is not None and _lt(seq, rd):
            fail(("S-POLL-2",), f"rd_seq {rd} passed slot {i}'s seq {seq}, still attached")
    return out


def _leq(a: int, b: int) -> bool:
    return not _lt(b, a)
