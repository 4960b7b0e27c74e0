"""``qsbr-conformance replay REPORT.json``: one recorded failure, run again in seconds.

    qsbr-conformance replay REPORT.json [--failure K] [--impl MODULE:FACTORY] [--profile P]
                                        [--no-isolate] [--emit-test PATH]

Re-executes failure K's recorded steps (the JSON report's ``failures[K].step_records``)
against the report's own target (its ``target``: the spec, the release asked for, the C ABI
library, the factory's keyword arguments; --impl/--profile replay against another), in a
child process unless --no-isolate, comparing with the oracle after every step as the run did.
A C ABI report reopens the library it recorded: ``QSBR_LIBRARY`` need not be set again.

Each kind of report has its replayer (:data:`REPLAYERS`, picked by
:func:`conformance.checks.replay.report_kind`).

Exit status: 1 if it still fails (the output says whether the same way: the same facts at the
same step), 0 if it no longer fails, 2 for a usage error or a failure that cannot be replayed
step by step (the output says why).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from ..drivers import target as targets
from ..model import profiles
from . import common
from .common import UsageError

NAME = "replay"


def parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(
        prog="qsbr-conformance replay",
        description="Replay one failure of a JSON report (qsbr-conformance --json) step by "
                    "step against the implementation it recorded; exit 1 if it still fails, "
                    "0 if not.")
    parser.add_argument("report", metavar="REPORT.json", help="a report written by --json")
    parser.add_argument("--failure", type=common.nonnegative_int, default=None, metavar="K",
                        help="which failure (0-based, in the report's order; default: the "
                             "first one with recorded steps)")
    parser.add_argument("--impl", default=None, metavar="MODULE:FACTORY",
                        help="implementation to replay against (default: the report's own "
                             "target)")
    parser.add_argument("--profile", default=None, choices=profiles.CHOICES,
                        help="the release profile (default: the report's own)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                        help="run the implementation in a child process, so that a crash or "
                             "hang is reported as a failure (default: on)")
    parser.add_argument("--step-timeout", type=common.positive_float,
                        default=targets.STEP_TIMEOUT, metavar="SECONDS",
                        help="with --isolate: a call that runs longer is a hang (default: "
                             f"{targets.STEP_TIMEOUT:g})")
    parser.add_argument("--emit-test", metavar="PATH",
                        help="also write a self-contained pytest test that replays the steps "
                             "on the implementation's factory (fails while it still fails)")
    return parser


def main(argv: list[str]) -> int:
    from .cli import run_subcommand
    return run_subcommand(NAME, argv)


def run(argv: list[str]) -> int:
    """The subcommand (its usage errors raise UsageError: cli.run_subcommand reports them)."""
    from ..checks import replay
    args = parser().parse_args(argv)
    common.check_output_path(args.emit_test, "--emit-test")
    try:
        report = replay.load_report(args.report)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {args.report}: {exc}") from None
    return REPLAYERS[replay.report_kind(report)](args, report)


def _pick(report: dict[str, Any], wanted: int | None) -> int:
    if wanted is not None:
        return wanted
    for index, failure in enumerate(report.get("failures") or []):
        if failure.get("step_records") or failure.get("check") == "layout":
            return index
    return 0


def recorded_target(report: dict[str, Any]) -> targets.Target:
    """The target a report recorded (``target``); for a report written before targets were
    recorded, its options (the command line's ``impl``/``profile``, the plugin's ``spec``)."""
    data = report.get("target")
    if isinstance(data, dict) and data.get("spec"):
        return targets.Target.from_json(data)
    options = report.get("options") or {}
    spec = options.get("impl") or options.get("spec")
    if not spec:
        raise UsageError("the report records no target (no 'target', no options.impl): "
                         "give --impl")
    return targets.resolve(spec, options.get("profile") or options.get("release"),
                           library=options.get("library"))


def replay_target(args: argparse.Namespace, report: dict[str, Any]) -> targets.Target:
    """The report's target, or the one --impl/--profile name instead; isolated unless
    --no-isolate, with this replay's --step-timeout."""
    recorded = recorded_target(report)
    try:
        if args.impl is not None:
            release = args.profile if args.profile is not None else recorded.release
            chosen = targets.resolve(args.impl, release)
        elif args.profile is not None:
            chosen = targets.resolve(recorded.spec, args.profile, library=recorded.library,
                                     kwargs=recorded.kwargs)
        else:
            chosen = recorded
    except targets.TargetError as exc:
        raise UsageError(str(exc)) from None
    from dataclasses import replace
    return replace(chosen, isolate=args.isolate, step_timeout=args.step_timeout)


