"""The torture protocol driven from Python threads through the Cython bridge.

The same roles as the C torture (reference_c/src/torture.c), at Python speed: readers hold an
object across a read-side section and check it has not been reclaimed; writers replace it,
retire the old one with a goal from ``advance()`` and reclaim it only when ``poll()`` allows.
On a free-threaded build the threads run truly in parallel; elsewhere they interleave at the
bridge, which releases the GIL on every call.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any


class _Object:
    __slots__ = ("serial", "reclaimed")

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.reclaimed = False


def python_torture(implementation: Any, *, readers: int = 4, writers: int = 2,
                   seconds: float = 2.0, seed: int = 1,
                   progress: Callable[[dict], None] | None = None,
                   progress_interval: float = 1.0) -> tuple[int, dict]:
    """Returns (status, stats) like the C torture: 0 ok, 1 errors, 2 nothing reclaimed."""
    interp = implementation.new_interpreter()
    current = [_Object(0)]
    swap_lock = threading.Lock()            # writers only; readers never take it
    stop = threading.Event()
    counts = {"reads": 0, "updates": 0, "frees": 0, "errors_reclaimed": 0, "max_pending": 0}
    counts_lock = threading.Lock()
    errors: list[BaseException] = []

    def register() -> Any:
        handle = interp.new_thread_state()
        interp.register(handle, interp.reserve())
        interp.attach(handle)
        return handle

    def retire(handle: Any) -> None:
        interp.detach(handle)
        interp.unregister(handle)
        interp.delete_thread_state(handle)

    def reader(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        handle = register()
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
                if rng.random() < 0.7:
                    interp.quiescent_state(handle)
                elif rng.random() < 0.1:
                    interp.detach(handle)
                    interp.attach(handle)
        except BaseException as exc:  # reported after the run
            errors.append(exc)
        finally:
            retire(handle)
            with counts_lock:
                counts["reads"] += reads
                counts["errors_reclaimed"] += bad

    def writer(index: int) -> None:
        handle = register()
        pending: deque[tuple[int, _Object]] = deque()
        try:
            while not stop.is_set():
                with swap_lock:
                    counts["updates"] += 1
                    fresh = _Object(counts["updates"])
                    old, current[0] = current[0], fresh
                pending.append((interp.advance(), old))
                interp.quiescent_state(handle)
                while pending and interp.poll(handle, pending[0][0]):
                    pending.popleft()[1].reclaimed = True
                    with counts_lock:
                        counts["frees"] += 1
                with counts_lock:
                    counts["max_pending"] = max(counts["max_pending"], len(pending))
        except BaseException as exc:
            errors.append(exc)
        finally:
            retire(handle)

    threads = ([threading.Thread(target=reader, args=(i,)) for i in range(readers)]
               + [threading.Thread(target=writer, args=(i,)) for i in range(writers)])
    started = time.monotonic()
    for thread in threads:
        thread.start()
    next_progress = started + progress_interval
    while time.monotonic() - started < seconds and not errors:
        time.sleep(0.01)
        if progress is not None and time.monotonic() >= next_progress:
            next_progress += progress_interval
            with counts_lock:
                progress(dict(counts, elapsed=time.monotonic() - started))
    stop.set()
    for thread in threads:
        thread.join()
    interp.close()
    stats = dict(counts, elapsed=time.monotonic() - started,
                 harness_errors=[f"{type(e).__name__}: {e}" for e in errors])
    if errors or counts["errors_reclaimed"]:
        return 1, stats
    return (0 if counts["frees"] else 2), stats
