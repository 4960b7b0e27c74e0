#!/usr/bin/env python3
"""Run the Relacy model checker over the reference port: ``make -C reference_c check-relacy``.

Builds reference_c/relacy/qsbr_relacy.cpp (the port's src/qsbr.c compiled unmodified under
Relacy) for profiles 313 and 314 and for each mutant whose patch (reference_c/mutants/NAME.patch)
names the model checker on its ``Killer:`` line (the patch applied to a copy, ``make
mutant-src``), runs the plan below, prints a table (scenario, profile, scheduler, iterations,
verdict) and writes JSON.  Exit status 0 when
every expectation holds: the correct port is clean in every scenario except the two findings
(read-acquire, stale-goal), which must be found; every mutant is killed by one of its scenarios.
Standard library only (CI runs it before any virtual environment exists).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
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
             "stale-goal", "growth", "reserve-race")
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
            mutants[path.stem] = (fields.get("Profile", "313"),
                                  tuple(fields.get("Scenarios", "").split()) or default,
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
    """reference_c/ copied to OUT/mutant/NAME/reference_c with mutants/NAME.patch applied
    (the Makefile's ``mutant-src``, as every other build of a mutant)."""
    where = (out / "mutant" / mutant).resolve()
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
    root = mutant_copy(out, mutant) if mutant else ROOT
    first = ["-I", str(source), "-I", str(source / "include")] if source else []
    cmd = [cxx, "-std=c++11", "-O1", "-g0", "-w", "-fpermissive", "-fno-sized-deallocation",
           "-DNDEBUG", f"-DQSBR_PROFILE={profile}", *first, "-I", str(root / "include"),
           "-I", str(root / "src"), "-I", str(root / "relacy"),
           str(root / "relacy" / "qsbr_relacy.cpp"), "-o", str(binary)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return binary


def run_one(binary: Path, scenario: str, scheduler: str, log: Path) -> dict:
    args = [str(binary), scenario, scheduler,
            str(RANDOM_ITERATIONS if scheduler == "random" else BOUND_CAP)]
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


def correct_runs(binary: Path, profile: str, logs: Path) -> list[dict]:
    rows = []
    for scenario in SCENARIOS:
        for scheduler in ("random", "bound"):
            row = run_one(binary, scenario, scheduler,
                          logs / f"{profile}-{scenario}-{scheduler}.trace")
            row["profile"] = profile
            row["subject"] = "port"
            expected = "found" if scenario in FINDINGS else "clean"
            if scenario in FINDINGS and scheduler == "bound":
                expected = "any"        # the bound search is capped; random finds them
            row["expected"] = expected
            row["ok"] = expected == "any" or row["verdict"] == expected
            rows.append(row)
    return rows


def mutant_runs(binary: Path, mutant: str, logs: Path) -> list[dict]:
    profile, scenarios, note = MUTANTS[mutant]
    rows = []
    for scenario in scenarios:
        for scheduler in ("random", "bound"):
            row = run_one(binary, scenario, scheduler,
                          logs / f"{mutant}-{scenario}-{scheduler}.trace")
            row.update(profile=profile, subject=mutant, expected="found", note=note)
            rows.append(row)
            if row["verdict"] == "found":
                for r in rows:
                    r["ok"] = True
                return rows
    for r in rows:
        r["ok"] = False
    return rows


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
    args = parser.parse_args(argv)
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
    unknown = set(args.mutant or ()) - set(MUTANTS)
    if unknown:
        print(f"check-relacy: unknown mutant(s): {', '.join(sorted(unknown))}",
              file=sys.stderr)
        return 2
    out = Path(args.build)
    logs = out / "traces"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    jobs: list[tuple[str, str | None]] = []
    if not args.mutant:
        jobs += [(p, None) for p in (args.profile or PROFILES)]
    if not args.no_mutants:
        jobs += [(MUTANTS[m][0], m) for m in (args.mutant or MUTANTS)]
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
    print(table(rows))
    failed = [r for r in rows if not r["ok"]]
    mutants = sorted({r["subject"] for r in rows if r["subject"] not in ("port", "source")})
    killed = sorted({r["subject"] for r in rows if r["subject"] not in ("port", "source")
                     and r["verdict"] == "found"})
    print(f"\ncheck-relacy: {len(rows)} runs in {seconds:.0f} s; "
          f"mutants killed {len(killed)}/{len(mutants)}; "
          f"{'all expectations hold' if not failed else f'{len(failed)} run(s) FAILED'}")
    result = {"sources_sha256": sources_hash() if source is None else None,
              "source": str(source) if source else None, "seconds": round(seconds, 1),
              "random_iterations": RANDOM_ITERATIONS, "bound_cap": BOUND_CAP,
              "context_bound": CONTEXT_BOUND, "findings": FINDINGS,
              "mutants": {m: {"killed": m in killed,
                              "by": next((f"{r['scenario']}/{r['scheduler']}" for r in rows
                                          if r["subject"] == m and r["verdict"] == "found"),
                                         ""),
                              "detail": next((r["detail"] for r in rows
                                              if r["subject"] == m
                                              and r["verdict"] == "found"), "")}
                          for m in mutants},
              "runs": rows, "ok": not failed}
    path = Path(args.json) if args.json else out / "results.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"check-relacy: results in {path}", file=sys.stderr)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
