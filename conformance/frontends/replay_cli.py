"""``qsbr-conformance replay REPORT.json``: one recorded failure, run again in seconds.

    qsbr-conformance replay REPORT.json [--failure K] [--impl MODULE:FACTORY] [--profile P]
                                        [--no-isolate] [--emit-test PATH]

Re-executes failure K's recorded steps (the JSON report's ``failures[K].step_records``)
against the implementation (by default the report's own ``--impl`` and ``--profile``), in a
child process unless --no-isolate, comparing with the oracle after every step as the run did.

Exit status: 1 if it still fails (the output says whether the same way: the same facts at the
same step), 0 if it no longer fails, 2 for a usage error or a failure that cannot be replayed
step by step (the output says why).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..drivers.isolation import STARTUP_TIMEOUT, IsolatedImplementation
from ..model.adapter import AdapterError, load_implementation
from ..model.errors import QsbrError
from . import common
from .common import UsageError

DEFAULT_IMPL = "conformance.reference:reference_port"


def parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(
        prog="qsbr-conformance replay",
        description="Replay one failure of a JSON report (qsbr-conformance --json) step by "
                    "step against an implementation; exit 1 if it still fails, 0 if not.")
    parser.add_argument("report", metavar="REPORT.json", help="a report written by --json")
    parser.add_argument("--failure", type=common.nonnegative_int, default=None, metavar="K",
                        help="which failure (0-based, in the report's order; default: the "
                             "first one with recorded steps)")
    parser.add_argument("--impl", default=None, metavar="MODULE:FACTORY",
                        help="implementation to replay against (default: the report's own)")
    parser.add_argument("--profile", default=None,
                        help="passed to the factory (default: the report's --profile)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                        help="run the implementation in a child process, so that a crash or "
                             "hang is reported as a failure (default: on)")
    parser.add_argument("--step-timeout", type=common.positive_float, default=10.0,
                        metavar="SECONDS", help="with --isolate: a call that runs longer is a "
                                                "hang (default: 10)")
    parser.add_argument("--emit-test", metavar="PATH",
                        help="also write a self-contained pytest test that replays the steps "
                             "on the implementation's factory (fails while it still fails)")
    return parser


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else common.USAGE
    try:
        return _replay(args)
    except UsageError as exc:
        print(f"qsbr-conformance replay: error: {exc}", file=sys.stderr)
        return common.USAGE
    except KeyboardInterrupt:
        print("qsbr-conformance replay: interrupted", file=sys.stderr)
        return common.INTERRUPTED


def _pick(report: dict[str, Any], wanted: int | None) -> int:
    if wanted is not None:
        return wanted
    for index, failure in enumerate(report.get("failures") or []):
        if failure.get("step_records") or failure.get("check") == "layout":
            return index
    return 0


def _load(spec: str, profile: str | None, isolate: bool, step_timeout: float) -> Any:
    kwargs = {"profile": profile} if profile is not None else {}
    try:
        if isolate:
            return IsolatedImplementation(spec, step_timeout=step_timeout,
                                          startup_timeout=STARTUP_TIMEOUT, **kwargs)
        return load_implementation(spec, **kwargs)
    except (AdapterError, QsbrError) as exc:
        raise UsageError(f"cannot load {spec}: {exc}") from None


def _replay(args: argparse.Namespace) -> int:
    from ..checks import replay
    common.check_output_path(args.emit_test, "--emit-test")
    try:
        report = replay.load_report(args.report)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {args.report}: {exc}") from None
    options = report.get("options") or {}
    spec = args.impl or options.get("impl") or DEFAULT_IMPL
    profile = args.profile if args.profile is not None else options.get("profile")
    try:
        failure = replay.recorded_failure(report, _pick(report, args.failure))
        replay.check_replayable(failure)
    except (IndexError, replay.NotReplayable) as exc:
        raise UsageError(str(exc)) from None
    if args.emit_test and failure.check == "layout":
        raise UsageError("--emit-test: a layout failure has no steps to put in a test")

    started = time.perf_counter()
    impl = _load(spec, profile, args.isolate, args.step_timeout)
    try:
        loaded = time.perf_counter() - started
        if report.get("profile") and impl.profile != report["profile"]:
            raise UsageError(f"{spec} gave profile {impl.profile}; the report's steps are for "
                             f"profile {report['profile']} (pass --profile)")
        heading = (f"replay of failure {failure.index} ({failure.check}, facts "
                   f"{', '.join(failure.facts)}) from {args.report} on {impl.name}")
        if failure.check == "layout":
            return _replay_layout(impl, failure, heading)
        try:
            result = replay.replay_steps(impl, failure.records)
        except replay.NotReplayable as exc:
            raise UsageError(f"failure {failure.index} cannot be replayed: {exc}") from None
    finally:
        if args.isolate:
            impl.close()
    print(f"{heading}: {len(failure.records)} steps in {result.seconds:.2f} s "
          f"(loading the implementation: {loaded:.2f} s)")
    for line in result.divergences[:3]:
        print(f"  note: {line}")
    if len(result.divergences) > 3:
        print(f"  note: ... {len(result.divergences) - 3} more steps differ from the report")
    if args.emit_test:
        replay.emit_test(args.emit_test, spec=spec, profile=impl.profile, failure=failure,
                         source=args.report)
        print(f"wrote {args.emit_test} (pytest {args.emit_test}: fails while {spec} still "
              "fails)")
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