def _replay_run(args: argparse.Namespace, report: dict[str, Any]) -> int:
    """A failure of a run's JSON report (the command line's, the plugin's, a campaign's)."""
    from ..checks import replay
    try:
        failure = replay.recorded_failure(report, _pick(report, args.failure))
        replay.check_replayable(failure)
    except (IndexError, replay.NotReplayable) as exc:
        raise UsageError(str(exc)) from None
    if args.emit_test and failure.check == "layout":
        raise UsageError("--emit-test: a layout failure has no steps to put in a test")
    target = replay_target(args, report)

    started = time.perf_counter()
    try:
        impl = target.open()
    except targets.TargetError as exc:
        raise UsageError(str(exc)) from None
    try:
        loaded = time.perf_counter() - started
        if report.get("profile") and impl.profile != report["profile"]:
            raise UsageError(f"{target.spec} gave profile {impl.profile}; the report's steps "
                             f"are for profile {report['profile']} (pass --profile)")
        where = f"{target.spec}" + (f" (library {target.library})" if target.library else "")
        heading = (f"replay of failure {failure.index} ({failure.check}, facts "
                   f"{', '.join(failure.facts)}) from {args.report} on {impl.name} [{where}]")
        if failure.check == "layout":
            return _replay_layout(impl, failure, heading)
        try:
            result = replay.replay_steps(impl, failure.records)
        except replay.NotReplayable as exc:
            raise UsageError(f"failure {failure.index} cannot be replayed: {exc}") from None
    finally:
        if target.isolate:
            targets.close(impl)
    print(f"{heading}: {len(failure.records)} steps in {result.seconds:.2f} s "
          f"(loading the implementation: {loaded:.2f} s)")
    if failure.from_database:
        print(f"  the run replayed this failure from the database {failure.from_database}")
    for line in result.divergences[:3]:
        print(f"  note: {line}")
    if len(result.divergences) > 3:
        print(f"  note: ... {len(result.divergences) - 3} more steps differ from the report")
    if args.emit_test:
        replay.emit_test(args.emit_test, target=target, profile=impl.profile, failure=failure,
                         source=args.report)
        print(f"wrote {args.emit_test} (pytest {args.emit_test}: fails while {target.spec} "
              "still fails)")
    recorded_at = ("the fresh state" if failure.failed_at == replay.INITIAL
                   else f"step {failure.failed_at + 1}")
    if result.failure is None:
        print(f"NO LONGER FAILS: all {len(failure.records)} recorded steps agree with the "
              f"oracle (the report: facts {', '.join(failure.facts)} at {recorded_at})")
        return 0
    if replay.same_way(failure, result):
        print(f"STILL FAILS the same way (facts {', '.join(result.facts)}, at "
              f"{result.where()})")
    else:
        print(f"STILL FAILS, but differently: facts {', '.join(result.facts)} at "
              f"{result.where()}; the report: facts {', '.join(failure.facts)} at "
              f"{recorded_at}")
    print("  " + "\n  ".join(str(result.failure).splitlines()))
    if result.failure.diff:
        from ..checks import statediff
        print("  differences (observed, expected):")
        for line in statediff.render(result.failure.diff):
            print(f"    {line}")
    return 1


def _replay_layout(impl: Any, failure: Any, heading: str) -> int:
    from ..checks.runner import check_layout
    from ..model.ledger import FactLedger
    _, found = check_layout(impl, FactLedger())
    print(f"{heading}: the layout check, again")
    if found is None:
        print("NO LONGER FAILS: the layout matches")
        return 0
    same = set(found.facts) == set(failure.facts)
    print(f"STILL FAILS{' the same way' if same else ', but differently'}: {found.message}")
    return 1


def _replay_campaign(args: argparse.Namespace, report: dict[str, Any]) -> int:
    """What a campaign found (and replayed from its database), replayed like a run's."""
    from ..checks import replay
    return _replay_run(args, replay.as_run_report(report))


def _replay_torture(args: argparse.Namespace, report: dict[str, Any]) -> int:
    """A torture report: the torture it recorded, rerun (same target, seed and bound)."""
    from . import torture_cli
    return torture_cli.replay_report(report)


#: report kind (conformance.checks.replay.report_kind) -> its replayer
REPLAYERS: dict[str, Callable[[argparse.Namespace, dict[str, Any]], int]] = {
    "run": _replay_run,
    "campaign": _replay_campaign,
    "torture": _replay_torture,
}
