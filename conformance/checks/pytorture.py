"""The torture protocol driven from Python threads through the Cython bridge.

The same roles as the C torture (reference_c/src/torture.c), at Python speed: readers hold an
object across a read-side section and check it has not been reclaimed; writers replace it,
retire the old one with a goal from ``advance()`` and reclaim it only when ``poll()`` allows.
On a free-threaded build the threads run truly in parallel; elsewhere they interleave at the
bridge, which releases the GIL on every call.

Any implementation that declares ``thread_safe = True`` (docs/adapter-protocol.md) can be
driven this way.  Every operation is recorded with two tickets from one locked counter and the
history is judged by the contract oracle (conformance.checks.contract), which names S-SAFE-1 or
S-SAFE-2 when a poll answered wrongly, whether or not a reader happened to see the object
reclaimed.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from . import contract


class _Object:
    __slots__ = ("serial", "reclaimed")

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.reclaimed = False


def python_torture(implementation: Any, *, readers: int = 4, writers: int = 2,
                   seconds: float = 2.0, seed: int = 1, updates: int = 0,
                   progress: Callable[[dict], None] | None = None,
                   progress_interval: float = 1.0) -> tuple[int, dict]:
    """Returns (status, stats) like the C torture: 0 ok, 1 errors, 2 nothing reclaimed.

    Stops after ``seconds``, or once ``updates`` updates were made when ``updates`` > 0.
    ``stats["contract"]`` is the contract oracle's judgement of the recorded history.
    """
    if seconds <= 0 and updates <= 0:
        raise ValueError("give seconds > 0 or updates > 0")
    tickets = [0]
    ticket_lock = threading.Lock()
    history: list[contract.Event] = []
    history_lock = threading.Lock()
    ids = [0]

    def tick() -> int:
        with ticket_lock:
            tickets[0] += 1
            return tickets[0]

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
    counts = {"reads": 0, "updates": 0, "frees": 0, "errors_reclaimed": 0, "max_pending": 0}
    counts_lock = threading.Lock()
    errors: list[BaseException] = []

    def register(log: list) -> tuple[Any, int]:
        handle = interp.new_thread_state()
        interp.register(handle, interp.reserve())
        with ticket_lock:
            ids[0] += 1
            tid = ids[0]
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

    threads = ([threading.Thread(target=reader, args=(i,)) for i in range(readers)]
               + [threading.Thread(target=writer, args=(i,)) for i in range(writers)])
    started = time.monotonic()
    for thread in threads:
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
    for thread in threads:
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
    judged = contract.judge(history)
    stats = dict(counts, elapsed=time.monotonic() - started,
                 harness_errors=[f"{type(e).__name__}: {e}" for e in errors],
                 contract={"events": judged.events, "safety_checked": judged.safety_checked,
                           "liveness_checked": judged.liveness_checked,
                           "errors": judged.errors},
                 resources=resources)
    if errors or counts["errors_reclaimed"] or judged.errors or resources:
        return 1, stats
    return (0 if counts["frees"] else 2), stats
