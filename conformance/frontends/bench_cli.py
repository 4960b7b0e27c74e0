"""``qsbr-conformance bench``: the port beside liburcu-qsbr and the hardware limit, and the
suite's own speed.  Prints a table, writes JSON (``--json``) and a PNG plot (``--plot``)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import sources
from ..bench import native, plot, suite
from . import common
from .common import UsageError

PROFILES = ("3.13", "3.14")


def parser() -> argparse.ArgumentParser:
    p = common.ArgumentParser(
        prog="qsbr-conformance bench",
        description="Benchmarks: the port's QSBR operations beside liburcu-qsbr and the "
                    "hardware limit (reference_c/bench/bench.c, both profiles), readers beside "
                    "one reclaiming writer, and the suite's own speed.  Needs the project's "
                    "reference_c/ sources, make and a C compiler; liburcu-dev for the liburcu "
                    "column; matplotlib for the plot.")
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    p.add_argument("--plot", metavar="PATH",
                   help="PNG plot (default: the --json path with .png, else qsbr-bench.png)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run (seconds): few rounds, short samples, 1..2 readers, "
                        "a 20-example conformance run")
    p.add_argument("--profile", choices=(*PROFILES, "both"), default="both",
                   help="profile(s) of the C bench (default: both)")
    p.add_argument("--rounds", type=int, metavar="N",
                   help="interleaved rounds per operation (default 15; --quick 5)")
    p.add_argument("--readers", type=int, metavar="N",
                   help="reader threads 1..N in the threaded part (default 4; --quick 2; "
                        "0 skips it)")
    p.add_argument("--contention", type=int, metavar="N",
                   help="the goal functions under contention: 1..N threads reading wr_seq "
                        "beside one writer taking goals (default: the CPU count; --quick 2; "
                        "0 skips it); with --fix, the port and each fix side by side")
    p.add_argument("--pin", action="store_true",
                   help="pin the writer to CPU 0 and the readers to the next CPUs")
    p.add_argument("--no-native", action="store_true", help="skip the C bench")
    p.add_argument("--no-suite", action="store_true", help="skip the suite's own speed")
    p.add_argument("--mutants-json", metavar="PATH",
                   help="time to kill from this `qsbr-conformance mutants --json` output")
    p.add_argument("--source", help="the reference_c folder (default: the checkout's, or a copy "
                                    "of the installed package's in the cache folder)")
    p.add_argument("--build-dir", metavar="DIR",
                   help="where to build the bench (default: the reference_c folder's build/)")
    p.add_argument("--fix", action="append", default=[], metavar="NAME",
                   help="also build the C bench with this fix from reference_c/fixes/ applied "
                        "to a copy (repeatable), and show its cost beside the port's")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def _cell(stat: dict[str, float] | None, fmt: str = "{:.2f}") -> str:
    if not stat:
        return "-"
    return f"{fmt.format(stat['best'])} ({fmt.format(stat['median'])})"


def _ratio(ratio: dict[str, float] | None) -> str:
    return f"{ratio['best']:.2f}" if ratio and "best" in ratio else "-"


def native_table(profile: str, data: dict[str, Any]) -> str:
    urcu = data["urcu"] or "not found at build time (Debian: apt-get install liburcu-dev)"
    lines = [f"C bench, profile {profile}: ns/op, best (median) of {data['rounds']} interleaved "
             f"rounds, {data['clock']}; liburcu: {urcu}",
             f"{'operation':<22} {'port':>18} {'limit':>18} {'liburcu':>18} "
             f"{'port/limit':>10} {'port/urcu':>10}"]
    for op in data["operations"]:
        lines.append(f"{op['name']:<22} {_cell(op['port']):>18} {_cell(op['limit']):>18} "
                     f"{_cell(op['urcu']):>18} {_ratio(op['ratios']['port/limit']):>10} "
                     f"{_ratio(op['ratios']['port/urcu']):>10}")
    threads = data["threads"]
    if threads["rows"]:
        lines += ["",
                  f"readers passing quiescent states beside one writer ({data['cpus']} CPUs): "
                  f"best (median) of {threads['rounds']} rounds; grace-period latency is each "
                  f"round's median",
                  f"{'readers':>7} {'port gp ns':>22} {'urcu gp ns':>22} "
                  f"{'port reclaimed/s':>22} {'urcu reclaimed/s':>22}"]
        for row in threads["rows"]:
            urcu_row = row.get("urcu") or {}
            lines.append(
                f"{row['readers']:>7} {_cell(row['port']['gp_latency_ns'], '{:.0f}'):>22} "
                f"{_cell(urcu_row.get('gp_latency_ns'), '{:.0f}'):>22} "
                f"{_cell(row['port']['reclaim_per_s'], '{:.3g}'):>22} "
                f"{_cell(urcu_row.get('reclaim_per_s'), '{:.3g}'):>22}")
    rows = data.get("contention", {}).get("rows", [])
    if rows:
        lines += ["", f"the goal ({data['contention']['goal']}) under contention: one writer "
                      f"taking goals, N threads passing quiescent states (each a load of "
                      f"wr_seq); ns of each thread's CPU time, best (median) of "
                      f"{data['contention']['rounds']} rounds",
                  f"{'readers':>7} {'writer ns/goal':>18} {'reader ns/qs':>18} "
                  f"{'overlap (of 1+N)':>18}"]
        for row in rows:
            lines.append(f"{row['readers']:>7} {_cell(row['goal_ns']):>18} "
                         f"{_cell(row['reader_qs_ns']):>18} {_cell(row.get('overlap')):>18}")
    return "\n".join(lines)


def _merge_stats(stats: list[dict[str, float]]) -> dict[str, float] | None:
    if not stats:
        return None
    medians = sorted(s["median"] for s in stats)
    return {"best": min(s["best"] for s in stats), "median": medians[len(medians) // 2]}


def contention_table(profile: str, variants: dict[str, dict[str, Any]]) -> str:
    """The goal under contention, the port as it is and with each fix, side by side."""
    names = list(variants)
    first = variants[names[0]]["contention"]
    lines = [f"C bench, profile {profile}: the goal ({first['goal']}) under contention, "
             f"ns of each thread's CPU time, best (median) over {FIX_REPEATS} alternating runs "
             f"of each build; one writer "
             f"taking goals, N threads passing quiescent states (each a load of wr_seq)",
             "overlap: the threads' CPU time over the wall time, 1+N when each thread had a CPU "
             "all along, near 1 when they took turns (no contention measured)",
             f"{'readers':>7} " + " ".join(f"{name + ' goal':>24}" for name in names) + " "
             + " ".join(f"{name + ' reader qs':>24}" for name in names)
             + " " + " ".join(f"{name + ' overlap':>24}" for name in names)]
    for i, row in enumerate(first["rows"]):
        cells = [_cell(variants[n]["contention"]["rows"][i]["goal_ns"]) for n in names]
        cells += [_cell(variants[n]["contention"]["rows"][i]["reader_qs_ns"]) for n in names]
        cells += [_cell(variants[n]["contention"]["rows"][i].get("overlap")) for n in names]
        lines.append(f"{row['readers']:>7} " + " ".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


#: The operations a fix of the non-advancing goal changes, a deferred free around it, and
#: advance, which no fix touches (its difference is the noise between runs).
FIX_OPS = ("deferred_advance", "shared_next", "deferred_free", "advance")
FIX_REPEATS = 3


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one bench binary as one: per operation, the best of the runs' bests and
    the median of their medians."""
    merged = dict(runs[0])
    operations = []
    for i, op in enumerate(runs[0]["operations"]):
        stats = [run["operations"][i]["port"] for run in runs if run["operations"][i]["port"]]
        operations.append({**op, "port": _merge_stats(stats)})
    merged["operations"] = operations
    if "contention" in runs[0]:
        rows = []
        for i, row in enumerate(runs[0]["contention"]["rows"]):
            rows.append({**row, **{key: _merge_stats([run["contention"]["rows"][i][key]
                                                      for run in runs])
                                   for key in ("goal_ns", "reader_qs_ns", "overlap")
                                   if key in row},
                         "goals": sum(run["contention"]["rows"][i]["goals"] for run in runs)})
        merged["contention"] = {**runs[0]["contention"], "rows": rows}
    return merged


