"""``qsbr-conformance mutants``: build each mutant of the reference port (the patch files
reference_c/mutants/*.patch, conformance.checks.mutants) and show which check kills it."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from .. import sources
from ..checks.mutants import CatalogError, catalog, run_mutant, table
from ..checks.plan import DEFAULT_EXAMPLES
from . import common
from .common import UsageError


def parser() -> Any:
    parser = common.ArgumentParser(
        prog="qsbr-conformance mutants",
        description="Build each mutant of the reference port and check that the suite kills "
                    "it.  Needs the project's reference_c/ sources, make and a C compiler.  "
                    "Exit status 0: every mutant killed or argued; 1: a mutant survived; "
                    "2: usage error; 130: interrupted (Ctrl-C).")
    parser.add_argument("--source", metavar="DIR",
                        help="the reference_c folder (default: the checkout's, or a copy of "
                             "the installed package's in the cache folder)")
    parser.add_argument("--only", metavar="NAME[,NAME...]",
                        help="comma-separated mutant names (default: the whole catalog; see "
                             "--list)")
    parser.add_argument("--examples", type=common.positive_int, default=DEFAULT_EXAMPLES,
                        metavar="N", help="Hypothesis examples of the conformance attack "
                                          f"(default: {DEFAULT_EXAMPLES}, a run's)")
    parser.add_argument("--torture-seconds", type=common.positive_float, default=10.0,
                        metavar="SECONDS",
                        help="time bound of the torture attack per mutant (default: 10)")
    parser.add_argument("--work", default=None, metavar="DIR",
                        help="build folder (default: reference_c/build/mutants)")
    parser.add_argument("--json", metavar="PATH", help="also write the kill table as JSON")
    parser.add_argument("--list", action="store_true", help="list the catalog and exit")
    return parser


NAME = "mutants"


def main(argv: list[str]) -> int:
    from .cli import run_subcommand
    return run_subcommand(NAME, argv)


def run(argv: list[str]) -> int:
    """The subcommand (usage errors raise UsageError: cli.run_subcommand reports them)."""
    args = parser().parse_args(argv)
    common.check_output_path(args.json, "--json")
    try:
        source = sources.workspace(args.source)
    except sources.SourcesNotFound as exc:
        raise UsageError(str(exc)) from None
    try:
        mutants = catalog(source)
    except CatalogError as exc:
        raise UsageError(str(exc)) from None
    if args.list:
        for m in mutants:
            print(f"{m.name:<27} {m.breaks:<34} {m.description}")
        return 0
    chosen = mutants
    if args.only:
        names = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = names - {m.name for m in mutants}
        if unknown:
            raise UsageError(f"unknown mutant(s): {', '.join(sorted(unknown))} (see --list)")
        chosen = [m for m in mutants if m.name in names]
    work = Path(args.work) if args.work else source / "build" / "mutants"
    common.keep_hypothesis_out_of_cwd()     # the conformance attacks run Hypothesis here
    outcomes = []
    interrupted = False
    try:
        for index, mutant in enumerate(chosen, 1):
            print(f"[{index}/{len(chosen)}] {mutant.name} ...", file=sys.stderr, flush=True)
            outcomes.append(run_mutant(source, mutant, work, args.examples,
                                       args.torture_seconds))
    except KeyboardInterrupt:
        interrupted = True
    except subprocess.CalledProcessError as exc:
        print(f"qsbr-conformance mutants: building {chosen[len(outcomes)].name} failed "
              f"(exit status {exc.returncode}): {(exc.stderr or '').strip()[-300:]}",
              file=sys.stderr)
        return 1
    print(table(outcomes))
    killed = [o for o in outcomes if o.killed]
    survivors = [o for o in outcomes if not o.killed and not o.mutant.equivalent]
    argued = [o for o in outcomes if not o.killed and o.mutant.equivalent]
    median = statistics.median(o.seconds for o in killed) if killed else 0.0
    print(f"\n{len(killed)} killed, {len(argued)} not killed but argued in the catalog, "
          f"{len(survivors)} survived; median time to kill {median:.1f} s (build included)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([{"mutant": o.mutant.name, "breaks": o.mutant.breaks,
                        "killed": o.killed, "by": o.by, "detail": o.detail,
                        "seconds": round(o.seconds, 2), "argument": o.mutant.equivalent}
                       for o in outcomes], handle, indent=2)
    if interrupted:
        print(f"qsbr-conformance mutants: interrupted after {len(outcomes)} of {len(chosen)} "
              f"mutants; the table above is incomplete", file=sys.stderr)
        return common.INTERRUPTED
    return 1 if survivors else 0
