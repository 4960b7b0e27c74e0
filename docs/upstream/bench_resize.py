"""Python threads resizing shared lists and dicts: the cost of the delayed frees (and so of the
goal functions) as a program sees it.  Run it with a patched and an unpatched free-threaded
interpreter and compare; a benchmark, not a test.

Each of N threads (1..--threads, default the CPU count) loops --iterations times over a list and
a dict that the main thread made (so they are shared and their old arrays / keys tables are
freed through QSBR): ``lst.extend(chunk); lst.clear()`` and 12 insertions into a dict then
``clear()`` (its table grows 8 -> 16 slots and is retired).  Reported per row: ns of each
thread's CPU time (``time.thread_time_ns``) per iteration, best and median over the threads,
and the overlap (the threads' CPU time over the wall time: near N when each had a CPU, near 1
when they took turns).  One JSON line per row on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time


def row(threads: int, iterations: int) -> dict[str, object]:
    lists = [[] for _ in range(threads)]
    dicts: list[dict[str, int]] = [{} for _ in range(threads)]
    chunk = list(range(64))
    keys = [f"k{i}" for i in range(12)]
    cpu = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        lst, d = lists[i], dicts[i]
        barrier.wait()
        t0 = time.thread_time_ns()
        for _ in range(iterations):
            lst.extend(chunk)
            lst.clear()
            for k in keys:
                d[k] = 0
            d.clear()
        cpu[i] = time.thread_time_ns() - t0

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    start = time.monotonic_ns()
    for t in ts:
        t.join()
    wall = time.monotonic_ns() - start
    per = sorted(c / iterations for c in cpu)
    return {"threads": threads, "iterations": iterations, "ns_per_iteration_best": per[0],
            "ns_per_iteration_median": statistics.median(per),
            "overlap": round(sum(cpu) / wall, 3), "python": sys.version.split()[0],
            "executable": sys.executable}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--iterations", type=int, default=200_000)
    args = p.parse_args()
    if not hasattr(sys, "_is_gil_enabled") or sys._is_gil_enabled():
        print("bench_resize: needs a free-threaded build with the GIL off", file=sys.stderr)
        return 2
    for n in range(1, args.threads + 1):
        print(json.dumps(row(n, args.iterations)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
