"""``qsbr-conformance``: run the differential conformance suite and print the report.

    qsbr-conformance [options]            the conformance run (see --help)
    qsbr-conformance torture [options]    the concurrency torture (see torture --help)
    qsbr-conformance mutants [options]    the mutant kill table (see mutants --help)
    qsbr-conformance bench [options]      benchmarks: the port beside liburcu and the hardware
                                          limit, and the suite's own speed (see bench --help)

Exit status: 0 if the implementation conforms, 1 if it does not, 2 for a usage error (bad
option, adapter, library or output path; reported before any work starts), 130 when stopped by
Ctrl-C (the reports are still written, marked incomplete).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..checks import interrupt
from ..checks.exhaustive import DEFAULT_DEPTH as DEFAULT_EXPLORE_DEPTH
from ..checks.exhaustive import DEFAULT_SECONDS as DEFAULT_EXPLORE_SECONDS
from ..drivers.isolation import STARTUP_TIMEOUT, IsolatedImplementation
from ..model import profiles
from ..model.adapter import AdapterError, load_implementation
from ..model.errors import QsbrError
from ..model.ledger import FactLedger
from . import common, report
from .common import UsageError

if TYPE_CHECKING:
    # Imported when a run starts (conformance.checks.runner imports Hypothesis: about 0.15 s,
    # and 20,000 sched_yield() calls on 3.13t): --help, --version and bad input stay cheap.
    from ..checks.runner import RunResult

DEFAULT_IMPL = "cython_bridge:reference_port"


def _torture(argv: list[str]) -> int:
    from . import torture_cli
    return torture_cli.main(argv)


def _mutants(argv: list[str]) -> int:
    from ..checks import mutants
    return mutants.main(argv)


def _upstream(argv: list[str]) -> int:
    from ..checks import upstream
    return upstream.main(argv)


def _bench(argv: list[str]) -> int:
    from ..bench import cli as bench_cli
    return bench_cli.main(argv)


#: name -> (entry point, one-line description); the main --help lists them all.
SUBCOMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "torture": (_torture, "the concurrency torture of the reference port (S-SAFE-1/2)"),
    "mutants": (_mutants, "build each mutant of the reference port and check that the "
                          "suite kills it"),
    "bench": (_bench, "benchmarks: the port beside liburcu and the hardware limit, and "
                      "the suite's own speed"),
    "upstream": (_upstream, "check a CPython release's own qsbr.c/pycore_qsbr.h against the "
                            "port (SOURCE: a tarball or source tree)"),
    "replay": (lambda argv: __import__("conformance.frontends.replay_cli",
                                       fromlist=["main"]).main(argv),
               "re-execute one failure of a JSON report step by step (REPORT.json)"),
    "campaign": (lambda argv: __import__("conformance.frontends.campaign_cli",
                                         fromlist=["main"]).main(argv),
                 "fuzz with HypoFuzz on N workers sharing an example database"),
}


def _parser() -> argparse.ArgumentParser:
    epilog = ("subcommands (each has its own --help):\n" + "\n".join(
        f"  qsbr-conformance {name:<9} {text}" for name, (_, text) in SUBCOMMANDS.items())
        + "\n\nexit status: 0 conforms, 1 does not conform, 2 usage error, 130 interrupted")
    parser = common.ArgumentParser(
        prog="qsbr-conformance",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check a QSBR implementation against CPython's semantics "
                    "(differential Hypothesis run against the oracle).",
        epilog=epilog + "\n\nrelease matrix (--profile; evidence in docs/semantics.md):\n"
               + profiles.matrix_text())
    parser.add_argument("--version", action="version", version=common.version_line())
    parser.add_argument("--impl", default=DEFAULT_IMPL, metavar="MODULE:FACTORY",
                        help=f"implementation to check (default: {DEFAULT_IMPL}, the reference "
                             "C port through the Cython bridge)")
    parser.add_argument("--profile", choices=profiles.CHOICES, default=None,
                        help="CPython release range to check against (see the matrix below): "
                             "3.13 = 3.13.3-3.13.5 (the default), 3.14 = 3.14.4+, auto = the "
                             "running interpreter's; passed to the factory")
    parser.add_argument("--examples", type=common.positive_int, default=150, metavar="N",
                        help="Hypothesis examples (step sequences) to run (default: 150)")
    parser.add_argument("--steps", type=common.positive_int, default=60, metavar="N",
                        help="maximum steps per example (default: 60)")
    parser.add_argument("--explore-seconds", type=float, default=DEFAULT_EXPLORE_SECONDS,
                        metavar="SECONDS",
                        help="time bound of the bounded-exhaustive exploration (default: "
                             f"{DEFAULT_EXPLORE_SECONDS:g}; 0 turns it off)")
    parser.add_argument("--explore-depth", type=common.nonnegative_int,
                        default=DEFAULT_EXPLORE_DEPTH, metavar="N",
                        help="depth bound of the exploration, in actions from each start "
                             f"point (default: {DEFAULT_EXPLORE_DEPTH}; deeper needs more "
                             "--explore-seconds)")
    parser.add_argument("--seed", type=common.nonnegative_int, default=None, metavar="N",
                        help="seed of the run (default: a random one, printed and saved in "
                             "the reports, so that every run can be replayed)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write the report as Markdown")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="run the implementation in a child process, so a crash or hang "
                             "is reported as a failure (default: on for --impl other than "
                             "the built-in reference port)")
    parser.add_argument("--step-timeout", type=common.positive_float, default=10.0,
                        metavar="SECONDS",
                        help="with --isolate: a call that runs longer is a hang (default: 10; "
                             "time spent waiting for a CPU on a busy machine is not counted)")
    parser.add_argument("--startup-timeout", type=common.positive_float,
                        default=STARTUP_TIMEOUT, metavar="SECONDS",
                        help="with --isolate: bound on the child's start-up (imports, the "
                             f"factory call) (default: {STARTUP_TIMEOUT:g})")
    parser.add_argument("--live-examples", type=common.nonnegative_int, default=10,
                        metavar="N",
                        help="on a free-threaded build: generated action sequences to run "
                             "against the live interpreter (default: 10; 0 skips the live "
                             "check)")
    parser.add_argument("--concurrency-rounds", type=common.nonnegative_int, default=12,
                        metavar="N",
                        help="rounds of the bounded concurrent torture that gives the ordering "
                             "facts concurrent evidence (C ABI libraries and the reference "
                             "port: the C driver; thread-safe Python adapters: Python threads, "
                             "N * 250 updates); 0 skips it (default: 12, a few seconds)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return parser


def replay_command(args: argparse.Namespace, seed: int) -> str:
    """The command line that replays this run (same implementation, options and seed)."""
    parts = ["qsbr-conformance", "--impl", args.impl]
    if args.profile is not None:
        parts += ["--profile", args.profile]
    parts += ["--examples", str(args.examples), "--steps", str(args.steps), "--seed", str(seed)]
    if args.explore_seconds != DEFAULT_EXPLORE_SECONDS:
        parts += ["--explore-seconds", f"{args.explore_seconds:g}"]
    if args.explore_depth != DEFAULT_EXPLORE_DEPTH:
        parts += ["--explore-depth", str(args.explore_depth)]
    if args.isolate is not None:
        parts.append("--isolate" if args.isolate else "--no-isolate")
    return shlex.join(parts)


class Progress:
    """Progress on stderr: a live line on a terminal; otherwise a line per 10% of the
    examples and at least one every 5 s.  Once the run has found a failure, Hypothesis replays
    it to shrink it: that is shown as shrinking, not as more examples."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last_decile = -1
        self.last_line = self.started
        self.name = ""
        self.examples_at_start = 0
        self.failures_at_start = 0
        self.shrinking_since: int | None = None

    def _emit(self, line: str, force: bool = False) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()
        elif force or time.monotonic() - self.last_line >= 5.0:
            print(line, file=sys.stderr, flush=True)
            self.last_line = time.monotonic()

    def phase(self, name: str, ledger: FactLedger) -> None:
        self.name = name
        self.examples_at_start = ledger.examples
        self.failures_at_start = sum(len(v) for v in ledger.failures.values())
        if self.enabled:
            self._emit(f"[{name}] {time.monotonic() - self.started:.1f} s", force=True)

    def __call__(self, ledger: FactLedger) -> None:
        if not self.enabled or interrupt.requested():     # stopping: no more progress
            return
        if self.name != "random examples":
            self._emit(f"[{self.name}] {sum(ledger.checks.values())} checks, "
                       f"{time.monotonic() - self.started:.1f} s")
            return
        done = ledger.examples - self.examples_at_start
        failed = sum(len(v) for v in ledger.failures.values()) > self.failures_at_start
        if failed and self.shrinking_since is None:
            self.shrinking_since = done
        tail = (f"{ledger.steps} steps, {sum(ledger.checks.values())} checks, "
                f"{time.monotonic() - self.started:.1f} s")
        if self.shrinking_since is not None:
            self._emit(f"[failure found after {self.shrinking_since} examples; shrinking it: "
                       f"{done - self.shrinking_since} replays] {tail}")
            return
        decile = min(done, self.total) * 10 // self.total
        self._emit(f"[{min(done, self.total)}/{self.total} examples] {tail}",
                   force=decile > self.last_decile)
        self.last_decile = max(self.last_decile, decile)

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


