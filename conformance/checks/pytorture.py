"""The torture protocol driven from Python threads through the Cython bridge.

The same roles as the C torture (reference_c/harness/torture.c), at Python speed: readers hold an
object across a read-side section and check it has not been reclaimed; writers replace it,
retire the old one with a goal from ``advance()`` and reclaim it only when ``poll()`` allows.
On a free-threaded build the threads run truly in parallel; elsewhere they interleave at the
bridge, which releases the GIL on every call, and in Python code where the interpreter switches
threads (forced every microsecond for the run, ``sys.setswitchinterval``).

Race probes run first (conformance.checks.races): two threads inside operations at once (two
advances, two reserves of which one grows, a reserve beside an unregister, register, attach,
detach or quiescent state, two polls, a poll beside a detach, goal_reached beside a poll, a
batching goal beside an advance, an attach beside an advance), each round on a fresh
interpreter, judged by linearizability against the model.  Stepped rounds preempt one thread at
each line of the implementation's Python code in turn (where it holds none of its own locks),
so a Python-level race shows whatever the build; free rounds release both threads together.

Any implementation that declares ``thread_safe = True`` (docs/adapter-protocol.md) can be
driven this way.  Every operation is recorded with two tickets from one atomic counter and the
history is judged by the contract oracle (conformance.checks.contract), which names S-SAFE-1 or
S-SAFE-2 when a poll answered wrongly, whether or not a reader happened to see the object
reclaimed.

The run starts with grace-period probes (``probe_rounds``): the same threads, but driven
through a fixed interleaving by handing each reader its next operation and waiting for it to
finish (no clock, no sleeping).  In each probe round some readers hold the retired object
across the goal (attached, no quiescent state), some pass a quiescent state after it, some stay
detached, and some attach only after the goal was taken; the prober polls after every step.
First each reader is held alone (so a scan that skips one slot is caught whatever its index),
then the modes are drawn from the seed.  A poll that answers true while a holder has not moved
on, or false once every reader attached at the goal has, is certain to be in the history, so a
grace-period bug of that kind is found in every run, not by luck of the scheduler.
"""

from __future__ import annotations

import functools
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..drivers.taskthread import TaskThread
from . import contract, races

#: Rounds of each race probe by default: one sweep of every single preemption (both threads,
#: lines 1 .. races.LINES) of the first setup variant.
RACE_ROUNDS = 2 * races.LINES


class _Object:
    __slots__ = ("serial", "reclaimed")

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.reclaimed = False


def python_torture(implementation: Any, *, readers: int = 4, writers: int = 2,
                   seconds: float = 2.0, seed: int = 1, updates: int = 0,
                   progress: Callable[[dict], None] | None = None,
                   progress_interval: float = 1.0,
                   probe_rounds: int | None = None,
                   race_rounds: int = RACE_ROUNDS,
                   switch_interval: float | None = races.FORCED_SWITCH_INTERVAL
                   ) -> tuple[int, dict]:
    """Returns (status, stats) like the C torture: 0 ok, 1 errors, 2 nothing reclaimed.

    Stops after ``seconds``, or once ``updates`` updates were made when ``updates`` > 0.
    ``race_rounds`` rounds of every race probe run first (conformance.checks.races; 0: none),
    then ``probe_rounds`` grace-period probes (default: ``readers + 8``; 0: none).  On a GIL
    build the whole run forces thread switches every ``switch_interval`` seconds (None: the
    interpreter's own interval), restored afterwards; ``stats["evidence"]`` says how strong a
    clean result is on this build.  ``stats["contract"]`` is the contract oracle's judgement of
    the recorded history, with the race probes' failures added; ``stats["races"]`` has the
    probes' own counts.
    """
    race_result, race_error = None, None
    with races.switching(switch_interval) as switched:
        if race_rounds > 0:
            try:
                race_result = races.race_probes(implementation, race_rounds)
            except Exception as exc:  # noqa: BLE001 - an implementation that raised
                race_error = f"race probes: {type(exc).__name__}: {exc}"
        status, stats = _torture(implementation, readers=readers, writers=writers,
                                 seconds=seconds, seed=seed, updates=updates,
                                 progress=progress, progress_interval=progress_interval,
                                 probe_rounds=probe_rounds)
    stats["evidence"] = races.evidence(
        switched.interval, race_result.stats["stepped"] if race_result is not None else 0)
    stats["gil"] = races.gil_enabled()
    if race_result is not None:
        stats["races"] = {"rounds": race_result.rounds, "by_kind": race_result.by_kind,
                          "errors": race_result.errors, "caught_at": race_result.caught_at,
                          **race_result.stats}
        for fact, details in race_result.errors.items():
            stats["contract"]["errors"].setdefault(fact, []).extend(details)
        if race_result.errors:
            status = 1
    if race_error is not None:
        stats["harness_errors"].append(race_error)
        status = 1
    return status, stats


