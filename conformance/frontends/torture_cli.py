"""``qsbr-conformance torture``: the concurrency torture of the reference port (S-SAFE-1/2)."""

from __future__ import annotations

import argparse
import json
import sys

from ..model.adapter import PROFILES

ERROR_KINDS = ("poisoned", "bad_magic", "too_old", "stall")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qsbr-conformance torture",
        description="Readers, writers and thread-state churn hammer the reference C port; "
                    "readers check that no object they can still reach was reclaimed "
                    "(S-SAFE-1) and the monitor checks that reclamation keeps going "
                    "(S-SAFE-2).  Exit status 0: no error and objects were freed.")
    p.add_argument("--readers", type=int, default=4)
    p.add_argument("--writers", type=int, default=2)
    p.add_argument("--churn", type=int, default=1, help="threads creating and deleting "
                   "thread states, so the slot array grows during the run (default: 1)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--updates", type=int, default=0, help="stop after this many updates")
    p.add_argument("--profile", choices=PROFILES, default="3.13")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-batching", action="store_true",
                   help="writers use advance() only (not deferred_advance/shared_next)")
    p.add_argument("--stall-ms", type=int, default=2000,
                   help="report a stall when nothing is freed for this long (default: 2000)")
    p.add_argument("--python-threads", action="store_true",
                   help="drive the protocol from Python threads through the bridge instead "
                        "of C threads (meaningful on free-threaded builds)")
    p.add_argument("--json", metavar="PATH", help="write the final counters as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def _line(stats: dict) -> str:
    errors = stats.get("errors", {})
    total = sum(errors.values()) if errors else stats.get("errors_reclaimed", 0)
    return (f"{stats['elapsed']:6.1f}s reads={stats['reads']} updates={stats['updates']} "
            f"frees={stats['frees']} max_pending={stats['max_pending']} errors={total}")


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.readers < 0 or args.writers < 1 or args.churn < 0:
        print("qsbr-conformance torture: need --readers >= 0, --writers >= 1, --churn >= 0",
              file=sys.stderr)
        return 2
    if args.seconds <= 0 and args.updates <= 0:
        print("qsbr-conformance torture: give --seconds > 0 or --updates > 0", file=sys.stderr)
        return 2
    import cython_bridge

    def progress(stats: dict) -> None:
        print("progress " + _line(stats), file=sys.stderr, flush=True)

    report = None if args.quiet else progress
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"torture: profile {args.profile}, {args.readers} readers, {args.writers} writers, "
          f"{0 if args.python_threads else args.churn} churn, "
          f"{'Python' if args.python_threads else 'C'} threads, {args.seconds:g} s, "
          f"GIL {'on' if gil else 'off'}", flush=True)
    if args.python_threads:
        from ..checks.pytorture import python_torture
        status, stats = python_torture(
            cython_bridge.reference_port(args.profile), readers=args.readers,
            writers=args.writers, seconds=args.seconds, seed=args.seed, progress=report)
    else:
        status, stats = cython_bridge.extension(args.profile).torture(
            readers=args.readers, writers=args.writers, churners=args.churn,
            seconds=args.seconds, max_updates=args.updates, batching=not args.no_batching,
            seed=args.seed, stall_ms=args.stall_ms, progress=report)
    print("final    " + _line(stats))
    if "errors" in stats:
        print("errors:  " + ", ".join(f"{k}={stats['errors'][k]}" for k in ERROR_KINDS))
        print(f"grace-period latency (updates between retire and free): max "
              f"{stats['gp_latency_max']}, mean {stats['gp_latency_mean']:.1f}; thread "
              f"states churned {stats['churn_cycles']}; slot array {stats['array_size']}")
    else:
        print(f"errors:  reclaimed_object_seen={stats['errors_reclaimed']}"
              + (f"; harness: {stats['harness_errors']}" if stats["harness_errors"] else ""))
    verdict = {0: "PASS: no reader saw reclaimed memory, and reclamation progressed",
               1: "FAIL: errors (see the counters above)",
               2: "FAIL: nothing was reclaimed (no progress)"}[status]
    print(f"torture: {verdict}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"status": status, "config": vars(args), "stats": stats}, handle,
                      indent=2)
    return status
