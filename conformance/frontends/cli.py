"""``qsbr-conformance``: run the differential conformance suite and print the report.

    qsbr-conformance [options]            the conformance run (see --help)
    qsbr-conformance torture [options]    the concurrency torture (see torture --help)
    qsbr-conformance mutants [options]    the mutant kill table (see mutants --help)
    qsbr-conformance bench [options]      benchmarks: the port beside liburcu and the hardware
                                          limit, and the suite's own speed (see bench --help)

Exit status: 0 if the implementation conforms, 1 if it does not, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..checks.exhaustive import DEFAULT_DEPTH as DEFAULT_EXPLORE_DEPTH
from ..checks.exhaustive import DEFAULT_SECONDS as DEFAULT_EXPLORE_SECONDS
from ..checks.runner import run_conformance
from ..drivers.isolation import IsolatedImplementation
from ..model import profiles
from ..model.adapter import AdapterError, load_implementation
from ..model.errors import QsbrError
from ..model.ledger import FactLedger
from . import report

DEFAULT_IMPL = "cython_bridge:reference_port"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qsbr-conformance",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check a QSBR implementation against CPython's semantics "
                    "(differential Hypothesis run against the oracle).  "
                    "'qsbr-conformance torture --help' for the concurrency torture, "
                    "'qsbr-conformance upstream --help' to check a CPython release's own "
                    "qsbr.c.",
        epilog="release matrix (--profile; evidence in docs/semantics.md):\n"
               + profiles.matrix_text())
    parser.add_argument("--impl", default=DEFAULT_IMPL, metavar="MODULE:FACTORY",
                        help=f"implementation to check (default: {DEFAULT_IMPL}, the reference "
                             "C port through the Cython bridge)")
    parser.add_argument("--profile", choices=profiles.CHOICES, default=None,
                        help="CPython release range to check against (see the matrix below): "
                             "3.13 = 3.13.3-3.13.5 (the default), 3.14 = 3.14.4+, auto = the "
                             "running interpreter's; passed to the factory")
    parser.add_argument("--examples", type=int, default=150, metavar="N",
                        help="Hypothesis examples (step sequences) to run (default: 150)")
    parser.add_argument("--steps", type=int, default=60, metavar="N",
                        help="maximum steps per example (default: 60)")
    parser.add_argument("--explore-seconds", type=float, default=DEFAULT_EXPLORE_SECONDS,
                        metavar="SECONDS",
                        help="time bound of the bounded-exhaustive exploration (default: "
                             f"{DEFAULT_EXPLORE_SECONDS:g}; 0 turns it off)")
    parser.add_argument("--explore-depth", type=int, default=DEFAULT_EXPLORE_DEPTH, metavar="N",
                        help="depth bound of the exploration, in actions from each start "
                             f"point (default: {DEFAULT_EXPLORE_DEPTH}; deeper needs more "
                             "--explore-seconds)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="seed for a reproducible run")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write the report as Markdown")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="run the implementation in a child process, so a crash or hang "
                             "is reported as a failure (default: on for --impl other than "
                             "the built-in reference port)")
    parser.add_argument("--step-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="with --isolate: a call that takes longer is a hang (default: 10)")
    parser.add_argument("--live-examples", type=int, default=10, metavar="N",
                        help="on a free-threaded build: generated action sequences to run "
                             "against the live interpreter (default: 10; 0 skips the live "
                             "check)")
    parser.add_argument("--concurrency-rounds", type=int, default=12, metavar="N",
                        help="rounds of the bounded concurrent torture that gives the ordering "
                             "facts concurrent evidence (C ABI libraries and the reference "
                             "port: the C driver; thread-safe Python adapters: Python threads, "
                             "N * 250 updates); 0 skips it (default: 12, a few seconds)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return parser


class Progress:
    """Progress on stderr: a live line on a terminal, a line per 10% otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last_decile = -1

    def __call__(self, ledger: FactLedger) -> None:
        if not self.enabled:
            return
        done = ledger.examples
        line = (f"[{done}/{self.total} examples] {ledger.steps} steps, "
                f"{sum(ledger.checks.values())} checks, {time.monotonic() - self.started:.1f} s")
        if self.tty:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
        elif done * 10 // self.total > self.last_decile:
            self.last_decile = done * 10 // self.total
            print(line, file=sys.stderr, flush=True)

    def exploring(self, result: Any) -> None:
        """Progress of the exhaustive exploration (at most one line a second)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - getattr(self, "_explore_shown", 0.0) < 1.0:
            return
        self._explore_shown = now
        line = (f"[exploring] {result.states} states, {result.transitions} transitions, "
                f"{result.seconds:.0f}/{result.seconds_bound:g} s")
        if self.tty:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
        else:
            print(line, file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _profile_matches(impl: Any, wanted: str) -> bool:
    """An implementation declares its API line (``profile``) and may declare its release
    profile (``release``); a line or alias asked for must match the line, a range the release
    where the implementation declares one."""
    if profiles.line_of(wanted) != impl.profile:
        return False
    release = getattr(impl, "release", None)
    if release is None or wanted in ("3.13", "3.14"):
        return True
    return profiles.resolve(wanted).name == release


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "torture":
        from . import torture_cli
        return torture_cli.main(argv[1:])
    if argv and argv[0] == "mutants":
        from ..checks import mutants
        return mutants.main(argv[1:])
    if argv and argv[0] == "bench":
        from ..bench import cli as bench_cli
        return bench_cli.main(argv[1:])
    if argv and argv[0] == "upstream":
        from ..checks import upstream
        return upstream.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.examples < 1 or args.steps < 1:
        print("qsbr-conformance: --examples and --steps must be at least 1", file=sys.stderr)
        return 2
    if args.explore_seconds < 0 or args.explore_depth < 0:
        print("qsbr-conformance: --explore-seconds and --explore-depth must not be negative",
              file=sys.stderr)
        return 2
    kwargs = {}
    if args.profile == "auto":
        try:
            args.profile = profiles.resolve("auto").name
        except profiles.UnknownRelease as exc:
            print(f"qsbr-conformance: --profile auto: {exc}", file=sys.stderr)
            return 2
    if args.profile is not None:
        kwargs["profile"] = args.profile
    isolate = args.isolate if args.isolate is not None else args.impl != DEFAULT_IMPL
    impl: Any
    try:
        if isolate:
            impl = IsolatedImplementation(args.impl, step_timeout=args.step_timeout, **kwargs)
        else:
            impl = load_implementation(args.impl, **kwargs)
    except (AdapterError, QsbrError, TypeError, ValueError) as exc:
        print(f"qsbr-conformance: cannot load {args.impl}: {exc}", file=sys.stderr)
        return 2
    if args.profile is not None and not _profile_matches(impl, args.profile):
        print(f"qsbr-conformance: {args.impl} gave profile "
              f"{getattr(impl, 'release', None) or impl.profile}, not {args.profile}",
              file=sys.stderr)
        return 2

    progress = Progress(args.examples, enabled=not args.quiet)
    result = run_conformance(impl, examples=args.examples, steps=args.steps, seed=args.seed,
                             progress=progress, explore_seconds=args.explore_seconds,
                             explore_depth=args.explore_depth,
                             explore_progress=progress.exploring)
    progress.finish()
    from ..checks import live, modelcheck
    result.modelcheck = modelcheck.apply(result.ledger, result.profile,
                                         reference_port=args.impl == DEFAULT_IMPL)
    if args.live_examples > 0 and live.probe_available():
        if not args.quiet:
            print("checking the live interpreter ...", file=sys.stderr, flush=True)
        result.live = live.live_check(args.live_examples, args.seed)
    if not args.quiet and args.concurrency_rounds > 0:
        print("concurrent torture ...", file=sys.stderr, flush=True)
    concurrent_check(result, args.impl, args.concurrency_rounds, args.seed,
                     impl.profile, getattr(impl, "thread_safe", None))
    print(report.to_text(result))
    if isolate:
        impl.close()
    if args.json:
        report.write_json(result, args.json)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(report.to_markdown(result))
    return 0 if result.conforms else 1


CABI_FACTORIES = ("conformance.cabi:from_env", "conformance.drivers.cabi:from_env")
PYTHON_THREAD_FACTS = ("S-ATTACH-1", "S-DETACH-1", "S-QS-1", "S-ADV-1", "S-POLL-1",
                       "S-POLL-2", "S-SAFE-1", "S-SAFE-2")


def _library_for(spec: str, profile: str) -> str | None:
    """The C ABI library the C driver can torture for this --impl, if there is one."""
    import os
    if spec in CABI_FACTORIES:
        return os.environ.get("QSBR_LIBRARY")
    if spec == DEFAULT_IMPL:
        # The bridge compiles the same sources as reference_c's library.
        import subprocess

        from ..checks.cabi_torture import TortureSetupError, reference_c
        try:
            source = reference_c()
        except TortureSetupError:
            return None
        folder = profile.replace(".", "")
        path = source / "build" / folder / "libqsbr.so"
        if not path.exists():
            subprocess.run(["make", "-C", str(source), "--no-print-directory", "lib",
                            f"PROFILE={folder}"], capture_output=True)
        return str(path) if path.exists() else None
    return None


def concurrent_check(result: Any, spec: str, rounds: int, seed: int | None, profile: str,
                     thread_safe: Any) -> None:
    """A bounded concurrent torture of the implementation, judged by its own checks and the
    contract oracle, credited to the ledger with source "concurrent"."""
    import json
    import os
    import subprocess
    import tempfile

    from ..checks import cabi_torture
    from ..checks.runner import Failure
    ledger = result.ledger
    library = _library_for(spec, profile)
    if rounds <= 0:
        result.concurrency = "the concurrent torture was skipped (--concurrency-rounds 0)"
        result.concurrency_command = f"qsbr-conformance --impl {spec} --concurrency-rounds 12"
        return
    if library is not None:
        tsan_library = ("reference_c/build/tsan/" + profile.replace(".", "") + "/libqsbr.so "
                        "(make -C reference_c lib SANITIZE=thread BUILD=build/tsan PROFILE="
                        + profile.replace(".", "") + ")" if spec == DEFAULT_IMPL
                        else "LIB, with LIB your library built with -fsanitize=thread")
        result.concurrency_command = ("memory orders under ThreadSanitizer: qsbr-conformance "
                                      f"torture --tsan --seconds 60 --library {tsan_library}")
        try:
            run = cabi_torture.run(library, rounds=rounds, seed=seed or 1, history=True,
                                   history_rounds=2, stop_on_error=True)
        except cabi_torture.TortureSetupError as exc:
            result.concurrency = f"no concurrent check ran: {exc}"
            return
        contract = run.contract
        oracle = (f"; contract oracle judged {contract.safety_checked} true and "
                  f"{contract.liveness_checked} false polls" if contract is not None else "")
        result.concurrency = (f"C ABI torture, {rounds} rounds, plain build: memory-order "
                              f"bugs need the TSan mode{oracle}")
        if run.status == 0:
            for _ in range(rounds):
                ledger.passed(*cabi_torture.CHECKED_FACTS, source="concurrent")
            return
        facts = tuple(run.failed_facts) or ("S-SAFE-2",)
        for fact in facts:
            details = run.errors.get(fact, [run.verdict()])
            ledger.failed((fact,), details[0], source="concurrent")
        result.failures.append(Failure("concurrent torture", facts, run.verdict()))
        return
    if not thread_safe:
        result.concurrency = (f"no concurrent check ran: {spec} does not declare thread_safe "
                              "= True (docs/adapter-protocol.md, 'Thread safety')")
        result.concurrency_command = ("declare thread_safe = True if it is, then qsbr-conformance"
                                      f" torture --impl {spec} --python-threads")
        return
    updates = rounds * 250
    result.concurrency_command = ("a long run on a free-threaded build: qsbr-conformance "
                                  f"torture --impl {spec} --python-threads --seconds 60")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "torture.json")
        command = [sys.executable, "-m", "conformance", "torture", "--impl", spec,
                   "--python-threads", "--updates", str(updates), "--readers", "3",
                   "--writers", "2", "--profile", profile, "-q", "--json", out]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            proc = None
        if proc is None or not os.path.exists(out):
            detail = ("the Python-threads torture hung" if proc is None else
                      f"the Python-threads torture exited with {proc.returncode}: "
                      f"{(proc.stdout + proc.stderr).strip().splitlines()[-1:]}")
            ledger.failed(("S-SAFE-2",), detail, source="concurrent")
            result.failures.append(Failure("concurrent torture", ("S-SAFE-2",), detail))
            result.concurrency = "Python-threads torture: " + detail
            return
        with open(out, encoding="utf-8") as handle:
            data = json.load(handle)
    stats = data["stats"]
    judged: dict = stats.get("contract") or {}
    result.concurrency = (f"Python-threads torture, {updates} updates, GIL "
                          f"{'on' if getattr(sys, '_is_gil_enabled', lambda: True)() else 'off'}"
                          f"; contract oracle judged {judged.get('safety_checked', 0)} true "
                          f"and {judged.get('liveness_checked', 0)} false polls")
    failures: dict[str, list[str]] = dict(judged.get("errors", {}))
    if stats.get("errors_reclaimed"):
        failures.setdefault("S-SAFE-1", []).append(
            f"a reader saw a reclaimed object {stats['errors_reclaimed']} time(s)")
    if stats.get("resources"):
        failures.setdefault("S-RES-1", []).append(stats["resources"])
    if stats.get("harness_errors"):
        failures.setdefault("S-SAFE-2", []).append("; ".join(stats["harness_errors"][:2]))
    if data["status"] == 2 and not failures:
        failures["S-SAFE-2"] = ["nothing was reclaimed"]
    if not failures:
        for _ in range(rounds):
            ledger.passed(*PYTHON_THREAD_FACTS, source="concurrent")
        return
    for fact, details in failures.items():
        ledger.failed((fact,), details[0], source="concurrent")
    result.failures.append(Failure("concurrent torture", tuple(sorted(failures)),
                                   "; ".join(f"{f}: {d[0]}" for f, d in failures.items())))


if __name__ == "__main__":
    sys.exit(main())