def fix_table(fix: str, profile: str, plain: dict[str, Any], fixed: dict[str, Any]) -> str:
    """ns/op of the port as it is and with the fix, for the operations the fix touches."""
    before = {op["name"]: op["port"] for op in plain["operations"]}
    after = {op["name"]: op["port"] for op in fixed["operations"]}
    lines = [f"C bench, profile {profile}, fix {fix}: ns/op, best (median) over {FIX_REPEATS} "
             f"alternating runs of each build (the port as it is; a copy with the fix); "
             f"advance is untouched by the fix: its difference is the noise",
             f"{'operation':<22} {'port':>18} {'port + fix':>18} {'fix costs (best)':>17}"]
    for name in FIX_OPS:
        if name in before and name in after and before[name] and after[name]:
            lines.append(f"{name:<22} {_cell(before[name]):>18} {_cell(after[name]):>18} "
                         f"{after[name]['best'] - before[name]['best']:>+17.2f}")
    return "\n".join(lines)


def suite_table(data: dict[str, Any]) -> str:
    lines = [f"the suite's own speed ({data['implementation']}, profile {data['profile']})",
             f"{'mode':<11} {'checked steps':>13} {'seconds':>8} {'steps/s':>9}"]
    for mode in data["modes"]:
        if not mode.get("available", True):
            lines.append(f"{mode['mode']:<11} not measured: {mode['why']}")
            continue
        lines.append(f"{mode['mode']:<11} {mode['steps']:>13} {mode['seconds']:>8.2f} "
                     f"{mode['steps_per_second']:>9.0f}")
    v = data["time_to_verdict"]
    lines.append(f"time to the verdict of a {'default ' if v['default_run'] else ''}run "
                 f"({v['examples']} examples x {v['steps_per_example']} steps, seed "
                 f"{v['seed']}): {v['seconds']:.1f} s, "
                 f"{'conforms' if v['conforms'] else 'DOES NOT CONFORM'}")
    m = data["mutants"]
    if m is None:
        lines.append("time to kill: not measured (run `qsbr-conformance mutants --json m.json`, "
                     "then pass --mutants-json m.json)")
    elif m["killed"]:
        lines.append(f"time to kill ({m['killed']} of {m['mutants']} mutants killed, build "
                     f"included): median {m['median_seconds']:.1f} s, worst "
                     f"{m['worst_seconds']:.1f} s ({m['worst_mutant']})")
    else:
        lines.append(f"time to kill: no mutant of {m['mutants']} was killed in {m['source']}")
    return "\n".join(lines)


