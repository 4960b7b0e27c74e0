"""``qsbr-conformance torture``: the concurrency torture (S-SAFE-1/2 and the ordering facts).

Without ``--impl``/``--library``: the reference port, C threads (or ``--python-threads``
through the bridge).  With ``--library PATH`` or ``--impl conformance.cabi:from_env``
(``$QSBR_LIBRARY``): the C ABI driver (reference_c/harness/cabi_torture.c) loads that library
with dlopen(); ``--tsan`` uses its ThreadSanitizer build for a library built with
``-fsanitize=thread``.  With ``--impl M:F --python-threads``: Python threads drive a
thread-safe Python adapter, judged by the contract oracle.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..model import profiles
from . import common

ERROR_KINDS = ("poisoned", "bad_magic", "too_old", "stall")


def parser() -> argparse.ArgumentParser:
    p = common.ArgumentParser(
        prog="qsbr-conformance torture",
        description="Readers, writers and thread-state churn hammer the reference C port; "
                    "readers check that no object they can still reach was reclaimed "
                    "(S-SAFE-1) and the monitor checks that reclamation keeps going "
                    "(S-SAFE-2).  Exit status 0: no error and objects were freed; 1: errors "
                    "or nothing freed; 2: usage error; 130: interrupted (Ctrl-C).")
    p.add_argument("--readers", type=common.positive_int, default=4, metavar="N",
                   help="reader threads, which check every object they reach (default: 4)")
    p.add_argument("--writers", type=common.positive_int, default=2, metavar="N",
                   help="writer threads, which replace and retire objects (default: 2)")
    p.add_argument("--churn", type=common.nonnegative_int, default=1, metavar="N",
                   help="threads creating and deleting thread states, so the slot array grows "
                        "during the run (default: 1; C threads only)")
    p.add_argument("--seconds", type=float, default=10.0, metavar="SECONDS",
                   help="how long to run (default: 10; 0 with --updates: until that many "
                        "updates)")
    p.add_argument("--updates", type=common.nonnegative_int, default=0, metavar="N",
                   help="stop after this many updates (default: 0, no limit)")
    p.add_argument("--profile", choices=profiles.CHOICES, default="3.13",
                   help="which release profile to torture (the matrix of qsbr-conformance "
                        "--help; default: 3.13; auto: the running interpreter's)")
    p.add_argument("--seed", type=common.nonnegative_int, default=1, metavar="N",
                   help="seed of the threads' random choices (default: 1)")
    p.add_argument("--no-batching", action="store_true",
                   help="writers use advance() only (not deferred_advance/shared_next)")
    p.add_argument("--stall-ms", type=common.positive_int, default=2000, metavar="MS",
                   help="report a stall when nothing is freed for this long (default: 2000)")
    p.add_argument("--python-threads", action="store_true",
                   help="drive the protocol from Python threads through the bridge instead "
                        "of C threads (meaningful on free-threaded builds)")
    p.add_argument("--race-rounds", type=common.nonnegative_int, default=None, metavar="N",
                   help="--python-threads: the race probes' cap on preemption points per "
                        "thread (threads inside operations at once, judged against the model; "
                        "default: 64; 0: no race probes)")
    p.add_argument("--race-probe", metavar="KIND@STATE@SCHEDULE", default=None,
                   help="--python-threads: run this one race-probe round only (a failure's "
                        "'rerun this probe' command)")
    p.add_argument("--switch-interval", type=float, default=None, metavar="SECONDS",
                   help="--python-threads on a GIL build: force thread switches this often "
                        "for the run (sys.setswitchinterval; default: 1e-6; 0: the "
                        "interpreter's own); restored afterwards")
    p.add_argument("--impl", metavar="MODULE:FACTORY",
                   help="torture this implementation: conformance.cabi:from_env (with "
                        "$QSBR_LIBRARY) runs the C ABI driver on that library; any other "
                        "adapter needs --python-threads and a thread-safe adapter")
    p.add_argument("--library", metavar="PATH",
                   help="a library exporting reference_c/include/qsbr_api.h: run the C ABI "
                        "driver on it (same as --impl conformance.cabi:from_env)")
    p.add_argument("--tsan", action="store_true",
                   help="with a C ABI library built with -fsanitize=thread: run the "
                        "ThreadSanitizer build of the driver; each data race fails the run, "
                        "named by the fact whose ordering is missing")
    p.add_argument("--rounds", type=common.nonnegative_int, default=0, metavar="N",
                   help="C ABI driver: stop after this many rounds (each on a fresh "
                        "interpreter) instead of --seconds")
    p.add_argument("--history", action="store_true",
                   help="C ABI driver: also record the first rounds' operations and judge "
                        "them with the contract oracle")
    p.add_argument("--json", metavar="PATH", help="write the final counters as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def _line(stats: dict) -> str:
    errors = stats.get("errors", {})
    total = sum(errors.values()) if errors else stats.get("errors_reclaimed", 0)
    return (f"{stats['elapsed']:6.1f}s reads={stats['reads']} updates={stats['updates']} "
            f"frees={stats['frees']} max_pending={stats['max_pending']} errors={total}"
            + (f" race_rounds={stats['race_rounds']}" if "race_rounds" in stats else ""))


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    prog = "qsbr-conformance torture"
    try:
        if args.seconds < 0 or args.seconds != args.seconds:
            raise common.UsageError("--seconds must be >= 0")
        if args.seconds == 0 and args.updates == 0:
            raise common.UsageError("give --seconds > 0 or --updates > 0")
        if args.switch_interval is not None and not (0 <= args.switch_interval < 1):
            raise common.UsageError("--switch-interval must be in [0, 1) seconds")
        if (args.race_rounds is not None or args.switch_interval is not None) \
                and not args.python_threads:
            raise common.UsageError("--race-rounds and --switch-interval need "
                                    "--python-threads")
        library = args.library
        if args.impl is not None and library is None:
            if args.impl.split(":")[0] in ("conformance.cabi", "conformance.drivers.cabi"):
                library = os.environ.get("QSBR_LIBRARY")
                if not library:
                    raise common.UsageError("set QSBR_LIBRARY to the library for "
                                            f"--impl {args.impl}")
            elif not args.python_threads:
                raise common.UsageError(
                    f"--impl {args.impl} is a Python adapter: add --python-threads (its "
                    "implementation must declare thread_safe = True)")
        if library is None and (args.tsan or args.rounds or args.history):
            raise common.UsageError("--tsan, --rounds and --history need a C ABI library "
                                    "(--library PATH or --impl conformance.cabi:from_env)")
        common.check_output_path(args.json, "--json")
        if args.profile == "auto":
            try:
                args.profile = profiles.resolve("auto").name
            except profiles.UnknownRelease as exc:
                raise common.UsageError(f"--profile auto: {exc}") from None
    except common.UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return common.USAGE
    try:
        if library is not None:
            return _cabi(args, library)
        return _run(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no verdict", file=sys.stderr)
        if args.json:
            # The partial report: what was asked, the seed, and how to run it again.
            _write_json(args, library, {"status": None, "interrupted": True})
            print(f"{prog}: partial report (interrupted) written to {args.json}",
                  file=sys.stderr)
        return common.INTERRUPTED


#: the "kind" of a torture's JSON report (qsbr-conformance replay dispatches on it)
JSON_KIND = "qsbr-conformance torture"


def replay_command(args: argparse.Namespace, library: str | None) -> list[str]:
    """The command line that reruns this torture: the same target, seed and bound."""
    command = ["qsbr-conformance", "torture"]
    if library is not None:
        command += ["--library", os.path.abspath(library)]
        command += ["--rounds", str(args.rounds)] if args.rounds else \
            ["--seconds", f"{args.seconds:g}"]
        command += ["--tsan"] if args.tsan else []
        command += ["--history"] if args.history else []
    else:
        if args.impl is not None:
            command += ["--impl", args.impl]
        command += ["--profile", args.profile, "--seconds", f"{args.seconds:g}"]
        command += ["--updates", str(args.updates)] if args.updates else []
        command += ["--python-threads"] if args.python_threads else []
        command += ["--churn", str(args.churn)] + (["--no-batching"] if args.no_batching
                                                     else [])
    command += ["--readers", str(args.readers), "--writers", str(args.writers),
                "--seed", str(args.seed), "-q"]
    return command


def _write_json(args: argparse.Namespace, library: str | None, data: dict) -> None:
    """The torture's JSON report: its kind, seed and replay command around ``data``."""
    command = replay_command(args, library)
    report = {"kind": JSON_KIND, "schema_version": 2,
              "versions": {"suite": common.suite_version(),
                           "python": sys.version.split()[0]},
              "seed": args.seed, "interrupted": False, "library": library,
              "config": {k: v for k, v in vars(args).items() if k != "json"},
              "replay": " ".join(command), "replay_argv": command[1:], **data}
    common.write_text(args.json, json.dumps(report, indent=2) + "\n")


