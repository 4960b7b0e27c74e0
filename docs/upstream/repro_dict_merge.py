"""Reproducer of dict-merge-order on a free-threaded CPython (3.13t, 3.14t).

dict_dict_merge's clone path (3.14.7 Objects/dictobject.c:3921-3922) retires the target's old
keys (``dictkeys_decref``: for a shared dict, a delayed free with a QSBR goal) before
``set_keys`` publishes the clone.  A reader that passes a quiescent state after that goal was
taken can still load the old keys, and the free does not wait for it.

Three threads, bounded by an iteration count:

- the writer, ``--iterations`` times: ``target.clear()``, six keys inserted into ``target`` and
  deleted again, ``target.update(source)``: the clone path (the target is empty, ``ma_used ==
  0``, but owns a real 16-slot keys table; the source is combined, dense and has no
  deletions);
- the reader (``--readers N``): looks the source's keys up in ``target`` lock-free
  (``dict.get`` in C loops), and checks that each answer is either "missing" or the very object
  the source maps the key to;
- the advancer: forces QSBR advances: it appends to and clears a small shared list 128 times
  (in 3.14 every 128th delayed free advances the write sequence) and, every eighth round,
  fills a shared list past 1 MiB of items and clears it (a delayed free over
  QSBR_FREE_MEM_LIMIT advances it at once), so goals are reached quickly.

After each update the writer makes --fill more delayed frees, so that its queue's chunk fills
and is processed, freeing the old keys, within microseconds of the update rather than after
about a hundred updates.

Run it with ``PYTHONMALLOC=mimalloc_debug``, so that a freed keys table is filled with dead
bytes (0xDD) at once.  The race's window is the few instructions between the two statements:
on a stock build it is practically never hit.  On a build with the test-only delay patch
(docs/upstream/test-only-dict-merge-delay-3.14.7.patch, a *test device*, never to be merged) the
window is a spin of QSBR_TEST_MERGE_DELAY_SPINS iterations: a reader that loads the old keys in
it and is descheduled before it has read them reads freed memory when it resumes, if the block
has not been reused by then (a found value is re-validated against ``ma_keys`` by the lookup,
so a reused block shows nothing).  With the swap patch (dict-merge-order-3.14.7.patch) as well,
the spin comes after the publication: the reader can no longer load the retired keys.  On the
machine it was written on it did not fail even with the delay (docs/upstream/README.md).

Exit status: 0 no anomaly in the iterations; 1 a reader saw an answer that no state of the
dict gives (or an exception): it read a freed table; a crash (SIGSEGV, SIGBUS: a negative status
from a parent) is a read of freed memory too, faulthandler prints where; 2 usage (not a
free-threaded build); 3 the watchdog: no progress for --timeout seconds (a reader looping in a
freed table's garbage indices).  It prints one summary line.
"""

from __future__ import annotations

import argparse
import faulthandler
import operator
import os
import sys
import threading
import time