NAME = "bench"


def main(argv: list[str]) -> int:
    from .cli import run_subcommand
    return run_subcommand(NAME, argv)


def run(argv: list[str]) -> int:
    """The subcommand (usage errors raise UsageError: cli.run_subcommand reports them)."""
    args = parser().parse_args(argv)
    prog = "qsbr-conformance bench"
    if args.rounds is not None and not 1 <= args.rounds <= 64:
        raise UsageError("--rounds must be between 1 and 64")
    if args.readers is not None and not 0 <= args.readers <= 64:
        raise UsageError("--readers must be between 0 and 64")
    if args.contention is not None and not 0 <= args.contention <= 64:
        raise UsageError("--contention must be between 0 and 64")
    mutants_json = Path(args.mutants_json) if args.mutants_json else None
    if mutants_json is not None and not mutants_json.is_file():
        raise UsageError(f"--mutants-json: no such file: {mutants_json}")
    source = None
    if not args.no_native:
        try:
            source = sources.workspace(args.source)
        except sources.SourcesNotFound as exc:
            raise UsageError(f"{exc} (give --source, or --no-native)") from None
    if args.fix:
        from ..checks import hazards
        known = hazards.fixes(source) if source is not None else {}
        unknown = [name for name in args.fix if name not in known]
        if unknown or source is None:
            why = ("unknown fix " + ", ".join(unknown)) if unknown else \
                "needs the C bench (not --no-native)"
            raise UsageError(f"--fix: {why} (reference_c/fixes/ has {', '.join(known) or 'none'})")
    plot_path = Path(args.plot) if args.plot else (
        Path(args.json).with_suffix(".png") if args.json else Path("qsbr-bench.png"))

    def note(text: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - began:5.1f} s] {text}", file=sys.stderr, flush=True)

    began = time.perf_counter()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result: dict[str, Any] = {
        "schema": 1,
        "command": " ".join(["qsbr-conformance", "bench", *argv]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_average_at_start": [round(x, 2) for x in load] if load else None},
        "native": {}, "suite": None, "plot": None, "seconds": None,
    }
    extra: list[str] = []
    if args.rounds is not None:
        extra += ["-r", str(args.rounds)]
    if args.readers is not None:
        extra += ["-R", str(args.readers)]
    if args.contention is not None:
        extra += ["-C", str(args.contention)]
    if args.pin:
        extra.append("-p")
    profiles = PROFILES if args.profile == "both" else (args.profile,)
    outputs: list[str] = []
    if source is not None:
        for profile in profiles:
            try:
                note(f"building the C bench ({profile})")
                binary, notes = native.build(source, profile,
                                             Path(args.build_dir) if args.build_dir else None)
                if notes and not args.quiet:
                    print(notes, file=sys.stderr)
                note(f"running the C bench ({profile})")
                data = native.run(binary, quick=args.quick, args=extra)
            except native.BenchError as exc:
                print(f"{prog}: {exc}", file=sys.stderr)
                return 1
            result["native"][profile] = data
            outputs.append(native_table(profile, data))
        for fix in args.fix:
            for profile in profiles:
                try:
                    with tempfile.TemporaryDirectory(prefix="qsbr-bench-fix-") as scratch:
                        copy = hazards.patched_copy(source, fix, Path(scratch) / "reference_c")
                        note(f"building the C bench ({profile}) with fix {fix}")
                        fixed, _ = native.build(copy, profile, Path(scratch) / "build")
                        plain, _ = native.build(source, profile, Path(scratch) / "plain")
                        # The single-thread operations only (-R 0), the two builds run
                        # alternately FIX_REPEATS times each: separate processes on a shared
                        # machine differ by a few ns, and "advance" (which no fix touches)
                        # shows by how much.
                        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "fixed": []}
                        for repeat in range(FIX_REPEATS):
                            for kind, binary in (("plain", plain), ("fixed", fixed)):
                                note(f"running the C bench ({profile}, {kind}, fix {fix}, "
                                     f"{repeat + 1}/{FIX_REPEATS})")
                                runs[kind].append(native.run(binary, quick=args.quick,
                                                             args=[*extra, "-R", "0"]))
                except (native.BenchError, hazards.HazardsError) as exc:
                    print(f"{prog}: {exc}", file=sys.stderr)
                    return 1
                merged = {kind: merge_runs(data) for kind, data in runs.items()}
                result.setdefault("native_fixes", {}).setdefault(fix, {})[profile] = {
                    "repeats": FIX_REPEATS, "plain": merged["plain"], "fixed": merged["fixed"]}
                outputs.append(fix_table(fix, profile, merged["plain"], merged["fixed"]))
        for profile in profiles if args.fix else ():
            fixes = result["native_fixes"]
            variants = {"port": fixes[args.fix[0]][profile]["plain"],
                        **{fix: fixes[fix][profile]["fixed"] for fix in args.fix}}
            if all(v.get("contention", {}).get("rows") for v in variants.values()):
                outputs.append(contention_table(profile, variants))
    if not args.no_suite:
        from ..frontends import common
        common.keep_hypothesis_out_of_cwd()     # its storage in the cache folder, as the CLI's
        try:
            result["suite"] = suite.measure(quick=args.quick, mutants_json=mutants_json,
                                            note=note)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        outputs.append(suite_table(result["suite"]))
    if result["native"]:
        if plot.available():
            plot.write(result["native"], plot_path)
            result["plot"] = str(plot_path)
        else:
            print(f"{prog}: plot not written: {plot.MISSING}", file=sys.stderr)
    result["seconds"] = round(time.perf_counter() - began, 1)
    print("\n\n".join(outputs))
    if result["plot"]:
        print(f"\nplot: {result['plot']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
        print(f"json: {args.json}")
    print(f"bench: {result['seconds']:.1f} s")
    return 0
