"""``qsbr-conformance campaign``: the differential state machine as a HypoFuzz campaign.

    qsbr-conformance campaign --impl MODULE:FACTORY --workers N
                              [--seconds S | --examples N] [--db DIR|redis://host:port/N]
                              [--profile P] [--steps N] [--no-isolate] [--dashboard]
                              [--json PATH]

N worker processes (HypoFuzz, ``pip install 'qsbr-conformance[campaign]'``) fuzz the machine
with a shared example database; the campaign stops on the budget (examples counted over all
workers, or seconds; neither: at the first failure or Ctrl-C) or once a failure is found and
stored, shrunk, in the database.  A normal run with ``--db`` of the same database (and the same
``--steps``) replays it first.

Exit status: 0 nothing found, 1 a failure was found, 2 usage error (or HypoFuzz missing, or it
stopped by itself), 130 interrupted (the report is still printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..checks.plan import DEFAULT_STEPS
from ..drivers.target import REFERENCE_IMPL, STEP_TIMEOUT
from ..model import profiles
from . import common
from .common import UsageError

DEFAULT_IMPL = REFERENCE_IMPL



def default_db() -> str:
    return str(common.cache_dir() / "examples")


def parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(
        prog="qsbr-conformance campaign",
        description="Fuzz an implementation against the oracle with HypoFuzz on N worker "
                    "processes sharing one example database.")
    parser.add_argument("--impl", default=DEFAULT_IMPL, metavar="MODULE:FACTORY",
                        help=f"implementation to fuzz (default: {DEFAULT_IMPL})")
    parser.add_argument("--workers", type=common.positive_int, default=1, metavar="N",
                        help="worker processes (default: 1)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=common.positive_float, default=None,
                        help="stop after this long (default: no time bound)")
    budget.add_argument("--examples", type=common.positive_int, default=None, metavar="N",
                        help="stop once the workers together have run N examples, unless a "
                             "failure is being shrunk (default: no bound)")
    parser.add_argument("--db", default=None, metavar="DIR|redis://HOST:PORT/N",
                        help="the shared example database: a directory (default: "
                             f"{default_db()}) or a Redis URL for workers on several machines")
    parser.add_argument("--profile", default=None, choices=profiles.CHOICES,
                        help="the release profile, as in a run's --profile (the factory gets "
                             "its API line)")
    parser.add_argument("--steps", type=common.positive_int, default=DEFAULT_STEPS, metavar="N",
                        help="maximum steps per example (default: 60, a run's default: a run "
                             "replays the database with its own --steps, keep them equal)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="each worker runs the implementation in a child process (default: "
                             "on for --impl other than the reference port).  Off, HypoFuzz "
                             "also sees the coverage of a Python implementation's own code")
    parser.add_argument("--step-timeout", type=common.positive_float, default=STEP_TIMEOUT,
                        metavar="SECONDS", help="with --isolate: a call that runs longer is a "
                                                f"hang (default: {STEP_TIMEOUT:g})")
    parser.add_argument("--dashboard", action="store_true",
                        help="serve HypoFuzz's dashboard while the campaign runs")
    parser.add_argument("--port", type=common.nonnegative_int, default=9999,
                        help="the dashboard's port (default: 9999)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--workdir", metavar="DIR",
                        help="keep the generated test module (test_qsbr_campaign.py) and the "
                             "workers' counts in DIR (default: a temporary folder, removed); "
                             "hypothesis fuzz --dashboard-only -- DIR/test_qsbr_campaign.py "
                             "then shows the campaign's database")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return parser


NAME = "campaign"


def main(argv: list[str]) -> int:
    from .cli import run_subcommand
    return run_subcommand(NAME, argv)


def run(argv: list[str]) -> int:
    """The subcommand (usage errors raise UsageError: cli.run_subcommand reports them)."""
    return _campaign(parser().parse_args(argv))


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = 0.0

    def __call__(self, result: Any) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 5.0:
            return
        self.last = now
        found = (f"; found {', '.join(result.first_found['facts'])}, shrinking"
                 if result.first_found else "")
        print(f"[campaign] {result.seconds:.0f} s, {len(result.per_worker)}/{result.workers} "
              f"workers running, {result.examples} examples "
              f"({result.examples_per_second:.1f}/s){found}", file=sys.stderr, flush=True)


def _campaign(args: argparse.Namespace) -> int:
    common.check_output_path(args.json, "--json")
    try:
        import hypofuzz  # noqa: F401
    except ImportError:
        raise UsageError("HypoFuzz is not installed: pip install "
                         "'qsbr-conformance[campaign]'") from None
    from ..checks.campaign import run_campaign
    from ..checks.database import DatabaseError, open_database
    from ..drivers import target as targets
    db = args.db or default_db()
    try:
        open_database(db)           # reached now: an unreachable database is a usage error
        target = targets.resolve(args.impl, args.profile, isolate=args.isolate,
                                 step_timeout=args.step_timeout)
    except (DatabaseError, targets.TargetError) as exc:
        raise UsageError(str(exc)) from None
    common.keep_hypothesis_out_of_cwd()
    if args.dashboard and not args.quiet:
        print(f"HypoFuzz dashboard: http://localhost:{args.port}/", file=sys.stderr)
    try:
        result = run_campaign(target, workers=args.workers, db=db, seconds=args.seconds,
                              examples=args.examples, steps=args.steps,
                              dashboard=args.dashboard, port=args.port,
                              progress=_Progress(not args.quiet), workdir=args.workdir)
    except (DatabaseError, targets.TargetError) as exc:
        raise UsageError(str(exc)) from None
    print("\n".join(report_lines(result, args)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(dict(result.to_json(), replay=replay_command(result, args)), handle,
                      indent=2, default=str)
            handle.write("\n")
    if result.problem:
        raise UsageError("HypoFuzz stopped by itself (its output is under PROBLEM above)")
    if result.stopped_by == "interrupted":
        return common.INTERRUPTED
    return 1 if result.failure is not None or result.first_found is not None else 0


def replay_command(result: Any, args: argparse.Namespace) -> str:
    """A run that replays what the campaign stored (its target, its --steps, its --db)."""
    from ..checks.plan import Plan
    plan = Plan(seed=0, steps=args.steps, database=result.db)
    return common.replay_command(plan, result.target, seed=False)


def report_lines(result: Any, args: argparse.Namespace) -> list[str]:
    from ..checks import statediff
    per_worker = ", ".join(f"{w['examples_per_second']:.1f}" for w in result.per_worker)
    lines = [
        f"campaign: {result.implementation} ({result.profile} profile), {result.workers} "
        f"worker(s), HypoFuzz {result.hypofuzz}",
        f"  {result.seconds:.1f} s, {result.examples} examples of up to {result.steps} steps "
        f"({result.checked_steps} steps), stopped by {result.stopped_by}",
        f"  throughput: {result.examples_per_second:.1f} examples/s in all, "
        f"{result.examples_per_second_per_worker:.1f} per worker ({per_worker}; from each "
        "worker's first example on)",
        f"  database: {result.db}",
    ]
    if result.problem:
        lines.append(f"  PROBLEM: {result.problem}")
    if result.first_found is None:
        lines.append(f"found: nothing (no failure observed in {result.examples} examples)")
        return lines
    first = result.first_found
    lines.append(f"found: [{', '.join(first['facts'])}] by worker {first['pid']} after its "
                 f"{first['examples']} examples ({result.examples_at_find} in all), "
                 f"{first['seconds']:.1f} s into its run")
    failure = result.failure
    if failure is None:
        lines.append("  not stored in the database before the campaign stopped (HypoFuzz was "
                     "still shrinking it): run longer, or rerun the campaign")
        return lines
    lines += [f"  replayed from the database: {failure.message.splitlines()[0]}",
              *[f"    {line}" for line in failure.message.splitlines()[1:]]]
    if failure.diff:
        lines.append("  differences (observed, expected):")
        lines += [f"    {line}" for line in statediff.render(failure.diff)]
    if failure.steps:
        lines.append("  shrunk sequence:")
        lines += [f"    {step}" for step in failure.steps]
    lines.append(f"  replay it: {replay_command(result, args)}")
    return lines
