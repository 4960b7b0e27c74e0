"""``qsbr-conformance hazards [SOURCE]``: the orderings QSBR's callers depend on, on hardware.

Parses the options, runs conformance.checks.hazards and renders its report as text (stdout),
Markdown and JSON.  Exit status: 0 when every shape ran, every control counted 0 and no order
that must hold was violated; 1 when a control was non-zero (a broken harness), a fence, an
advancing goal, a fix or a seq_cst first load showed the forbidden outcome at a rate comparable
to the unfixed one, a build failed or a litmus run failed; 2 for a usage error.  A comparison
that is inconclusive on this machine is reported as such, not as a failure.  docs/hazards.md
describes the shapes and the decide rule.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .. import sources
from ..checks import decide, hazards
from ..model.profiles import BY_NAME, RELEASE_PROFILES, UnknownRelease, resolve
from . import common


def budget_from(args: argparse.Namespace) -> decide.Budget:
    try:
        return decide.budget_from(args)
    except ValueError as exc:
        raise common.UsageError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(
        prog="qsbr-conformance hazards",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Hardware litmus tests of the orderings QSBR's callers depend on "
                    "(stale goal, retire before unlink, the read side after attach), built "
                    "from a qsbr.c: the port's (default, each release profile) or a CPython "
                    "release's own, with the Relacy model checker's verdict beside each "
                    "shape.  " + hazards.ZERO_MEANS + ".",
        epilog="exit status: 0 every shape ran, every control counted 0 and no order that "
               "must hold was violated (an inconclusive comparison is not a failure); 1 a "
               "control was non-zero (a broken harness), a fence, advancing goal, fix or "
               "seq_cst first load was not below the unfixed rate, or a build or a run failed; "
               "2 usage error")
    parser.add_argument("source", metavar="SOURCE", nargs="?", default=None,
                        help="a CPython source tree or release tarball (default: the port, "
                             "each release profile)")
    decide.add_budget_options(parser)
    parser.add_argument("--seed", type=common.positive_int, default=1, metavar="N",
                        help="seed of the offsets' streams (default 1): the same seed draws "
                             "the same offsets (the hardware's outcomes are not replayable)")
    parser.add_argument("--fix", action="append", default=[], metavar="NAME",
                        help="also run with this fix from reference_c/fixes/ applied to a copy "
                             "(repeatable): stale-goal-fence, stale-goal-rmw")
    parser.add_argument("--profile", action="append", default=[], metavar="PROFILE",
                        help="release profile(s) to build the port as (default: all four), or "
                             "the profile to build SOURCE as (default: its version's)")
    parser.add_argument("--binary", action="append", default=[], metavar="PYTHON",
                        help="also run the shapes through this free-threaded interpreter's own "
                             "compiled _Py_qsbr_* functions (repeatable; qsbr-conformance must "
                             "be installed in it): the evidence is then about the shipped code")
    parser.add_argument("--library", metavar="LIB",
                        help="instead: the litmus of a C ABI library through its exported "
                             "qsbr_api.h functions (python -m conformance.checks.cabi_hazards "
                             "--help lists its options)")
    parser.add_argument("--no-relacy", action="store_true",
                        help="skip the model checker (Relacy) beside the litmus")
    parser.add_argument("--json", metavar="PATH", help="write the JSON report here")
    parser.add_argument("--markdown", metavar="PATH", help="write the Markdown report here")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return parser


def _what(o: hazards.Outcome) -> str:
    return (f"{o.shape.goal}{' +fence' if o.shape.fence else ''}"
            f"{' CONTROL' if o.shape.control else ''}")


def _relacy_cell(o: hazards.Outcome) -> str:
    if o.shape.control:
        return "-"
    if o.relacy is None:
        return "no scenario" if o.shape.relacy_scenario is None else "not run"
    return f"{o.relacy['verdict']} ({o.relacy['scenario']})"


def _verdict_cell(o: hazards.Outcome) -> str:
    if o.shape.control:
        return "control ok" if o.control_ok else "CONTROL NON-ZERO"
    if o.unchecked_here:
        return "unchecked here (see note)"
    verdict = o.verdict.get("verdict", "")
    return verdict.upper() if o.wrong else verdict


def _rows(report: hazards.Report) -> list[list[str]]:
    rows = []
    for o in report.outcomes:
        low, high = o.interval
        rows.append([o.target.label, o.target.fix or "-", o.shape.name, _what(o), o.shape.role,
                     f"{o.iterations:,}", f"{o.forbidden:,}", f"{o.per_million:,.1f}",
                     f"[{low:,.1f}, {high:,.1f}]", f"0..{o.tally.offsets - 1}",
                     _verdict_cell(o), _relacy_cell(o)])
    return rows


HEADERS = ["target", "fix", "shape", "goal", "role", "iterations", "forbidden", "per million",
           "95% interval", "offsets", "verdict", "Relacy"]


def _offset_lines(report: hazards.Report) -> list[str]:
    """Per reference row: the calibration sweep and the rate per band of relative offset."""
    out = []
    for o in report.outcomes:
        if o.shape.role != decide.REFERENCE:
            continue
        out.append(f"{o.target.label}, reference (stale-goal, non-advancing): offsets "
                   f"0..{o.tally.offsets - 1} per side, seed {o.tally.seed}")
        if o.calibration:
            out.append("  calibration (not counted): " + ", ".join(
                f"0..{c['offsets'] - 1}: {c['forbidden']}/{c['iterations']:,}"
                for c in o.calibration))
        out.append("  rate by relative offset (writer's delay minus reader's): " + ", ".join(
            f"[{b['low']}, {b['high']}] {b['per_million']:,.0f}/M" for b in o.tally.band_rows()))
    return out


def _traces(report: hazards.Report) -> list[tuple[str, dict]]:
    seen, out = set(), []
    for o in report.outcomes:
        r = o.relacy
        if r and r.get("first_failure"):
            key = (o.target.label, o.target.fix, r["scenario"])
            if key not in seen:
                seen.add(key)
                out.append((f"{o.target.label}{' + ' + o.target.fix if o.target.fix else ''}"
                            f": {r['scenario']}", r))
    return out


def _verdict(report: hazards.Report) -> str:
    found = report.comparisons()
    summary = ", ".join(f"{n} {verdict}" for verdict, n in sorted(found.items())) or "none"
    if report.exit_status == 0:
        return (f"verdict: every shape ran, every control counted 0; comparisons with the "
                f"unfixed rate: {summary}")
    parts = []
    bad = [o for o in report.outcomes if not o.control_ok]
    if bad:
        parts.append(f"{len(bad)} control(s) NON-ZERO: the harness is broken")
    if report.wrong:
        parts.append(f"{len(report.wrong)} row(s) that must be below the unfixed rate are not: "
                     + "; ".join(report.wrong))
    if report.errors:
        parts.append(f"{len(report.errors)} build/run error(s)")
    return "verdict: " + "; ".join(parts) + f" (comparisons: {summary})"


def _binary_label(shape: dict) -> str:
    from ..checks.hazards_live import label
    return label(shape)


def render_text(report: hazards.Report) -> str:
    out = [f"hazards: {report.source or 'the port (reference_c/src/qsbr.c)'}",
           f"cpu: {report.cpu}; threads pinned to CPUs "
           f"{', '.join(sorted({o.pinned for o in report.outcomes})) or '-'}",
           f"what a zero means: {hazards.ZERO_MEANS}",
           f"interval: {hazards.INTERVAL_METHOD}, per million iterations",
           hazards.CONTROL_MEANS, report.budget.describe()]
    out += [f"note: {n}" for n in report.notes]
    out += [f"note: {text}" for text in sorted({o.unchecked_here for o in report.outcomes
                                                if o.unchecked_here})]
    widths = [max(len(h), *(len(r[i]) for r in _rows(report))) if report.outcomes else len(h)
              for i, h in enumerate(HEADERS)]
    out.append("")
    out.append("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)))
    out.append("  ".join("-" * w for w in widths))
    for row in _rows(report):
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    out += ["", *_offset_lines(report)]
    if report.binary:
        out.append("\nthrough interpreter binaries' own compiled functions (--binary):")
        for shape in report.binary:
            low, high = shape["interval"]
            out.append(f"  {shape['release']:<8} {_binary_label(shape):<40} "
                       f"{shape['iterations']:>10,} iterations {shape['forbidden']:>8,} "
                       f"forbidden  {shape['per_million']:>10,.1f}/M [{low:,.1f}, {high:,.1f}]"
                       f"  offsets 0..{shape.get('offsets', 1) - 1}  "
                       + ("CONTROL " + ("NON-ZERO" if shape.get("control_failed") else "ok")
                          if shape.get("control") else str(shape.get("verdict"))))
            if shape.get("compared_with"):
                out.append(f"    against {shape['compared_with']}'s unfixed rate: "
                           f"{shape['compared_verdict']} ({shape['compared_why']})")
    if report.relacy_note:
        out.append(f"\nRelacy: not run ({report.relacy_note})")
    for title, r in _traces(report):
        out.append(f"\nRelacy, first failing execution, {title} ({r['detail']}, iteration "
                   f"{r['iterations']}):")
        out += ["  " + line for line in r["first_failure"].splitlines()]
    out.append("")
    if report.audit:
        out.append(f"caller audit: {len(report.audit)} site(s)")
        for site in report.audit:
            out.append(f"  {site.get('file')}:{site.get('line')} {site.get('function')}: "
                       f"{site.get('verdict')}")
    else:
        out.append(f"caller audit: {report.audit_note or 'no sites'}")
    out += [f"error: {e}" for e in report.errors]
    out.append(_verdict(report))
    return "\n".join(out) + "\n"


def render_markdown(report: hazards.Report) -> str:
    out = [f"# qsbr-conformance hazards: {report.source or 'the port'}", "",
           f"- CPU: {report.cpu}; threads pinned to CPUs "
           f"{', '.join(sorted({o.pinned for o in report.outcomes})) or '-'}",
           f"- **What a zero means:** {hazards.ZERO_MEANS}.",
           f"- Interval: {hazards.INTERVAL_METHOD}, per million iterations.",
           f"- {hazards.CONTROL_MEANS}.", f"- {report.budget.describe()}."]
    out += [f"- Note: {n}" for n in report.notes]
    out += [f"- Note: {text}." for text in sorted({o.unchecked_here for o in report.outcomes
                                                   if o.unchecked_here})]
    out += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(row) + " |" for row in _rows(report)]
    out += ["", "## Offsets", ""] + [f"- {line.strip()}" for line in _offset_lines(report)]
    out += ["", "## Shapes", ""]
    out += [f"- **{name}**: {text}" for name, text in hazards.SHAPE_TEXT.items()]
    if report.relacy_note:
        out += ["", f"Relacy: not run ({report.relacy_note})."]
    for title, r in _traces(report):
        out += ["", f"## Relacy, first failing execution: {title}", "",
                f"{r['detail']}, iteration {r['iterations']} of the seeded random scheduler.",
                "", "```", r["first_failure"], "```"]
    out += ["", "## Caller audit", ""]
    if report.audit:
        out += ["| file | function | line | verdict |", "|---|---|---|---|"]
        out += [f"| {s.get('file')} | {s.get('function')} | {s.get('line')} | "
                f"{s.get('verdict')} |" for s in report.audit]
    else:
        out.append(report.audit_note or "no sites")
    if report.errors:
        out += ["", "## Errors", ""] + [f"```\n{e}\n```" for e in report.errors]
    out += ["", _verdict(report)]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if any(a == "--library" or a.startswith("--library=") for a in argv):
        # A C ABI library instead of a qsbr.c: its own litmus through its exported functions
        # (conformance/checks/cabi_hazards.py; docs/concurrency.md).
        from ..checks import cabi_hazards
        return cabi_hazards.main(argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:       # --help (0) or a usage error (2), as a return value
        return exc.code if isinstance(exc.code, int) else common.USAGE
    try:
        common.check_output_path(args.json, "--json")
        common.check_output_path(args.markdown, "--markdown")
        try:
            port = sources.workspace()
        except sources.SourcesNotFound as exc:
            raise common.UsageError(str(exc)) from None
        try:
            chosen = [resolve(name) for name in args.profile]
        except UnknownRelease as exc:
            raise common.UsageError(f"--profile: {exc} ({', '.join(BY_NAME)})") from None
        if args.source is None:
            targets = hazards.port_targets(chosen or list(RELEASE_PROFILES))
        else:
            if len(chosen) > 1:
                raise common.UsageError("--profile: give one profile for SOURCE")
            targets = [hazards.release_target(args.source, chosen[0] if chosen else None)]
        budget = budget_from(args)
        known = hazards.fixes(port)
        unknown = [name for name in args.fix if name not in known]
        if unknown:
            raise common.UsageError(f"--fix: unknown fix {', '.join(unknown)} "
                                    f"(reference_c/fixes/ has {', '.join(known) or 'none'})")
    except (common.UsageError, hazards.HazardsError) as exc:
        print(f"qsbr-conformance hazards: {exc}", file=sys.stderr)
        return common.USAGE

    def progress(line: str) -> None:
        if not args.quiet:
            print(f"hazards: {line}", file=sys.stderr, flush=True)

    report = hazards.run(targets, port, budget, args.fix, args.source,
                         relacy=not args.no_relacy, seed=args.seed, progress=progress)
    for number, python in enumerate(args.binary):
        if number and budget.offsets is None and report.binary:
            # The later binaries run at the offsets the first one's calibration chose, so that
            # a patched build is measured as its unpatched one was (compare_binaries).
            first = next((s for s in report.binary if s.get("role") == decide.REFERENCE), None)
            if first is not None:
                budget = dataclasses.replace(budget, offsets=int(first["offsets"]))
        hazards.run_binary(report, python, budget, progress)
    hazards.compare_binaries(report)
    sys.stdout.write(render_text(report))
    if args.json:
        Path(args.json).write_text(json.dumps(hazards.to_json(report, argv), indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(render_markdown(report))
    return report.exit_status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