def _torture(implementation: Any, *, readers: int, writers: int, seconds: float, seed: int,
             updates: int, progress: Callable[[dict], None] | None, progress_interval: float,
             probe_rounds: int | None) -> tuple[int, dict]:
    if seconds <= 0 and updates <= 0:
        raise ValueError("give seconds > 0 or updates > 0")
    if readers < 1 or writers < 1:
        raise ValueError("give at least one reader and one writer")
    if probe_rounds is None:
        probe_rounds = readers + 8
    # Tickets from one atomic counter, so the history's order is consistent with real time.
    # next() on an itertools.count is one atomic step: under the GIL, and on free-threaded
    # builds a compare-exchange loop (Modules/itertoolsmodule.c, count_next).  Not a shared
    # lock: every operation takes two tickets, and on 3.13t each contended acquire spins 40
    # sched_yield() calls before it parks, which starves the threads beside busy processes.
    tickets = itertools.count(1)
    ids = itertools.count(1)                # thread ids for the history, the same way
    history: list[contract.Event] = []
    history_lock = threading.Lock()

    def tick() -> int:
        return next(tickets)

    def logged(log: list, tid: int, kind: int, call: Callable[[], Any], value: int = 0) -> Any:
        before = tick()
        answer = call()
        after = tick()
        if kind in (contract.GOAL_ADVANCE, contract.GOAL_NEXT):
            value = answer
        log.append((before, after, tid, kind, value, int(bool(answer))
                    if kind == contract.POLL else 0))
        return answer

    live_allocations = getattr(implementation, "live_allocations", None)
    blocks_before = live_allocations() if live_allocations is not None else None
    interp = implementation.new_interpreter()
    current = [_Object(0)]
    swap_lock = threading.Lock()            # writers only; readers never take it
    stop = threading.Event()
    counts = {"reads": 0, "updates": 0, "frees": 0, "errors_reclaimed": 0, "max_pending": 0,
              "probe_rounds": 0, "probe_polls": 0}
    counts_lock = threading.Lock()
    errors: list[BaseException] = []

    def register(log: list) -> tuple[Any, int]:
        handle = interp.new_thread_state()
        interp.register(handle, interp.reserve())
        tid = next(ids)
        logged(log, tid, contract.ATTACH, lambda: interp.attach(handle))
        return handle, tid

    def retire(handle: Any, tid: int, log: list) -> None:
        logged(log, tid, contract.DETACH, lambda: interp.detach(handle))
        interp.unregister(handle)
        interp.delete_thread_state(handle)
        with history_lock:
            history.extend(log)

    def reader(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        log: list = []
        handle, tid = register(log)
        reads = bad = 0
        try:
            while not stop.is_set():
                held = current[0]
                for _ in range(rng.randint(1, 8)):
                    if held.reclaimed or current[0].reclaimed:
                        bad += 1
                    reads += 2
                if held.reclaimed:
                    bad += 1
                if reads >= 4096:       # publish now and then: progress shows real reads
                    with counts_lock:
                        counts["reads"] += reads
                        counts["errors_reclaimed"] += bad
                    reads = bad = 0
                if rng.random() < 0.7:
                    logged(log, tid, contract.QS, lambda: interp.quiescent_state(handle))
                elif rng.random() < 0.1:
                    logged(log, tid, contract.DETACH, lambda: interp.detach(handle))
                    logged(log, tid, contract.ATTACH, lambda: interp.attach(handle))
        except BaseException as exc:  # reported after the run
            errors.append(exc)
        finally:
            retire(handle, tid, log)
            with counts_lock:
                counts["reads"] += reads
                counts["errors_reclaimed"] += bad

    def writer(index: int) -> None:
        log: list = []
        handle, tid = register(log)
        pending: deque[tuple[int, _Object]] = deque()
        try:
            while not stop.is_set():
                with swap_lock:
                    counts["updates"] += 1
                    if updates and counts["updates"] >= updates:
                        stop.set()
                    fresh = _Object(counts["updates"])
                    old, current[0] = current[0], fresh
                pending.append((logged(log, tid, contract.GOAL_ADVANCE, interp.advance), old))
                logged(log, tid, contract.QS, lambda: interp.quiescent_state(handle))
                while pending and logged(log, tid, contract.POLL,
                                         lambda: interp.poll(handle, pending[0][0]),
                                         pending[0][0]):
                    pending.popleft()[1].reclaimed = True
                    with counts_lock:
                        counts["frees"] += 1
                with counts_lock:
                    counts["max_pending"] = max(counts["max_pending"], len(pending))
        except BaseException as exc:
            errors.append(exc)
        finally:
            retire(handle, tid, log)

    started = time.monotonic()
    if probe_rounds > 0:
        try:
            _probe(interp, readers, probe_rounds, random.Random(seed * 7919 + 17), register,
                   retire, logged, counts, progress)
        except BaseException as exc:    # an implementation that raised: reported below
            errors.append(exc)
    threads = ([threading.Thread(target=reader, args=(i,)) for i in range(readers)]
               + [threading.Thread(target=writer, args=(i,)) for i in range(writers)])
    for thread in threads if not errors else ():
        thread.start()
    next_progress = started + progress_interval
    while (not stop.is_set() and (seconds <= 0 or time.monotonic() - started < seconds)
           and not errors):
        time.sleep(0.01)
        if progress is not None and time.monotonic() >= next_progress:
            next_progress += progress_interval
            with counts_lock:
                progress(dict(counts, elapsed=time.monotonic() - started))
    stop.set()
    for thread in threads if not errors else ():
        thread.join()
    interp.close()
    resources = None
    if live_allocations is not None:
        blocks_after = live_allocations()
        if blocks_after != blocks_before:
            resources = (f"live allocations went from {blocks_before} to {blocks_after} over "
                         "the run (threads reserved, the array grew, everything was "
                         "unregistered and the interpreter closed): S-RES-1")
    history.sort(key=lambda event: event[0])
    judged = contract.judge(history, advances=True)       # one interpreter
    stats = dict(counts, elapsed=time.monotonic() - started,
                 harness_errors=[f"{type(e).__name__}: {e}" for e in errors],
                 contract={"events": judged.events, "safety_checked": judged.safety_checked,
                           "liveness_checked": judged.liveness_checked,
                           "errors": judged.errors},
                 resources=resources)
    if errors or counts["errors_reclaimed"] or judged.errors or resources:
        return 1, stats
    return (0 if counts["frees"] else 2), stats


# --- grace-period probes -------------------------------------------------------------------

HOLD, PASS, DETACHED, LATE = "hold", "pass", "detached", "late"


def _modes(round_no: int, readers: int, rng: random.Random) -> list[str]:
    if round_no < readers:          # each reader held alone, every other one attached
        return [HOLD if i == round_no else PASS for i in range(readers)]
    if round_no == readers:         # nobody holds: the goal is reached once all have passed
        return [PASS] * readers
    if round_no == readers + 1:     # nobody attached at the goal: reached at once
        return [DETACHED if i % 2 else LATE for i in range(readers)]
    return [rng.choice((HOLD, HOLD, PASS, DETACHED, LATE)) for _ in range(readers)]


def _probe(interp: Any, readers: int, rounds: int, rng: random.Random, register: Callable,
           retire: Callable, logged: Callable, counts: dict,
           progress: Callable[[dict], None] | None) -> None:
    prober_log: list = []
    handle, tid = register(prober_log)
    workers: list[TaskThread] = []
    logs: list[list] = [[] for _ in range(readers)]
    states: list[tuple[Any, int]] = []
    attached = [True] * readers
    held: list[_Object | None] = [None] * readers
    pending: deque[tuple[int, _Object]] = deque()
    current = _Object(-1)
    try:
        for i in range(readers):
            workers.append(TaskThread())
            states.append(workers[i].run(functools.partial(register, logs[i])))

        def op(i: int, kind: int) -> None:
            reader_handle, reader_tid = states[i]
            call = {contract.QS: interp.quiescent_state, contract.ATTACH: interp.attach,
                    contract.DETACH: interp.detach}[kind]
            workers[i].run(lambda: logged(logs[i], reader_tid, kind,
                                          lambda: call(reader_handle)))
            if kind != contract.QS:
                attached[i] = kind == contract.ATTACH

        def poll_all() -> None:
            while pending:
                counts["probe_polls"] += 1
                goal = pending[0][0]
                if not logged(prober_log, tid, contract.POLL,
                              functools.partial(interp.poll, handle, goal), goal):
                    return
                pending.popleft()[1].reclaimed = True
                counts["frees"] += 1

        def release(i: int, kind: int) -> None:
            holding = held[i]
            if holding is not None and holding.reclaimed:
                counts["errors_reclaimed"] += 1
            held[i] = None
            op(i, kind)

        for round_no in range(rounds):
            modes = _modes(round_no, readers, rng)
            for i, mode in enumerate(modes):        # before the goal
                if mode in (HOLD, PASS):
                    if not attached[i]:
                        op(i, contract.ATTACH)
                    elif mode == HOLD and rng.random() < 0.5:
                        op(i, contract.QS)
                    held[i] = current if mode == HOLD else None
                elif attached[i]:
                    op(i, contract.DETACH)
            old, current = current, _Object(round_no)
            counts["updates"] += 1
            pending.append((logged(prober_log, tid, contract.GOAL_ADVANCE, interp.advance),
                            old))
            logged(prober_log, tid, contract.QS, lambda: interp.quiescent_state(handle))
            poll_all()
            for i, mode in enumerate(modes):        # after the goal
                if mode == PASS:
                    op(i, contract.QS if rng.random() < 0.7 else contract.DETACH)
                elif mode == LATE:
                    op(i, contract.ATTACH)
                    held[i] = current
            poll_all()
            holders = [i for i, mode in enumerate(modes) if mode == HOLD]
            rng.shuffle(holders)
            for i in holders:
                release(i, contract.QS if rng.random() < 0.7 else contract.DETACH)
                poll_all()
            for i, mode in enumerate(modes):
                if mode == LATE:
                    release(i, contract.QS)
            counts["probe_rounds"] += 1
            counts["max_pending"] = max(counts["max_pending"], len(pending))
        if progress is not None:
            progress(dict(counts, elapsed=0.0))
    finally:
        for i, worker in enumerate(workers):
            try:
                if i < len(states):
                    if not attached[i]:
                        op(i, contract.ATTACH)
                    worker.run(functools.partial(retire, *states[i], logs[i]))
            finally:
                worker.close()
        retire(handle, tid, prober_log)