def _load(args: argparse.Namespace, isolate: bool) -> Any:
    """The implementation, or UsageError (one line) for every way loading can fail."""
    kwargs = {}
    if args.profile == "auto":
        try:
            args.profile = profiles.resolve("auto").name
        except profiles.UnknownRelease as exc:
            raise UsageError(f"--profile auto: {exc}") from None
    if args.profile is not None:
        kwargs["profile"] = args.profile
    try:
        if isolate:
            impl: Any = IsolatedImplementation(args.impl, step_timeout=args.step_timeout,
                                               startup_timeout=args.startup_timeout, **kwargs)
        else:
            impl = load_implementation(args.impl, **kwargs)
    except AdapterError as exc:
        raise UsageError(f"cannot load {args.impl}: {exc}") from None
    except QsbrError as exc:            # e.g. the isolated child crashed while starting
        raise UsageError(f"cannot load {args.impl}: {exc}") from None
    if args.profile is not None and not _profile_matches(impl, args.profile):
        if isolate:
            impl.close()
        raise UsageError(f"{args.impl} gave profile "
                         f"{getattr(impl, 'release', None) or impl.profile}, not {args.profile}")
    return impl


def _write_reports(result: RunResult, args: argparse.Namespace) -> None:
    if args.json:
        report.write_json(result, args.json)
    if args.markdown:
        common.write_text(args.markdown, report.to_markdown(result))


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (argparse's exits included: --help and
    --version give 0, a bad option 2)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return SUBCOMMANDS[argv[0]][0](argv[1:])
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else common.USAGE
    try:
        with interrupt.handling_sigint():
            return _run(args)
    except UsageError as exc:
        print(f"qsbr-conformance: error: {exc}", file=sys.stderr)
        return common.USAGE
    except KeyboardInterrupt:           # before the run started (e.g. while loading)
        print("qsbr-conformance: interrupted before the run started; nothing was checked",
              file=sys.stderr)
        return common.INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    if args.explore_seconds < 0 or args.explore_seconds != args.explore_seconds:
        raise UsageError("--explore-seconds must be >= 0 (0 turns the exploration off)")
    common.check_output_path(args.json, "--json")
    common.check_output_path(args.markdown, "--markdown")
    common.keep_hypothesis_out_of_cwd()
    from ..checks.runner import new_seed, run_conformance
    seed = args.seed if args.seed is not None else new_seed()
    isolate = args.isolate if args.isolate is not None else args.impl != DEFAULT_IMPL
    # Loading can take seconds (a child interpreter, imports): say so if it does.
    notice = threading.Timer(1.0, print, (f"qsbr-conformance: loading {args.impl} ...",),
                             {"file": sys.stderr, "flush": True})
    if not args.quiet:
        notice.start()
    try:
        impl = _load(args, isolate)
    finally:
        notice.cancel()
    if not args.quiet:
        print(f"qsbr-conformance: checking {impl.name} with seed {seed} "
              f"({args.examples} examples of up to {args.steps} steps)",
              file=sys.stderr, flush=True)
    progress = Progress(args.examples, enabled=not args.quiet)
    try:
        result = run_conformance(impl, examples=args.examples, steps=args.steps, seed=seed,
                                 progress=progress, explore_seconds=args.explore_seconds,
                                 explore_depth=args.explore_depth,
                                 explore_progress=progress.exploring)
        progress.finish()
        from ..checks import live, modelcheck
        result.modelcheck = modelcheck.apply(result.ledger, result.profile,
                                             reference_port=args.impl == DEFAULT_IMPL)
        if not result.interrupted and args.live_examples > 0 and live.probe_available():
            if not args.quiet:
                print("checking the live interpreter ...", file=sys.stderr, flush=True)
            try:
                result.live = live.live_check(args.live_examples, seed)
            except KeyboardInterrupt:
                result.interrupted = True
        if not result.interrupted:
            if not args.quiet and args.concurrency_rounds > 0:
                print("concurrent torture ...", file=sys.stderr, flush=True)
            try:
                concurrent_check(result, args.impl, args.concurrency_rounds, seed,
                                 impl.profile, getattr(impl, "thread_safe", None))
            except KeyboardInterrupt:
                result.interrupted = True
    finally:
        if isolate:
            impl.close()
    result.replay = replay_command(args, seed)
    result.options = {key: value for key, value in sorted(vars(args).items())}
    result.options["seed"] = seed
    print(report.to_text(result))
    _write_reports(result, args)
    if result.interrupted:
        written = [path for path in (args.json, args.markdown) if path]
        where = (f"reports written, marked incomplete: {', '.join(written)}" if written
                 else "no report file was asked for")
        print(f"qsbr-conformance: interrupted after {result.ledger.examples} examples "
              f"({result.seconds:.1f} s); {where}", file=sys.stderr)
        return common.INTERRUPTED
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


def _torture_progress(stdout: str, stderr: str) -> tuple[str, ...]:
    """The last progress line's update and free counts (conformance.frontends.torture_cli)."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("progress "):
            return tuple(re.findall(r"\b(?:updates|frees)=(\d+)", line))
    return ()


def concurrent_check(result: Any, spec: str, rounds: int, seed: int | None, profile: str,
                     thread_safe: Any) -> None:
    """A bounded concurrent torture of the implementation, judged by its own checks and the
    contract oracle, credited to the ledger with source "concurrent"."""
    import json
    import os
    import tempfile

    from ..checks import cabi_torture
    from ..checks.runner import Failure
    from ..drivers.patience import run_watched
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
                   "--writers", "2", "--profile", profile, "--json", out]
        # A hang is 300 s charged without an update or a free (its progress lines, on
        # stderr): time its threads spent waiting for a CPU is not charged, so a busy machine
        # only makes it slower (conformance.drivers.patience).
        proc = run_watched(command, budget=300, progress=_torture_progress,
                           what="the Python-threads torture")
        if proc.hung is not None or not os.path.exists(out):
            detail = (proc.hung if proc.hung is not None else
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
