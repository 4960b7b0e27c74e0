"""``qsbr-conformance upstream SOURCE``: parses the options, calls conformance.checks.upstream
(compare, build, run) and prints what it found.  See that module for what is checked."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..checks.plan import DEFAULT_EXAMPLES
from ..checks.upstream import (
    Comparison,
    Run,
    UpstreamError,
    build,
    compare,
    port_sources,
    read_release,
    run_differential,
    run_model_checker,
    run_tests,
    run_torture,
)
from ..model.profiles import BY_NAME, ReleaseProfile, UnknownRelease, for_version
from . import common
from .common import UsageError


def parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(
        prog="qsbr-conformance upstream",
        description="Check a CPython release's own Python/qsbr.c and pycore_qsbr.h: compare "
                    "them with the port's profiles (every difference is printed), build them "
                    "against the port's stand-ins and run the C tests, the torture and the "
                    "differential run on them.  The only edit made to upstream's code is "
                    "removing the holds_gil assert in _Py_qsbr_unregister.")
    parser.add_argument("source", metavar="SOURCE",
                        help="a CPython source tree or release tarball (Python-X.Y.Z.tar.xz)")
    parser.add_argument("--profile", choices=sorted(BY_NAME), default=None,
                        help="build and check as this release profile (default: the profile "
                             "of the release's version in the release matrix)")
    parser.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, metavar="N",
                        help=f"differential examples (default: {DEFAULT_EXAMPLES}, a run's)")
    parser.add_argument("--torture-seconds", type=float, default=3.0, metavar="S",
                        help="torture length (default: 3)")
    parser.add_argument("--source", dest="port_source", metavar="DIR", default=None,
                        help="the port's reference_c folder (default: the checkout's, or the "
                             "installed package's copy)")
    parser.add_argument("--compare-only", action="store_true",
                        help="only compare the sources (no build, no runs)")
    return parser


NAME = "upstream"


def main(argv: list[str]) -> int:
    from .cli import run_subcommand
    return run_subcommand(NAME, argv)


def run(argv: list[str]) -> int:
    """The subcommand (usage errors raise UsageError: cli.run_subcommand reports them)."""
    args = parser().parse_args(argv)
    if args.examples < 1 or args.torture_seconds <= 0:
        raise UsageError("--examples and --torture-seconds must be positive")
    try:
        port = port_sources(args.port_source)
        release = read_release(args.source)
    except UpstreamError as exc:
        raise UsageError(str(exc)) from None
    version = ".".join(map(str, release.version))
    print(f"upstream: CPython {version} ({args.source})")
    expected: ReleaseProfile | None = None
    try:
        expected = for_version(release.version)
    except UnknownRelease as exc:
        print(f"release matrix: {exc}")
    else:
        print(f"release matrix: {version} is profile {expected.name} "
              f"(QSBR_PROFILE={expected.c_profile})")

    comparisons, edits = compare(release, port)
    for edit in edits:
        print(f"edit: {edit}")
    if not edits:
        print("edit: none (no holds_gil assert found in qsbr.c)")
    print("source comparison with the port (normalised: the port's preamble, includes, "
          "profile conditionals, blank-line runs):")
    matching = [c.profile for c in comparisons if c.identical]
    for c in comparisons:
        state = "identical" if c.identical else f"{c.count()} lines differ"
        mark = "  <- matches" if c.identical else ""
        print(f"  {c.profile.name:<14} {state}{mark}")
    target = BY_NAME[args.profile] if args.profile else expected
    if target is None:
        target = matching[0] if matching else min(comparisons, key=Comparison.count).profile
    shown = next(c for c in comparisons if c.profile == target)
    if not shown.identical:
        print(f"differences from the port's {target.name} profile "
              "('-' port, '+' upstream):")
        for lines in shown.diffs.values():
            for line in lines:
                print(f"  {line}")
    matches_expected = expected is not None and expected in matching

    runs: list[Run] = []
    if not args.compare_only:
        common.keep_hypothesis_out_of_cwd()     # the differential run's Hypothesis storage
        with tempfile.TemporaryDirectory(prefix="qsbr-upstream-") as scratch:
            built = build(release, target, port, Path(scratch))
            print(f"build: upstream's qsbr.c and pycore_qsbr.h with the port's stand-ins, "
                  f"QSBR_PROFILE={target.c_profile} ({target.name})")
            for error in built.errors:
                runs.append(Run("build", False, error.splitlines()[0], error))
            if built.tests:
                runs.append(run_tests(built.tests))
            if built.torture:
                runs.append(run_torture(built.torture, args.torture_seconds))
            if built.library:
                runs.append(run_differential(built.library, target, args.examples))
            checked = run_model_checker(Path(scratch), target, port)
            if isinstance(checked, Run):
                runs.append(checked)
            else:
                print(f"  model checker: not run ({checked})")
        for run in runs:
            print(f"  {run.name}: {'ok' if run.ok else 'FAILED'}: {run.summary}")
            if not run.ok and run.output:
                print("    " + run.output.strip().replace("\n", "\n    "))
    ok_runs = all(run.ok for run in runs)
    if matches_expected and ok_runs:
        print(f"verdict: MATCHES {expected.name if expected else ''} with zero differences"
              + ("" if args.compare_only else "; "
                 + ", ".join(run.name for run in runs) + " pass"))
        return 0
    reasons = []
    if expected is None:
        reasons.append("the version is not in the release matrix")
    elif not matches_expected:
        others = f" (matches {', '.join(p.name for p in matching)})" if matching else ""
        reasons.append(f"DIFFERS from its profile {expected.name}: "
                       f"{next(c for c in comparisons if c.profile == expected).count()} "
                       f"lines{others}")
    reasons += [f"{run.name} failed" for run in runs if not run.ok]
    print("verdict: " + "; ".join(reasons))
    return 1