MISSING = object()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=200_000,
                   help="the writer's clone-path updates (default 200000)")
    p.add_argument("--readers", type=int, default=1, help="reader threads (default 1)")
    p.add_argument("--keys", type=int, default=10,
                   help="keys of the source dict (default 10: a 16-slot table, dense enough to "
                        "be cloned, and too large for the keys freelist)")
    p.add_argument("--block", type=int, default=140_000,
                   help="items of the advancer's list: 140000 pointers are over 1 MiB")
    p.add_argument("--fill", type=int, default=300,
                   help="delayed frees the writer adds after each update (a shared list "
                        "appended to and cleared), so that its queue's 254-item chunk fills and "
                        "is processed (the old keys freed) soon after the update (default 300)")
    p.add_argument("--pause", type=float, default=0.0,
                   help="seconds the writer sleeps after each update's frees (default 0)")
    p.add_argument("--spinners", type=int, default=0,
                   help="extra busy threads, so that threads outnumber CPUs and the reader is "
                        "descheduled more often (default 0)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="watchdog: seconds without the writer's progress (default 300)")
    args = p.parse_args(argv)
    if not hasattr(sys, "_is_gil_enabled") or sys._is_gil_enabled():
        print("repro_dict_merge: needs a free-threaded build with the GIL off (3.13t, 3.14t)",
              file=sys.stderr)
        return 2
    faulthandler.enable()

    # Values the reader can recognise by identity: no state of `target` maps k to anything else.
    source = {f"key{i}": object() for i in range(args.keys)}
    target: dict[str, object] = {}
    keys = list(source)
    # The target's old table: 6 keys inserted (8 slots grow to 16) then deleted, so ma_used == 0.
    xkeys = [f"x{i}" for i in range(6)]
    # A value found in a table is re-validated by the lock-free lookup (it retries under the
    # lock when ma_keys has changed since it loaded it), so a freed table that was reused shows
    # nothing; one not yet reused reads as 0xDD (PYTHONMALLOC=mimalloc_debug) and the lookup
    # derails (a crash, or a probe loop that the watchdog reports).  --pause lets the writer
    # sleep after its frees, so that a descheduled reader may run again before the writer's
    # next allocation of that size reuses the block.
    shared_list: list[int] = []             # made here, resized by the advancer: shared
    small: list[int] = []                   # the advancer's small delayed frees
    filler: list[int] = []                  # the writer's
    block = list(range(args.block))
    done = threading.Event()
    failures: list[str] = []
    progress = [0]
    lookups = [0] * args.readers
    hits = [0] * args.readers

    # The reader's lookups run in C loops (map, list.count), so that most of its time is spent
    # inside dict lookups holding a keys pointer; it passes a quiescent state between batches.
    batch_keys = keys * (64 // len(keys) + 1)
    batch_missing = [MISSING] * len(batch_keys)
    batch_expected = [source[k] for k in batch_keys]

    def reader(index: int) -> None:
        get = target.get
        n = h = 0
        try:
            while not done.is_set():
                got = list(map(get, batch_keys, batch_missing))
                found = sum(map(operator.is_, got, batch_expected))
                absent = got.count(MISSING)
                n += len(got)
                h += found
                if found + absent != len(got):
                    bad = next(v for v, e in zip(got, batch_expected, strict=True)
                               if v is not MISSING and v is not e)
                    failures.append(f"reader {index}: target.get() gave {bad!r}, which no "
                                    f"state of the dict holds")
                    done.set()
                    return
        except BaseException as exc:  # noqa: BLE001 - any exception here is the finding
            failures.append(f"reader {index}: {type(exc).__name__}: {exc}")
            done.set()
        finally:
            lookups[index], hits[index] = n, h

    def writer() -> None:
        try:
            for i in range(args.iterations):
                target.clear()
                for x in xkeys:
                    target[x] = 0
                for x in xkeys:
                    del target[x]
                target.update(source)
                for _ in range(args.fill):
                    filler.append(0)
                    filler.clear()
                if args.pause:
                    time.sleep(args.pause)
                progress[0] = i + 1
                if done.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001
            failures.append(f"writer: {type(exc).__name__}: {exc}")
        finally:
            done.set()

    def advancer() -> None:
        n = 0
        while not done.is_set():
            for _ in range(128):            # 128 deferred frees: one advance (3.14)
                small.append(0)
                small.clear()
            n += 1
            if block and n % 8 == 0:        # a free over 1 MiB: an advance of its own
                shared_list.extend(block)
                shared_list.clear()

    def spinner() -> None:
        x = 0
        while not done.is_set():
            x += 1

    threads = [threading.Thread(target=reader, args=(i,), daemon=True)
               for i in range(args.readers)]
    threads += [threading.Thread(target=advancer, daemon=True)]
    threads += [threading.Thread(target=spinner, daemon=True) for _ in range(args.spinners)]
    write = threading.Thread(target=writer, daemon=True)
    start = time.monotonic()
    for t in [*threads, write]:
        t.start()
    last, seen = time.monotonic(), 0
    while write.is_alive():
        write.join(1.0)
        if progress[0] != seen:
            last, seen = time.monotonic(), progress[0]
        elif time.monotonic() - last > args.timeout:
            print(f"repro_dict_merge: HANG: no progress for {args.timeout:.0f} s at update "
                  f"{progress[0]} (a reader looping in a freed table?)", flush=True)
            os._exit(3)
    done.set()
    for t in threads:
        t.join(args.timeout)
        if t.is_alive():
            print(f"repro_dict_merge: HANG: {t.name} did not stop (a reader looping in a freed "
                  f"table?)", flush=True)
            os._exit(3)
    spins = os.environ.get("QSBR_TEST_MERGE_DELAY_SPINS", "-")
    summary = (f"{progress[0]} updates, {sum(lookups)} lookups ({sum(hits)} found), "
               f"{time.monotonic() - start:.1f} s, PYTHONMALLOC="
               f"{os.environ.get('PYTHONMALLOC', '-')}, QSBR_TEST_MERGE_DELAY_SPINS={spins}, "
               f"{sys.version.split()[0]}")
    if failures:
        print(f"repro_dict_merge: FAIL: {failures[0]} ({summary})", flush=True)
        return 1
    print(f"repro_dict_merge: pass: no anomaly ({summary})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