def replay_report(data: dict) -> int:
    """``qsbr-conformance replay TORTURE.json``: rerun the torture the report recorded (its
    ``replay_argv``: same target, seed and bound); 1 if it still fails, 0 if not, 2 usage."""
    argv = data.get("replay_argv")
    if data.get("kind") != JSON_KIND or not isinstance(argv, list) or argv[:1] != ["torture"]:
        print("qsbr-conformance replay: not a torture report with a replay command",
              file=sys.stderr)
        return common.USAGE
    before = data.get("status")
    print(f"replay: {data.get('replay')}" + (" (the recorded run was interrupted)"
                                             if data.get("interrupted") else ""), flush=True)
    status = main([str(a) for a in argv[1:]])
    if status in (common.USAGE, common.INTERRUPTED):
        return status
    if status:
        print("replay: still fails" + (f" (recorded status {before}, facts "
                                       f"{', '.join(data.get('failed_facts') or []) or '-'})"
                                       if before is not None else ""))
        return 1
    print("replay: no longer fails" if before else "replay: passes, as recorded")
    return 0


def _run(args: argparse.Namespace) -> int:
    import cython_bridge

    def progress(stats: dict) -> None:
        print("progress " + _line(stats), file=sys.stderr, flush=True)

    report = None if args.quiet else progress
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"torture: profile {args.profile}, {args.readers} readers, {args.writers} writers, "
          f"{args.churn} churn, "
          f"{'Python' if args.python_threads else 'C'} threads, {args.seconds:g} s, "
          f"GIL {'on' if gil else 'off'}", flush=True)
    if args.python_threads:
        from ..checks import races
        from ..checks.pytorture import RACE_ROUNDS, python_torture
        if args.impl is not None:
            from ..drivers import target as targets
            try:
                implementation = targets.resolve(args.impl, args.profile,
                                                 isolate=False).open()
            except (targets.TargetError, Exception) as exc:  # noqa: BLE001
                print(f"qsbr-conformance torture: {exc}", file=sys.stderr)
                return 2
            if not getattr(implementation, "thread_safe", False):
                print(f"qsbr-conformance torture: {args.impl} does not declare thread_safe = "
                      "True (docs/adapter-protocol.md, 'Thread safety'): its operations may "
                      "not be called from several threads", file=sys.stderr)
                return 2
        else:
            from ..drivers.reference import reference_port
            implementation = reference_port(args.profile)
        interval = (races.FORCED_SWITCH_INTERVAL if args.switch_interval is None
                    else args.switch_interval or None)
        status, stats = python_torture(
            implementation, readers=args.readers, writers=args.writers,
            seconds=args.seconds if not args.updates else 0.0, updates=args.updates,
            seed=args.seed, progress=report,
            race_rounds=RACE_ROUNDS if args.race_rounds is None else args.race_rounds,
            switch_interval=interval, churners=args.churn, race_probe=args.race_probe,
            replay=lambda spec: ("qsbr-conformance torture "
                                 + (f"--impl {args.impl} " if args.impl else "")
                                 + f"--python-threads --profile {args.profile} --updates 1 "
                                 f"--race-probe '{spec}'"))
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
        if stats.get("resources"):
            print(f"  FAIL S-RES-1: {stats['resources']}")
        print(f"evidence: {stats['evidence']}")
        probes = stats.get("races")
        if probes is not None:
            print(f"race probes: {probes['rounds']} rounds ({probes['stepped']} stepped with "
                  f"{probes['preemptions']} preemptions, {probes['free']} released together) "
                  f"over {len(probes['by_kind'])} kinds"
                  + f"; {probes.get('pairs_covered', 0)} of {probes.get('pairs', 0)} pairs "
                  "the protocol allows"
                  + (f" (not covered: {', '.join(probes['pairs_not_covered'])})"
                     if probes.get("pairs_not_covered") else "")
                  + (f"; {probes['escapes']} pause(s) waited out their limit (a lock the "
                     "probes did not find: declare it with race_locks())"
                     if probes["escapes"] else "")
                  + (f"; first failure at round {min(probes['caught_at'].values())}"
                     if probes["caught_at"] else ""))
        contract = stats.get("contract")
        if contract is not None:
            print(f"contract oracle: {contract['events']} events, {contract['safety_checked']} "
                  f"true polls and {contract['liveness_checked']} false polls judged "
                  f"({stats.get('probe_rounds', 0)} grace-period probe rounds in a fixed "
                  f"interleaving, {stats.get('probe_polls', 0)} polls, then free-running "
                  "threads)")
            for fact, details in contract["errors"].items():
                print(f"  FAIL {fact}: {details[0]}")
    verdict = {0: "PASS: no reader saw reclaimed memory, and reclamation progressed",
               1: "FAIL: errors (see the counters above)",
               2: "FAIL: nothing was reclaimed (no progress)"}[status]
    print(f"torture: {verdict}")
    if args.json:
        _write_json(args, None, {"status": status, "stats": stats})
    return 1 if status == 2 else status       # nothing freed is a failed check, not usage


