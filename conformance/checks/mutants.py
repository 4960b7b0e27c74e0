"""``qsbr-conformance mutants``: the suite proves its power on realistic bugs of the port.

Each mutant is the reference port built with one ``QSBR_MUTANT_*`` switch (reference_c/src/
qsbr.c, pycore_qsbr.h) as a release build (``NDEBUG``, like CPython's), then attacked by the
methods listed for it, in order, until one kills it:

- ``conformance``: the differential run against the oracle, through the C ABI in a child
  process (a crash counts as a kill);
- ``torture``: the concurrency torture, stopping at its first error;
- ``replay``: the C regression replay of an upstream bug under ASan;
- ``modelcheck``: the Relacy model checker (reference_c/relacy/run.py --mutant NAME): the
  port's qsbr.c with the switch, run in the scenarios listed for it there, under C++11
  memory-model semantics (needs g++ or clang++ and relacy-dev; without them the row says so
  and the mutant is not killed).

A mutant no method kills must be argued in the catalog (equivalent, or why it escapes the
time bound); the run fails otherwise.  Every row now has a killer; none is argued.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Mutant:
    name: str
    breaks: str             # the fact (or upstream bug) it breaks
    description: str
    methods: tuple[str, ...] = ("conformance",)
    profile: str = "313"
    equivalent: str = ""    # if it may survive: why (equivalent, or out of reach in the bound)
    torture_args: tuple[str, ...] = ("-r", "1", "-c", "0")
    replay_filter: str = ""


CATALOG: tuple[Mutant, ...] = (
    Mutant("ADVANCE_RETURNS_OLD", "S-ADV-1", "advance returns the value before the increment",
           ("conformance", "torture")),
    Mutant("PLAIN_COMPARE", "S-SEQ-3", "the scan compares sequences with a plain unsigned <"),
    Mutant("MIN_SIZE_4", "S-SLOT-3", "the first array has 4 slots, not 8"),
    Mutant("GROWTH_ADDS_8", "S-SLOT-3", "growth adds 8 slots instead of doubling"),
    Mutant("GROWTH_NO_REPOINT", "S-SLOT-3 / gh-134679",
           "growth does not re-point thread states at their new slots (stale slot pointer)",
           ("conformance", "replay"), replay_filter="growth_repoints"),
    Mutant("REBUILD_DESCENDING", "S-FREE-2",
           "the freelist is rebuilt from the highest index down (lowest index first)"),
    Mutant("FREELIST_FIFO", "S-FREE-3", "unregister appends the slot at the freelist's tail"),
    Mutant("UNREGISTER_KEEPS_ALLOCATED", "S-UNREG-1", "unregister leaves `allocated` set"),
    Mutant("GH115103", "S-UNREG-1 / gh-115103",
           "unregister reads the slot pointer before taking the mutex",
           ("replay",), replay_filter="gh115103"),
    Mutant("DETACH_NOOP", "S-DETACH-1", "detach leaves seq as it was",
           ("conformance", "torture")),
    Mutant("DEFERRED_OFF_BY_ONE", "S-DEF-1", "deferred_advance advances on the 11th call"),
    Mutant("DEFERRED_NO_RESET", "S-DEF-1", "deferred_advance never resets its count"),
    Mutant("DEFERRED_RETURNS_CURRENT", "S-DEF-1",
           "a deferred call returns wr_seq instead of wr_seq + 2"),
    Mutant("SHARED_NEXT_ADVANCES", "S-DEF-2", "shared_next advances the write sequence",
           profile="314"),
    Mutant("GOAL_REACHED_LT", "S-GOAL-1", "goal_reached uses QSBR_LT instead of QSBR_LEQ"),
    Mutant("POLL_NO_SCAN", "S-POLL-1", "poll returns true without scanning",
           ("conformance", "torture")),
    Mutant("POLL_NO_CAS", "S-POLL-1", "poll computes the minimum but never stores rd_seq"),
    Mutant("SCAN_SKIPS_LAST_SLOT", "S-POLL-1", "the scan stops one slot early",
           ("conformance", "torture")),
    Mutant("SCAN_COUNTS_OFFLINE", "S-POLL-2", "the scan counts detached slots (seq 0)"),
    Mutant("FORK_DESCENDING", "S-FORK-1", "after_fork frees slots from the highest index down"),
    Mutant("FORK_FREES_CALLER", "S-FORK-1", "after_fork also frees the caller's own slot"),
    Mutant("FORK_RESETS_SEQ", "S-FORK-1", "after_fork resets the freed slots' seq to 0"),
    Mutant("FINI_RESETS_SEQUENCES", "S-FINI-1", "fini resets wr_seq and rd_seq to 1"),
    # Sequentially identical to the port: only the model checker tells them apart.
    Mutant("GROWTH_NO_STW", "S-RES-1", "growth runs without stopping the world",
           ("modelcheck", "torture"), torture_args=("-r", "4", "-c", "3")),
    Mutant("ATTACH_RELEASE_ORDER", "S-ATTACH-1 (memory order)",
           "attach stores seq with release instead of seq_cst order", ("modelcheck",)),
    # Not equivalent under C11: without the fence nothing orders the reclaimer's release-store
    # unlink before its scan (the relacy "fence" scenario finds the use-after-free).
    Mutant("SCAN_NO_FENCE", "S-POLL-1 (memory order)", "the scan drops its seq_cst fence",
           ("modelcheck",)),
    Mutant("RESERVE_INDEX_AFTER_UNLOCK", "S-RES-1 / gh-129732",
           "reserve computes the slot index after unlocking the mutex", ("modelcheck",)),
    Mutant("DETACH_RELAXED", "S-DETACH-1 (memory order)",
           "detach stores QSBR_OFFLINE relaxed instead of release", ("modelcheck",)),
    Mutant("QS_RELAXED", "S-QS-1 (memory order)",
           "quiescent_state stores seq relaxed instead of release", ("modelcheck",)),
    Mutant("SCAN_RELAXED_LOADS", "S-POLL-1 (memory order)",
           "the scan loads each slot's seq relaxed instead of seq_cst", ("modelcheck",)),
    Mutant("ADVANCE_NONATOMIC", "S-ADV-1 (memory order)",
           "advance is a plain read-modify-write of wr_seq", ("modelcheck",)),
    Mutant("GROWTH_LEAKS_OLD_ARRAY", "S-SLOT-3 (resource)",
           "growth never frees the old array", ("modelcheck",)),
)


@dataclass
class Outcome:
    mutant: Mutant
    killed: bool
    by: str = ""
    detail: str = ""
    seconds: float = 0.0


def _make(source: Path, target: str, mutant: Mutant, build: Path) -> None:
    subprocess.run(["make", "-s", "-C", str(source), target, f"PROFILE={mutant.profile}",
                    f"BUILD={build}", f"EXTRA_CFLAGS=-DNDEBUG -DQSBR_MUTANT_{mutant.name}"],
                   check=True, capture_output=True, text=True, timeout=600)


def _by_conformance(source: Path, mutant: Mutant, build: Path, examples: int) -> tuple[bool, str]:
    from ..drivers.isolation import IsolatedImplementation
    from .runner import run_conformance

    _make(source, "lib", mutant, build)
    impl = IsolatedImplementation("conformance.drivers.cabi:load", step_timeout=5.0,
                                  path=str(build / mutant.profile / "libqsbr.so"))
    try:
        result = run_conformance(impl, examples=examples, seed=1, stop_at_first_failure=True)
    finally:
        impl.close()
    if result.conforms:
        return False, ""
    if result.failures:
        first = result.failures[0]
        return True, f"{', '.join(first.facts)}: {first.message.splitlines()[0][:110]}"
    return True, "facts left unchecked"


def _by_torture(source: Path, mutant: Mutant, build: Path, seconds: float) -> tuple[bool, str]:
    _make(source, "torture-bin", mutant, build)
    binary = build / mutant.profile / "qsbr-torture"
    proc = subprocess.run([str(binary), "-q", "-x", "-s", str(seconds), *mutant.torture_args],
                          capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode == 0:
        return False, ""
    lines = [line for line in proc.stdout.splitlines() if line.startswith("errors:")]
    return True, f"torture: {lines[0] if lines else f'exit status {proc.returncode}'}"


def _by_replay(source: Path, mutant: Mutant, build: Path) -> tuple[bool, str]:
    _make(source, "replay-bin", mutant, build)
    binary = build / mutant.profile / "qsbr-tests-asan"
    proc = subprocess.run([str(binary), mutant.replay_filter], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "ASAN_OPTIONS": "detect_leaks=0"})
    if proc.returncode == 0:
        return False, ""
    asan = [line for line in proc.stderr.splitlines() if "ERROR: AddressSanitizer" in line]
    why = asan[0].split("ERROR: ")[1][:60] if asan else "a CHECK failed"
    return True, f"replay '{mutant.replay_filter}' under ASan: {why}"


def _by_modelcheck(source: Path, mutant: Mutant, build: Path) -> tuple[bool, str]:
    runner = source / "relacy" / "run.py"
    if not runner.is_file():
        return False, "model checker not run: reference_c/relacy/run.py is missing"
    out = build / "relacy.json"
    proc = subprocess.run([sys.executable, str(runner), "--mutant", mutant.name,
                           "--build", str(build / "relacy"), "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode == 2 or not out.is_file():
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return False, f"model checker not run: {why}"
    row = json.loads(out.read_text(encoding="utf-8"))["mutants"][mutant.name]
    if not row["killed"]:
        return False, ""
    return True, f"relacy {row['by']}: {row['detail'][:90]}"


def run_mutant(source: Path, mutant: Mutant, work: Path, examples: int,
               torture_seconds: float) -> Outcome:
    build = work / mutant.name
    started = time.monotonic()
    notes: list[str] = []
    for method in mutant.methods:
        if method == "conformance":
            killed, detail = _by_conformance(source, mutant, build, examples)
        elif method == "torture":
            killed, detail = _by_torture(source, mutant, build, torture_seconds)
        elif method == "modelcheck":
            killed, detail = _by_modelcheck(source, mutant, build)
            if not killed and detail:
                notes.append(detail)
        else:
            killed, detail = _by_replay(source, mutant, build)
        if killed:
            return Outcome(mutant, True, method, detail, time.monotonic() - started)
    return Outcome(mutant, False, "", "; ".join(notes), time.monotonic() - started)


def find_source(explicit: str | None) -> Path | None:
    candidates = [Path(explicit)] if explicit else [
        Path(__file__).resolve().parents[2] / "reference_c", Path.cwd() / "reference_c"]
    return next((c for c in candidates if (c / "Makefile").is_file()), None)


def table(outcomes: list[Outcome]) -> str:
    lines = [f"{'mutant':<27} {'breaks':<26} {'result':<11} {'by':<12} {'time':>7}  detail",
             f"{'-' * 27} {'-' * 26} {'-' * 11} {'-' * 12} {'-' * 7}  {'-' * 6}"]
    for o in outcomes:
        result = "killed" if o.killed else ("argued" if o.mutant.equivalent else "SURVIVED")
        detail = o.detail if o.killed else (o.mutant.equivalent or o.detail
                                            or o.mutant.description)
        lines.append(f"{o.mutant.name:<27} {o.mutant.breaks:<26} {result:<11} {o.by:<12} "
                     f"{o.seconds:6.1f}s  {detail}")
    return "\n".join(lines)


def parser() -> Any:
    from ..frontends import common

    parser = common.ArgumentParser(
        prog="qsbr-conformance mutants",
        description="Build each mutant of the reference port and check that the suite kills "
                    "it.  Needs the project's reference_c/ sources, make and a C compiler.  "
                    "Exit status 0: every mutant killed or argued; 1: a mutant survived; "
                    "2: usage error; 130: interrupted (Ctrl-C).")
    parser.add_argument("--source", metavar="DIR",
                        help="the reference_c folder (default: found beside the package or in "
                             "the current folder)")
    parser.add_argument("--only", metavar="NAME[,NAME...]",
                        help="comma-separated mutant names (default: the whole catalog; see "
                             "--list)")
    parser.add_argument("--examples", type=common.positive_int, default=60, metavar="N",
                        help="Hypothesis examples of the conformance attack (default: 60)")
    parser.add_argument("--torture-seconds", type=common.positive_float, default=10.0,
                        metavar="SECONDS",
                        help="time bound of the torture attack per mutant (default: 10)")
    parser.add_argument("--work", default=None, metavar="DIR",
                        help="build folder (default: reference_c/build/mutants)")
    parser.add_argument("--json", metavar="PATH", help="also write the kill table as JSON")
    parser.add_argument("--list", action="store_true", help="list the catalog and exit")
    return parser


def main(argv: list[str]) -> int:
    from ..frontends import common

    args = parser().parse_args(argv)
    try:
        common.check_output_path(args.json, "--json")
    except common.UsageError as exc:
        print(f"qsbr-conformance mutants: error: {exc}", file=sys.stderr)
        return common.USAGE
    if args.list:
        for m in CATALOG:
            print(f"{m.name:<27} {m.breaks:<26} {m.description}")
        return 0
    chosen = list(CATALOG)
    if args.only:
        names = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = names - {m.name for m in CATALOG}
        if unknown:
            print(f"qsbr-conformance mutants: error: unknown mutant(s): "
                  f"{', '.join(sorted(unknown))} (see --list)", file=sys.stderr)
            return 2
        chosen = [m for m in CATALOG if m.name in names]
    source = find_source(args.source)
    if source is None:
        print("qsbr-conformance mutants: error: cannot find reference_c/ (give --source)",
              file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else source / "build" / "mutants"
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
