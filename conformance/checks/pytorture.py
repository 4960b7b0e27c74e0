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
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from ..drivers.taskthread import TaskThread
from . import contract, races, stepping

#: The race probes' cap on preemption points per thread (every single preemption up to it, of
#: every probe, from every start state).
RACE_ROUNDS = races.POINTS
#: How long a torture thread is waited for once the run has failed (it may hang).
JOIN_SECONDS = 30.0
#: Updates between two state checks (every thread quiesced, the snapshot's invariants).
ROUND_UPDATES = 50


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
                   switch_interval: float | None = races.FORCED_SWITCH_INTERVAL,
                   churners: int = 1, round_updates: int = ROUND_UPDATES,
                   race_probe: str | None = None,
                   replay: Callable[[str], str] | None = None
                   ) -> tuple[int, dict]:
    """Returns (status, stats) like the C torture: 0 ok, 1 errors, 2 nothing reclaimed.

    Stops after ``seconds``, or once ``updates`` updates were made when ``updates`` > 0.
    ``race_rounds`` rounds of every race probe run first (conformance.checks.races; 0: none),
    then ``probe_rounds`` grace-period probes (default: ``readers + 8``; 0: none).  On a GIL
    build the whole run forces thread switches every ``switch_interval`` seconds (None: the
    interpreter's own interval), restored afterwards; ``stats["evidence"]`` says how strong a
    clean result is on this build.  ``stats["contract"]`` is the contract oracle's judgement of
    the recorded history, with the race probes' and the state checks' failures added;
    ``stats["races"]`` has the probes' own counts.  ``churners`` threads reserve, register,
    attach, pass a quiescent state, detach, unregister and delete a thread state in a loop
    while readers run; after every ``round_updates`` updates every thread is held between two
    operations, detached (quiesced), and the snapshot's invariants are checked
    (conformance.checks.contract.state_invariants).  ``race_probe`` (``KIND@STATE@SCHEDULE``):
    run that one race-probe round only (a failure's replay); ``replay(spec)``: the command
    that reruns a probe, for the failures' details.
    """
    race_result, race_error = None, None
    with races.switching(switch_interval) as switched:
        if race_rounds > 0:
            try:
                started = time.monotonic()

                def probed(rounds: int) -> None:
                    if progress is not None:    # progress while the probes run (no updates)
                        progress({"reads": 0, "updates": 0, "frees": 0, "max_pending": 0,
                                  "elapsed": time.monotonic() - started,
                                  "race_rounds": rounds})
                race_result = races.race_probes(implementation, race_rounds, probe=race_probe,
                                                replay=replay, progress=probed)
            except Exception as exc:  # noqa: BLE001 - a harness error (a set-up difference)
                race_error = (f"race probes: {type(exc).__name__}: {exc}\n"
                              + traceback.format_exc(limit=-8))
        status, stats = _torture(implementation, readers=readers, writers=writers,
                                 seconds=seconds, seed=seed, updates=updates,
                                 progress=progress, progress_interval=progress_interval,
                                 probe_rounds=probe_rounds, churners=churners,
                                 round_updates=round_updates)
    stats["evidence"] = races.evidence(
        switched.interval, race_result.stats["stepped"] if race_result is not None else 0)
    stats["gil"] = races.gil_enabled()
    stats["seed"] = seed
    if race_result is not None:
        profile = str(getattr(implementation, "profile", "3.13"))
        covered, missing = races.coverage(profile, race_result.by_kind)
        stats["races"] = {"rounds": race_result.rounds, "by_kind": race_result.by_kind,
                          "errors": race_result.errors, "caught_at": race_result.caught_at,
                          "replay": race_result.replay, "tracebacks": race_result.tracebacks,
                          "escaped": race_result.escaped[:5],
                          "pairs_covered": len(covered), "pairs": len(covered) + len(missing),
                          "pairs_not_covered": missing,
                          "escape_seconds": stepping.ESCAPE_SECONDS, **race_result.stats}
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
             probe_rounds: int | None, churners: int = 0,
             round_updates: int = 0) -> tuple[int, dict]:
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
        answer = _charged(_KIND_FACT[kind], contract.KIND_NAMES[kind], call)
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
              "probe_rounds": 0, "probe_polls": 0, "churn_cycles": 0, "state_checks": 0}
    state_errors: dict[str, list[str]] = {}
    gate = _Gate()
    counts_lock = threading.Lock()
    errors: list[BaseException] = []

    def register(log: list, tid: int | None = None) -> tuple[Any, int]:
        handle = _charged("S-SLOT-1", "new_thread_state", interp.new_thread_state)
        index = _charged("S-RES-1", "reserve", interp.reserve)
        _charged("S-REG-1", "register", lambda: interp.register(handle, index))
        tid = next(ids) if tid is None else tid
        logged(log, tid, contract.ATTACH, lambda: interp.attach(handle))
        return handle, tid

    def retire(handle: Any, tid: int, log: list) -> None:
        logged(log, tid, contract.DETACH, lambda: interp.detach(handle))
        _charged("S-UNREG-1", "unregister", lambda: interp.unregister(handle))
        _charged("S-SLOT-1", "delete_thread_state", lambda: interp.delete_thread_state(handle))
        with history_lock:
            history.extend(log)

    def parking(log: list, tid: int, handle: Any) -> tuple[Callable[[], Any], Callable[[], Any]]:
        return (functools.partial(logged, log, tid, contract.DETACH,
                                  functools.partial(interp.detach, handle)),
                functools.partial(logged, log, tid, contract.ATTACH,
                                  functools.partial(interp.attach, handle)))

    def reader(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        log: list = []
        handle, tid = register(log)
        reads = bad = 0
        try:
            while not stop.is_set():
                gate.checkpoint(*parking(log, tid, handle))
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
            gate.leave()

    def writer(index: int) -> None:
        log: list = []
        handle, tid = register(log)
        pending: deque[tuple[int, _Object]] = deque()
        try:
            while not stop.is_set():
                gate.checkpoint(*parking(log, tid, handle))
                with swap_lock:
                    counts["updates"] += 1
                    if updates and counts["updates"] >= updates:
                        stop.set()
                    elif round_updates and counts["updates"] % round_updates == 0:
                        gate.close()        # a round ends: every thread holds at its next
                                            # checkpoint, then the state is checked
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
            gate.leave()

    def churner(index: int) -> None:
        # A thread state's whole life, again and again, while the readers run: the registry
        # (reserve, register, unregister, the freelist) under concurrent use.
        # One history thread for all its cycles (a thread that detaches and attaches again,
        # to the contract oracle), so the history's size grows with operations only.
        tid = next(ids)
        try:
            while not stop.is_set():
                gate.checkpoint()
                log: list = []
                handle, tid = register(log, tid)
                logged(log, tid, contract.QS,
                       functools.partial(interp.quiescent_state, handle))
                retire(handle, tid, log)
                with counts_lock:
                    counts["churn_cycles"] += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            gate.leave()

    def check_state() -> None:
        counts["state_checks"] += 1
        for fact, details in contract.state_invariants(interp.snapshot()).items():
            for detail in details:
                entry = (f"state check after round {counts['state_checks']} (every thread "
                         f"quiesced, {counts['updates']} updates): {detail}")
                bucket = state_errors.setdefault(fact, [])
                if len(bucket) < 3:
                    bucket.append(entry)

    started = time.monotonic()
    if probe_rounds > 0:
        try:
            _probe(interp, readers, probe_rounds, random.Random(seed * 7919 + 17), register,
                   retire, logged, counts, progress)
        except BaseException as exc:    # an implementation that raised: reported below
            errors.append(exc)
    threads = ([threading.Thread(target=reader, args=(i,)) for i in range(readers)]
               + [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
               + [threading.Thread(target=churner, args=(i,)) for i in range(churners)])
    running = threads if not errors else []
    gate.active = len(running)
    for thread in running:
        thread.start()
    next_progress = started + progress_interval
    while (not stop.is_set() and (seconds <= 0 or time.monotonic() - started < seconds)
           and not errors and not state_errors):
        if gate.wait_quiesced(stop, 0.01):
            check_state()
            gate.open()
            continue
        if progress is not None and time.monotonic() >= next_progress:
            next_progress += progress_interval
            with counts_lock:
                progress(dict(counts, elapsed=time.monotonic() - started))
    stop.set()
    gate.open()
    for thread in running:
        # After an error a thread of the broken implementation may hang: then wait a bounded
        # time only (a liveness escape; the run has failed already).
        thread.join(JOIN_SECONDS if errors else None)
    if round_updates and not errors:
        check_state()                   # the end state: every thread gone
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
    for fact, details in state_errors.items():
        judged.errors.setdefault(fact, []).extend(details)
    for raised in errors:               # an operation that raised: its own fact
        if isinstance(raised, _Raised):
            judged.errors.setdefault(raised.fact, []).append(raised.detail)
    stats = dict(counts, elapsed=time.monotonic() - started,
                 harness_errors=[f"{type(e).__name__}: {e}" for e in errors
                                 if not isinstance(e, _Raised)],
                 contract={"events": judged.events, "safety_checked": judged.safety_checked,
                           "liveness_checked": judged.liveness_checked,
                           "errors": judged.errors},
                 resources=resources)
    if errors or counts["errors_reclaimed"] or judged.errors or resources:
        return 1, stats
    return (0 if counts["frees"] else 2), stats


_KIND_FACT = {contract.ATTACH: "S-ATTACH-1", contract.DETACH: "S-DETACH-1",
              contract.QS: "S-QS-1", contract.GOAL_ADVANCE: "S-ADV-1",
              contract.GOAL_NEXT: "S-DEF-1", contract.POLL: "S-POLL-1"}


class _Raised(Exception):
    """An operation of the torture raised: charged to that operation's fact."""

    def __init__(self, fact: str, operation: str, exc: BaseException) -> None:
        self.fact = fact
        trace = traceback.format_exception(type(exc), exc, exc.__traceback__)
        self.detail = (f"{operation} raised {type(exc).__name__}: {exc} in a torture thread "
                       "(not one of the protocol's errors); traceback:\n"
                       + "".join(trace[-6:]).rstrip())
        super().__init__(self.detail)


def _charged(fact: str, operation: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except _Raised:
        raise
    except Exception as exc:
        raise _Raised(fact, operation, exc) from exc


class _Gate:
    """Holds every torture thread between two of its operations while the main thread checks
    the state.  A writer closes it when a round ends; each thread calls checkpoint() at the top
    of its loop (it waits there while the gate is closed) and leave() once it is done (after
    its last operation); the main thread waits until every thread still running is held, checks
    the state, and opens the gate."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.active = 0
        self.held = 0
        self.closed = False

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def open(self) -> None:
        with self.cond:
            self.closed = False
            self.cond.notify_all()

    def checkpoint(self, park: Callable[[], Any] | None = None,
                   unpark: Callable[[], Any] | None = None) -> None:
        """Held while the gate is closed; ``park`` before (a thread detaches: a reserve that
        grows stops the world, which waits for every attached thread), ``unpark`` after."""
        if not self.closed:
            return
        if park is not None:
            park()
        with self.cond:
            self.held += 1
            self.cond.notify_all()
            while self.closed:
                self.cond.wait()
            self.held -= 1
        if unpark is not None:
            unpark()

    def leave(self) -> None:
        with self.cond:
            self.active -= 1
            self.cond.notify_all()

    def wait_quiesced(self, stop: threading.Event, timeout: float) -> bool:
        """Whether the gate is closed with every running thread held, waiting at most
        ``timeout`` for it (the caller's loop also watches the clock and the progress)."""
        with self.cond:
            return self.cond.wait_for(
                lambda: stop.is_set() or (self.closed and self.held >= self.active),
                timeout) and self.closed and not stop.is_set()


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