def _cabi(args: argparse.Namespace, library: str) -> int:
    from ..checks import cabi_torture
    if args.python_threads:
        print("qsbr-conformance torture: --python-threads does not apply to a C ABI library",
              file=sys.stderr)
        return 2
    if not os.path.exists(library):
        print(f"qsbr-conformance torture: no library at {library}", file=sys.stderr)
        return 2
    if args.tsan and not cabi_torture.library_has_tsan(library):
        print(f"qsbr-conformance torture: --tsan: {library} was not built with "
              "-fsanitize=thread (see README, 'ThreadSanitizer mode')", file=sys.stderr)
        return 2
    rounds = args.rounds if args.rounds > 0 else 0
    seconds = 0.0 if rounds else args.seconds
    print(f"torture: C ABI library {library}, {args.readers} readers, {args.writers} writers, "
          f"{max(args.churn, 1) * 2} reservers, "
          f"{f'{rounds} rounds' if rounds else f'{seconds:g} s'}"
          f"{', ThreadSanitizer' if args.tsan else ''}", flush=True)
    try:
        result = cabi_torture.run(library, rounds=rounds, seconds=seconds,
                                  readers=args.readers, writers=args.writers,
                                  reservers=max(args.churn, 1) * 2, seed=args.seed,
                                  tsan=args.tsan, history=args.history,
                                  stop_on_error=True, progress=not args.quiet)
    except cabi_torture.TortureSetupError as exc:
        print(f"qsbr-conformance torture: {exc}", file=sys.stderr)
        return 2
    if result.counters:
        print(result.counters)
    if result.contract is not None:
        c = result.contract
        print(f"contract oracle: {c.events} events, {c.safety_checked} true polls and "
              f"{c.liveness_checked} false polls judged")
    for fact, details in sorted(result.errors.items()):
        print(f"FAIL {fact}: {details[0]}")
    if args.tsan and result.tsan_reports:
        print(f"ThreadSanitizer reported {result.tsan_reports} race(s); the first ones' two "
              "stacks (top frames, file:line):")
        print(result.stacks)
    print(f"torture: {result.verdict()}")
    if result.status:
        print(f"replay: {' '.join(replay_command(args, library))}")
    if args.json:
        _write_json(args, library, {
            "status": result.status, "failed_facts": result.failed_facts,
            "errors": result.errors, "counters": result.counter_values,
            "counters_text": result.counters, "tsan_stacks": result.stacks,
            "driver_command": result.command})
    # The driver's 2 (nothing was freed) is a failed check, not a usage error.
    return 1 if result.status == 2 else result.status
