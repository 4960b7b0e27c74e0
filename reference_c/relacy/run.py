#!/usr/bin/env python3
"""Run the Relacy model checker over the reference port: ``make -C reference_c check-relacy``.

Builds reference_c/relacy/qsbr_relacy.cpp (the port's src/qsbr.c compiled unmodified under
Relacy) for profiles 313 and 314 and for each mutant whose patch (reference_c/mutants/NAME.patch)
names the model checker on its ``Killer:`` line (the patch applied to a copy, ``make
mutant-src``), runs the plan below, prints a table (scenario, profile, scheduler, iterations,
verdict) and writes JSON.  Exit status 0 when
every expectation holds: the correct port is clean in every scenario except the two findings
(read-acquire, stale-goal), which must be found; every mutant is killed by one of its scenarios.
Mutants are the patch files reference_c/mutants/NAME.patch whose header says ``Killer: model
checker`` (their ``Scenarios:`` line names the scenarios that may kill them).

Spread out (independent pieces: subject x profile x scenario x search kind):

    run.py --list [--search random,bound,full]     one piece id per line
    run.py --piece ID [--piece ID ...] --json OUT   run those pieces only
    run.py --merge A.json B.json ... [--json OUT]   one results file (the format of a full run)

A merged file says which scenario x profile a bound or full search completed exhaustively and
which was capped (``coverage``).  Standard library only (CI runs it before any virtual
environment exists).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent                                   # reference_c/
RANDOM_ITERATIONS = 20000                            # seeded by iteration number: reproducible
BOUND_CAP = 10000                                    # context bound 2, stopped at this cap
CONTEXT_BOUND = 2
PROFILES = ("313", "314")
SCENARIOS = ("rw", "qs", "1w2r", "2w1r", "cycles", "fence", "read-seqcst", "read-acquire",
             "stale-goal", "growth", "reserve-race",
             # the loads a true poll / goal_reached answer relies on (README, "Loads behind a
             # true answer")
             "fastpath", "scan-rd")
SEARCHES = ("random", "bound", "full")
MUTANTS_DIR = ROOT / "mutants"
# Scenarios where the correct port is expected to fail: findings, documented in
# docs/semantics.md (S-READ-1) and reference_c/relacy/README.md.
FINDINGS = {
    "read-acquire": "S-READ-1: a reader's first protected load after attach must be seq_cst",
    "stale-goal": "a non-advancing goal read before the unlink is visible can be reached by "
                  "a reader still holding the old pointer (the caller must order the unlink "
                  "before the goal's load of wr_seq)",
}
MUTANTS_DIR = ROOT / "mutants"


def patch_header(path: Path) -> dict[str, str]:
    """The ``Field: value`` lines before a patch's first ``---`` (reference_c/mutants/README.md;
    conformance/checks/mutants.py reads the same headers for the whole catalog)."""
    fields: dict[str, str] = {}
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("---"):
            break
        key, sep, value = line.partition(":")
        if sep and key and not key[0].isspace() and " " not in key:
            last = key.strip().title()
            fields[last] = value.strip()
        elif line[:1].isspace() and line.strip() and last is not None:
            fields[last] += " " + line.strip()
    return fields


def model_checked_mutants() -> dict[str, tuple[str, tuple[str, ...], str]]:
    """mutant -> (profile, scenarios that may kill it, note), for every patch whose Killer:
    line names the model checker.  Without a Scenarios: line, every scenario the correct port
    passes."""
    default = tuple(s for s in SCENARIOS if s not in FINDINGS)
    mutants = {}
    for path in sorted(MUTANTS_DIR.glob("*.patch")):
        fields = patch_header(path)
        killer = fields.get("Killer", "").lower()
        if "model" in killer or "relacy" in killer:
            scenarios = tuple(fields.get("Scenarios", "").replace(",", " ").split())
            mutants[path.stem] = (fields.get("Profile", "313"), scenarios or default,
                                  fields.get("Note", ""))
    return mutants


# -- hazards (qsbr-conformance hazards; docs/findings.md): the litmus shapes' twins ------------
SCENARIOS += ("stale-goal-fence", "stale-goal-advancing", "retire-before-unlink")
FINDINGS.update({
    "stale-goal-fence": "a caller-side seq_cst fence between the unlink and the non-advancing "
                        "goal is not enough under C11: the reader's quiescent state has no "
                        "fence (its first trace also reads a wr_seq older than C11 allows "
                        "after the fence: docs/findings.md)",
    "retire-before-unlink": "the goal taken before the unlink (dict_merge's clone path) is "
                            "reached by a reader that then loads the old pointer, even under "
                            "sequential consistency",
})
# -- end of the hazards block ------------------------------------------------------------------
MUTANTS = model_checked_mutants()
#: Findings whose outcome sequential consistency already reaches: the goal is taken before the
#: unlink is visible, whatever the memory orders of qsbr.c (docs/model-checking.md).  Expecting
#: them found checks the harness (its scenario and search reach the outcome), not the code.
SC_REACHABLE = {
    "stale-goal": "the non-advancing goal read before the unlink, a reader's quiescent state "
                  "after another thread's advance, its load of the old pointer, then the "
                  "unlink and the poll: every step sequentially consistent",
    "retire-before-unlink": "the goal taken before the unlink: reached under sequential "
                            "consistency",
}


def self_check(row: dict) -> bool:
    """A row whose expectation is "found": a finding the harness must reproduce (a check of
    the harness), not a property the code under test must have."""
    return row.get("subject") in ("port", "source") and row.get("expected") == "found"


def all_mutants() -> dict[str, tuple[str, tuple[str, ...], str]]:
    """Every mutant the model checker must kill (the patch files' headers)."""
    return MUTANTS
SOURCES = ("src/qsbr.c", "include/pycore_qsbr.h", "include/qsbr_pyport.h",
           "relacy/qsbr_relacy.cpp", "relacy/shim.h", "relacy/run.py")


def sources_hash() -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
    return digest.hexdigest()


def compiler() -> str | None:
    for candidate in (os.environ.get("CXX"), "g++", "clang++"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def relacy_present() -> bool:
    return Path("/usr/include/relacy/relacy.hpp").is_file() or any(
        (Path(p) / "relacy" / "relacy.hpp").is_file()
        for p in os.environ.get("CPLUS_INCLUDE_PATH", "").split(":") if p)


def mutant_copy(out: Path, mutant: str) -> Path:
    """reference_c/ copied with mutants/NAME.patch applied (the Makefile's ``mutant-src``, as
    every other build of a mutant), one copy per process and thread: pieces may build the same
    mutant at once."""
    where = (out / "mutant" / f"{mutant}.{os.getpid()}.{threading.get_ident()}").resolve()
    subprocess.run(["make", "-s", "-C", str(ROOT), "mutant-src", f"MUTANT={mutant}",
                    f"MUTANT_BUILD={where}"], check=True, capture_output=True, text=True)
    return where / "reference_c"


def build(cxx: str, out: Path, profile: str, mutant: str | None,
          source: Path | None = None) -> Path:
    binary = out / (f"qsbr-relacy-{profile}" + (f"-{mutant}" if mutant else "")
                    + ("-source" if source else ""))
    # A mutant: the harness and the sources of its patched copy.  Another qsbr.c (--source):
    # its folder and its include/ come first, so that qsbr_relacy.cpp's #include "qsbr.c" and
    # qsbr.c's #include "pycore_qsbr.h" find them; the headers shim.h replaces keep their
    # include guards, whoever includes them.
    first = ["-I", str(source), "-I", str(source / "include")] if source else []
    inputs = [ROOT / name for name in SOURCES] + [ROOT / "include" / "pyatomic.h"] + (
        [MUTANTS_DIR / f"{mutant}.patch"] if mutant else [])
    if source is None and binary.is_file() and binary.stat().st_mtime > max(
            p.stat().st_mtime for p in inputs if p.is_file()):
        return binary               # built from these very inputs (by another piece)
    root = mutant_copy(out, mutant) if mutant else ROOT
    cmd = [cxx, "-std=c++11", "-O1", "-g0", "-w", "-fpermissive", "-fno-sized-deallocation",
           "-DNDEBUG", f"-DQSBR_PROFILE={profile}", *first, "-I", str(root / "include"),
           "-I", str(root / "src"), "-I", str(root / "relacy"),
           str(root / "relacy" / "qsbr_relacy.cpp"),
           "-o", f"{binary}.{os.getpid()}.{threading.get_ident()}.tmp"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    finally:
        if root != ROOT:
            shutil.rmtree(root.parent, ignore_errors=True)
    os.replace(cmd[-1], binary)     # whole, even with pieces building it at once
    return binary


def run_one(binary: Path, scenario: str, scheduler: str, log: Path,
            cap: int | None = None) -> dict:
    args = [str(binary), scenario, scheduler,
            str(RANDOM_ITERATIONS if scheduler == "random" else cap or BOUND_CAP)]
    if scheduler == "bound":
        args.append(str(CONTEXT_BOUND))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT\t")), None)
    if line is None or proc.returncode not in (0, 1):
        return {"scenario": scenario, "scheduler": scheduler, "iterations": 0,
                "verdict": "error", "ms": 0,
                "detail": f"exit {proc.returncode}: {proc.stderr.strip()[-200:]}"}
    if proc.returncode == 1:
        log.write_text(proc.stderr)
    _, scen, sched, iterations, verdict, ms, detail = line.split("\t", 6)
    return {"scenario": scen, "scheduler": sched, "iterations": int(iterations),
            "verdict": verdict, "ms": int(ms), "detail": detail,
            "trace": str(log) if proc.returncode == 1 else ""}


def port_expected(scenario: str, scheduler: str) -> str:
    if scenario not in FINDINGS:
        return "clean"
    return "found" if scheduler == "random" else "any"  # capped searches; random finds them


def port_row(binary: Path, profile: str, scenario: str, scheduler: str, logs: Path,
             cap: int | None = None) -> dict:
    row = run_one(binary, scenario, scheduler, logs / f"{profile}-{scenario}-{scheduler}.trace",
                  cap)
    expected = port_expected(scenario, scheduler)
    row.update(profile=profile, subject="port", expected=expected,
               ok=expected == "any" or row["verdict"] == expected,
               piece=piece_id("port", profile, scenario, scheduler))
    return row


def mutant_row(binary: Path, mutant: str, scenario: str, scheduler: str, logs: Path,
               cap: int | None = None) -> dict:
    profile, _, note = all_mutants()[mutant]
    row = run_one(binary, scenario, scheduler, logs / f"{mutant}-{scenario}-{scheduler}.trace",
                  cap)
    row.update(profile=profile, subject=mutant, expected="found", note=note,
               piece=piece_id(mutant, profile, scenario, scheduler))
    return row


def correct_runs(binary: Path, profile: str, logs: Path) -> list[dict]:
    return [port_row(binary, profile, scenario, scheduler, logs)
            for scenario in SCENARIOS for scheduler in ("random", "bound")]


def mutant_runs(binary: Path, mutant: str, logs: Path) -> list[dict]:
    """The mutant's scenarios in order, each random then bound, until one kills it."""
    rows = []
    for scenario in all_mutants()[mutant][1]:
        for scheduler in ("random", "bound"):
            rows.append(mutant_row(binary, mutant, scenario, scheduler, logs))
            if rows[-1]["verdict"] == "found":
                return rows
    return rows


# --- pieces (issue 24): every run on its own, merged afterwards ---------------------------

def piece_id(subject: str, profile: str, scenario: str, search: str) -> str:
    return f"{subject}:{profile}:{scenario}:{search}"


def list_pieces(searches: tuple[str, ...] = ("random", "bound"),
                profiles: tuple[str, ...] = PROFILES, mutants: bool = True) -> list[str]:
    pieces = [piece_id("port", p, s, k) for p in profiles for s in SCENARIOS for k in searches]
    if mutants:
        pieces += [piece_id(m, p, s, k) for m, (p, scenarios, _) in all_mutants().items()
                   for s in scenarios for k in searches]
    return pieces


def parse_piece(piece: str) -> tuple[str, str, str, str]:
    parts = piece.split(":")
    if len(parts) != 4 or parts[3] not in SEARCHES or parts[2] not in SCENARIOS:
        raise ValueError(f"bad piece {piece!r}: SUBJECT:PROFILE:SCENARIO:SEARCH (see --list)")
    subject, profile, scenario, search = parts
    if subject != "port" and subject not in all_mutants():
        raise ValueError(f"bad piece {piece!r}: unknown mutant {subject}")
    return subject, profile, scenario, search


def run_pieces(cxx: str, out: Path, pieces: list[str], jobs: int,
               cap: int | None = None) -> list[dict]:
    logs = out / "traces"
    logs.mkdir(parents=True, exist_ok=True)
    parsed = [parse_piece(p) for p in pieces]
    binaries: dict[tuple[str, str], Path | str] = {}
    for subject, profile, _, _ in parsed:
        key = (subject, profile)
        if key not in binaries:
            try:
                binaries[key] = build(cxx, out, profile, None if subject == "port" else subject)
            except subprocess.CalledProcessError as exc:
                binaries[key] = f"{cxx} failed: {(exc.stderr.splitlines() or [''])[0]}"

    def one(item: tuple[str, str, str, str]) -> dict:
        subject, profile, scenario, search = item
        binary = binaries[(subject, profile)]
        if isinstance(binary, str):
            return {"subject": subject, "scenario": scenario, "profile": profile,
                    "scheduler": search, "iterations": 0, "ms": 0, "verdict": "error",
                    "expected": "clean" if subject == "port" else "found", "ok": False,
                    "detail": binary, "piece": piece_id(*item)}
        if subject == "port":
            return port_row(binary, profile, scenario, search, logs, cap)
        return mutant_row(binary, subject, scenario, search, logs, cap)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, parsed))


def coverage(rows: list[dict]) -> dict:
    """Per port scenario x profile: what each search kind did (exhaustive, capped, ...)."""
    out: dict[str, dict[str, str]] = {}
    for r in rows:
        if r["subject"] not in ("port", "source"):
            continue
        key = f"{r['profile']}/{r['scenario']}"
        if r["verdict"] == "found":
            what = f"found after {r['iterations']} iterations"
        elif r["verdict"] != "clean":
            what = r["verdict"]
        elif r["scheduler"] == "random":
            what = f"clean in {r['iterations']} seeded random iterations (not exhaustive)"
        elif "complete" in r["detail"]:
            what = f"exhaustive: clean, space exhausted in {r['iterations']} iterations"
        else:
            what = f"capped: clean in the first {r['iterations']} iterations"
        out.setdefault(key, {})[r["scheduler"]] = what
    return dict(sorted(out.items()))


def assemble(rows: list[dict], seconds: float, source: Path | None) -> dict:
    """The results file (results.json; conformance/checks/modelcheck.py reads it)."""
    for subject in {r["subject"] for r in rows if r["subject"] not in ("port", "source")}:
        killed = any(r["verdict"] == "found" for r in rows if r["subject"] == subject)
        for r in rows:
            if r["subject"] == subject:
                r["ok"] = killed
    # Another qsbr.c (--source, the upstream run) is judged on the code alone: a finding its
    # scenario did not reproduce is the harness's miss, reported apart (self_checks), never a
    # failure of a correct, possibly stronger, qsbr.c.  The port's own run keeps it a failure:
    # its harness must keep reaching the findings.
    checks = [r for r in rows if self_check(r)]
    failed = [r for r in rows if not r["ok"] and not (source is not None and self_check(r))]
    mutants = sorted({r["subject"] for r in rows if r["subject"] not in ("port", "source")})
    killed = sorted({r["subject"] for r in rows if r["subject"] not in ("port", "source")
                     and r["verdict"] == "found"})
    cov = coverage(rows)
    return {"sources_sha256": sources_hash() if source is None else None,
            "source": str(source) if source else None, "seconds": round(seconds, 1),
            "random_iterations": RANDOM_ITERATIONS, "bound_cap": BOUND_CAP,
            "context_bound": CONTEXT_BOUND, "findings": FINDINGS,
            "mutants": {m: {"killed": m in killed,
                            "by": next((f"{r['scenario']}/{r['scheduler']}" for r in rows
                                        if r["subject"] == m and r["verdict"] == "found"), ""),
                            "detail": next((r["detail"] for r in rows
                                            if r["subject"] == m and r["verdict"] == "found"),
                                           "")}
                        for m in mutants},
            "coverage": cov,
            "exhaustive": sorted(f"{k}/{kind}" for k, kinds in cov.items()
                                 for kind, what in kinds.items()
                                 if what.startswith("exhaustive")),
            "capped": sorted(f"{k}/{kind}" for k, kinds in cov.items()
                             for kind, what in kinds.items() if what.startswith("capped")),
            "self_checks": [{"profile": r["profile"], "scenario": r["scenario"],
                             "scheduler": r["scheduler"], "reproduced": r["verdict"] == "found",
                             "sequentially_consistent": r["scenario"] in SC_REACHABLE}
                            for r in checks],
            "runs": rows, "ok": not failed}


def merge(paths: list[str]) -> dict:
    rows: dict[str, dict] = {}
    seconds = 0.0
    for path in paths:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("sources_sha256") not in (None, sources_hash()):
            raise ValueError(f"{path}: results for other sources (rerun the pieces)")
        seconds += data.get("seconds", 0.0)
        for row in data.get("runs", []):
            key = row.get("piece") or piece_id(row["subject"], row["profile"],
                                               row["scenario"], row["scheduler"])
            rows.setdefault(key, row)
    return assemble(list(rows.values()), seconds, None)


def summary(result: dict) -> str:
    rows = result["runs"]
    mutants = result["mutants"]
    killed = sum(1 for m in mutants.values() if m["killed"])
    source = result.get("source") is not None
    failed = [r for r in rows if not r["ok"] and not (source and self_check(r))]
    missed = [c for c in result.get("self_checks", []) if not c["reproduced"]]
    text = (f"{len(rows)} runs; mutants killed {killed}/{len(mutants)}; "
            f"{len(result['exhaustive'])} searches exhaustive, {len(result['capped'])} capped; "
            + ("all expectations hold" if not failed else f"{len(failed)} run(s) FAILED"))
    if source and missed:
        text += ("; harness self-checks not reproduced (not a verdict on this qsbr.c): "
                 + ", ".join(f"{c['profile']}/{c['scenario']}/{c['scheduler']}"
                             + (" (reachable under sequential consistency)"
                                if c["sequentially_consistent"] else "") for c in missed))
    return text


def table(rows: list[dict]) -> str:
    out = [f"{'subject':<27} {'scenario':<13} {'prof':<4} {'scheduler':<9} {'iterations':>10} "
           f"{'ms':>6}  {'verdict':<7} {'expected':<8} ok  detail",
           "-" * 118]
    for r in rows:
        out.append(f"{r['subject']:<27} {r['scenario']:<13} {r['profile']:<4} "
                   f"{r['scheduler']:<9} {r['iterations']:>10} {r['ms']:>6}  "
                   f"{r['verdict']:<7} {r['expected']:<8} {'yes' if r['ok'] else 'NO':<3} "
                   f"{r['detail'][:60]}")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=str(ROOT / "build" / "relacy"))
    parser.add_argument("--json", help="default: BUILD/results.json")
    parser.add_argument("--mutant", action="append",
                        help="only this mutant (repeatable; skips the correct-port runs)")
    parser.add_argument("--no-mutants", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--source", metavar="DIR",
                        help="model-check another qsbr.c instead of the port's: DIR holds "
                             "qsbr.c and include/pycore_qsbr.h (as `qsbr-conformance "
                             "upstream` prepares them); runs the correct-port plan only")
    parser.add_argument("--profile", action="append", choices=("313", "314", "31300",
                                                               "31303", "31306", "31404"),
                        help="QSBR_PROFILE to build (repeatable; default: 313 and 314)")
    parser.add_argument("--list", action="store_true",
                        help="print the pieces (SUBJECT:PROFILE:SCENARIO:SEARCH), one a line")
    parser.add_argument("--search", default="random,bound", metavar="KINDS",
                        help="with --list: search kinds, comma-separated, of "
                             f"{', '.join(SEARCHES)} (default: random,bound)")
    parser.add_argument("--piece", action="append", metavar="ID",
                        help="run this piece only (repeatable); results to --json")
    parser.add_argument("--cap", type=int, metavar="N",
                        help=f"with --piece: iterations a bound or full search may take before "
                             f"it is stopped (default: {BOUND_CAP})")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="merge piece results into one results file (--json, default "
                             "BUILD/results.json)")
    args = parser.parse_args(argv)
    if args.list:
        searches = tuple(k.strip() for k in args.search.split(",") if k.strip())
        if not searches or set(searches) - set(SEARCHES):
            print(f"check-relacy: --search: choose from {', '.join(SEARCHES)}",
                  file=sys.stderr)
            return 2
        print("\n".join(list_pieces(searches, tuple(args.profile or PROFILES),
                                    mutants=not args.no_mutants)))
        return 0
    if args.merge:
        try:
            result = merge(args.merge)
        except (OSError, ValueError, KeyError) as exc:
            print(f"check-relacy: --merge: {exc}", file=sys.stderr)
            return 2
        path = Path(args.json) if args.json else Path(args.build) / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
        print(f"check-relacy: merged {len(args.merge)} file(s): {summary(result)}")
        for key, kinds in result["coverage"].items():
            print(f"  {key:<20} " + "; ".join(f"{k}: {v}" for k, v in kinds.items()))
        return 0 if result["ok"] else 1
    source = Path(args.source).resolve() if args.source else None
    if source is not None and not (source / "qsbr.c").is_file():
        print(f"check-relacy: --source {source}: no qsbr.c there", file=sys.stderr)
        return 2
    if source is not None and (args.mutant or not args.no_mutants):
        args.no_mutants, args.mutant = True, None   # mutants are patches of the port's files
    cxx = compiler()
    if cxx is None:
        print("check-relacy: no C++ compiler (g++ or clang++; set CXX)", file=sys.stderr)
        return 2
    if not relacy_present():
        print("check-relacy: Relacy headers not found (/usr/include/relacy/relacy.hpp; "
              "apt-get install relacy-dev)", file=sys.stderr)
        return 2
    unknown = set(args.mutant or ()) - set(all_mutants())
    if unknown:
        print(f"check-relacy: unknown mutant(s): {', '.join(sorted(unknown))}",
              file=sys.stderr)
        return 2
    out = Path(args.build)
    logs = out / "traces"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if args.piece:
        try:
            for piece in args.piece:
                parse_piece(piece)
        except ValueError as exc:
            print(f"check-relacy: {exc}", file=sys.stderr)
            return 2
        rows = run_pieces(cxx, out, args.piece, args.jobs, args.cap)
        result = assemble(rows, time.monotonic() - started, None)
        print(table(rows))
        path = Path(args.json) if args.json else out / "pieces.json"
        path.write_text(json.dumps(result, indent=2))
        print(f"check-relacy: pieces in {path}", file=sys.stderr)
        return 0 if all(r["verdict"] != "error" for r in rows) else 1
    jobs: list[tuple[str, str | None]] = []
    if not args.mutant:
        jobs += [(p, None) for p in (args.profile or PROFILES)]
    if not args.no_mutants:
        jobs += [(all_mutants()[m][0], m) for m in (args.mutant or all_mutants())]
    print(f"check-relacy: building {len(jobs)} binaries with {cxx} ...", file=sys.stderr,
          flush=True)

    def work(job: tuple[str, str | None]) -> list[dict]:
        profile, mutant = job
        try:
            binary = build(cxx, out, profile, mutant, source)
        except subprocess.CalledProcessError as exc:
            errors = [line for line in exc.stderr.splitlines() if "error" in line]
            return [{"subject": mutant or "port", "scenario": "(build)", "profile": profile,
                     "scheduler": "-", "iterations": 0, "ms": 0, "verdict": "error",
                     "expected": "clean", "ok": False,
                     "detail": f"{cxx} failed: {(errors or exc.stderr.splitlines() or [''])[0]}"}]
        return mutant_runs(binary, mutant, logs) if mutant else correct_runs(binary, profile,
                                                                             logs)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(work, jobs))
    rows = [row for result in results for row in result]
    if source is not None:
        for row in rows:
            row["subject"] = "source"
    seconds = time.monotonic() - started
    result = assemble(rows, seconds, source)
    print(table(rows))
    print(f"\ncheck-relacy: {len(rows)} runs in {seconds:.0f} s; {summary(result)}")
    path = Path(args.json) if args.json else out / "results.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"check-relacy: results in {path}", file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
