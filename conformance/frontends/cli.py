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
import importlib
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..checks import plan as plans
from ..checks.plan import Plan
from ..drivers import interrupt
from ..drivers.target import REFERENCE_IMPL, Target, TargetError
from ..model import profiles
from ..model.ledger import FactLedger
from . import common, options, report
from .common import UsageError

if TYPE_CHECKING:
    # Imported when a run starts (conformance.checks.runner imports Hypothesis: about 0.15 s,
    # and 20,000 sched_yield() calls on 3.13t): --help, --version and bad input stay cheap.
    from ..checks.runner import RunResult

DEFAULT_IMPL = REFERENCE_IMPL
DEFAULT_EXPLORE_SECONDS = plans.FALLBACK_EXPLORE_SECONDS
DEFAULT_EXPLORE_STATES = plans.DEFAULT_EXPLORE_STATES
DEFAULT_EXPLORE_DEPTH = plans.DEFAULT_EXPLORE_DEPTH


#: name -> (its front-end module in conformance.frontends, one-line description).  Each module
#: has ``main(argv) -> int`` (imported only when its subcommand runs, so the main --help and bad
#: input stay cheap); the main --help lists them all.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "torture": ("torture_cli", "the concurrency torture of the reference port (S-SAFE-1/2)"),
    "mutants": ("mutants_cli", "build each mutant of the reference port and check that the "
                               "suite kills it"),
    "bench": ("bench_cli", "benchmarks: the port beside liburcu and the hardware limit, and "
                           "the suite's own speed"),
    "upstream": ("upstream_cli", "check a CPython release's own qsbr.c/pycore_qsbr.h against "
                                 "the port (SOURCE: a tarball or source tree)"),
    "hazards": ("hazards_cli", "hardware litmus and Relacy for the orderings QSBR's callers "
                               "depend on (SOURCE: the port, a tarball or source tree)"),
    "replay": ("replay_cli", "re-execute one failure of a JSON report step by step "
                             "(REPORT.json)"),
    "campaign": ("campaign_cli", "fuzz with HypoFuzz on N workers sharing an example database"),
}


def subcommand(name: str) -> Callable[[list[str]], int]:
    """The body of subcommand ``name``: its front-end module's ``run(argv)`` (which raises
    UsageError and lets Ctrl-C through: :func:`run_subcommand` is the floor), or for a module
    that keeps its own, its ``main(argv)``."""
    module = importlib.import_module(f"{__package__}.{SUBCOMMANDS[name][0]}")
    return getattr(module, "run", None) or module.main


def parser() -> argparse.ArgumentParser:
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
    options.add_to_argparse(parser)
    return parser


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

    #: called once, when the first phase starts (the implementation is loaded by then)
    on_start: Callable[[], None] | None = None

    def phase(self, name: str, ledger: FactLedger) -> None:
        on_start, self.on_start = self.on_start, None
        if on_start is not None:
            on_start()
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
        bound = (f"/{result.states_bound}" if result.states_bound
                 else f", {result.seconds:.0f}/{result.seconds_bound:g} s")
        line = f"[exploring] {result.states}{bound} states, {result.transitions} transitions"
        if self.tty:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
        else:
            print(line, file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def plan_and_target(args: argparse.Namespace, seed: int) -> tuple[Plan, Target]:
    """The frozen plan and the resolved target of parsed options (UsageError if bad)."""
    return options.plan_and_target(vars(args), seed)


def check_database(url: str | None) -> None:
    """Reach ``--db`` now (a ping, a write), before any check: UsageError naming it."""
    if url is None:
        return
    from ..checks.database import DatabaseError, open_database
    try:
        open_database(url)
    except DatabaseError as exc:
        raise UsageError(str(exc)) from None


def write_reports(result: RunResult, plan: Plan) -> None:
    if plan.json:
        report.write_json(result, plan.json)
    if plan.markdown:
        common.write_text(plan.markdown, report.to_markdown(result))


def run_subcommand(name: str | None, argv: list[str]) -> int:
    """The one exit floor of every command: subcommand ``name`` (None: the conformance run
    itself).  argparse's exits become a status (--help 0, a bad option 2), a UsageError one
    line and status 2, Ctrl-C status 130 (a command that can say what it finished, and write
    its partial reports, catches it first); a command returns 1 itself when a check failed."""
    prog = "qsbr-conformance" + (f" {name}" if name else "")
    started = False
    try:
        if name is not None:
            return subcommand(name)(argv)
        args = parser().parse_args(argv)
        with interrupt.handling_sigint():
            started = True
            return _run(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else common.USAGE
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return common.USAGE
    except KeyboardInterrupt:
        what = ("interrupted before the run started; nothing was checked"
                if name is None and started else "interrupted; no verdict")
        print(f"{prog}: {what}", file=sys.stderr)
        return common.INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (argparse's exits included: --help and
    --version give 0, a bad option 2)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return run_subcommand(argv[0], argv[1:])
    return run_subcommand(None, argv)


def _run(args: argparse.Namespace) -> int:
    common.check_output_path(args.json, "--json")
    common.check_output_path(args.markdown, "--markdown")
    common.keep_hypothesis_out_of_cwd()
    plan, target = plan_and_target(args, args.seed if args.seed is not None
                                   else plans.new_seed())
    check_database(plan.database)
    from ..checks import runner
    from ..checks.database import DatabaseError

    # Loading can take seconds (a child interpreter, imports): say so if it does.
    notice = threading.Timer(1.0, print, (f"qsbr-conformance: loading {target.spec} ...",),
                             {"file": sys.stderr, "flush": True})
    if not args.quiet:
        notice.start()
    progress = Progress(plan.examples, enabled=not args.quiet)

    def say(line: str) -> None:
        progress.finish()
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    def started() -> None:
        notice.cancel()
        if not args.quiet:
            print(f"qsbr-conformance: checking {target.spec} with seed {plan.seed} "
                  f"({plan.examples} examples of up to {plan.steps} steps)",
                  file=sys.stderr, flush=True)

    progress.on_start = started
    try:
        result = runner.run(plan, target, progress=progress,
                            explore_progress=progress.exploring, say=say)
    except (TargetError, DatabaseError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        notice.cancel()
    progress.finish()
    result.replay = options.replay_command(plan, target)
    result.options = {key: value for key, value in sorted(vars(args).items())}
    result.options["seed"] = plan.seed
    print(report.to_text(result))
    write_reports(result, plan)
    if result.interrupted:
        written = [path for path in (plan.json, plan.markdown) if path]
        where = (f"reports written, marked incomplete: {', '.join(written)}" if written
                 else "no report file was asked for")
        print(f"qsbr-conformance: interrupted after {result.ledger.examples} examples "
              f"({result.seconds:.1f} s); {where}", file=sys.stderr)
        return common.INTERRUPTED
    return 0 if result.conforms else 1


if __name__ == "__main__":
    sys.exit(main())
