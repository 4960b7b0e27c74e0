"""Model-checker results (Relacy) for the conformance run of the reference port.

``make -C reference_c check-relacy`` runs the port's own ``src/qsbr.c`` under Relacy and writes
``reference_c/build/relacy/results.json`` with a SHA-256 of the sources it checked.  The
conformance run never builds or runs the checker itself (that takes minutes); it uses those
results when they are for exactly the sources in the tree, and otherwise says in one line why
there are none.  Only the reference port's own code is model-checked: for any other
implementation the line says so.

Facts credited (source ``model-checked``), one check per clean scenario run of the port:
each scenario's facts in SCENARIO_FACTS; S-READ-1 is credited when the read-side pair holds
(read-acquire found, read-seqcst clean).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import sources
from ..model.ledger import FactLedger

SCENARIO_FACTS: dict[str, tuple[str, ...]] = {
    "rw": ("S-ATTACH-1", "S-DETACH-1", "S-QS-1", "S-POLL-1", "S-SAFE-1", "S-SAFE-2"),
    "qs": ("S-QS-1", "S-DETACH-1", "S-POLL-1", "S-SAFE-1", "S-SAFE-2"),
    "1w2r": ("S-ATTACH-1", "S-POLL-1", "S-SAFE-1", "S-SAFE-2"),
    "2w1r": ("S-ADV-1", "S-POLL-1", "S-SAFE-1", "S-SAFE-2"),
    "cycles": ("S-ATTACH-1", "S-DETACH-1", "S-SAFE-1"),
    "fence": ("S-POLL-1", "S-SAFE-1"),
    "read-seqcst": ("S-ATTACH-1", "S-POLL-1", "S-SAFE-1"),
    "growth": ("S-RES-1", "S-SLOT-3", "S-UNREG-1"),
    "reserve-race": ("S-RES-1", "S-SLOT-3"),
    # the loads a true poll / goal_reached answer relies on (reference_c/relacy/README.md)
    "fastpath": ("S-POLL-1", "S-GOAL-1", "S-SAFE-1"),
    "scan-rd": ("S-POLL-1", "S-SAFE-1"),
}
READ_FACT = "S-READ-1"
_SOURCES = ("src/qsbr.c", "include/pycore_qsbr.h", "include/qsbr_pyport.h",
            "relacy/qsbr_relacy.cpp", "relacy/shim.h", "relacy/run.py")


@dataclass
class ModelCheckResult:
    ran: bool
    line: str                       # the one-line summary for the report
    credited: dict[str, int] = field(default_factory=dict)


def _source() -> Path | None:
    try:
        return sources.reference_c()
    except sources.SourcesNotFound:
        return None


def sources_hash(source: Path) -> str:
    """The hash reference_c/relacy/run.py writes: sources.sources_hash over its SOURCES."""
    return sources.sources_hash(source, _SOURCES)


def results_for(source: Path, results_path: Path | None = None) -> tuple[dict | None, str]:
    # the results of `make check-relacy` in the folder where the port is built (sources.py)
    folder = sources.workspace()
    path = results_path or folder / "build" / "relacy" / "results.json"
    if not (source / "relacy" / "run.py").is_file():
        return None, "the Relacy harness (reference_c/relacy/) is not in this tree"
    if not path.is_file():
        return None, (f"no results yet for these sources: run `make -C {folder} "
                      "check-relacy` (needs g++ and relacy-dev)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"unreadable results {path}: {exc}"
    if data.get("sources_sha256") != sources_hash(source):
        return None, ("results are for other sources (qsbr.c or the harness changed since): "
                      f"run `make -C {folder} check-relacy` again")
    return data, ""


def apply(ledger: FactLedger, profile: str, *, reference_port: bool,
          results_path: Path | None = None) -> ModelCheckResult:
    """Credit the facts the model checker settled for this profile, or say why not."""
    if not reference_port:
        return ModelCheckResult(False, "model checker: not run (it checks the reference "
                                       "port's own qsbr.c; this run's --impl is another "
                                       "implementation)")
    source = _source()
    if source is None:
        return ModelCheckResult(False, "model checker: not run (the port's sources are "
                                       "neither in a checkout nor in the installed package)")
    data, why = results_for(source, results_path)
    if data is None:
        return ModelCheckResult(False, f"model checker: not run ({why})")
    prof = profile.replace(".", "")
    runs = [r for r in data.get("runs", []) if r.get("subject") == "port"
            and r.get("profile") == prof]
    if not runs:
        return ModelCheckResult(False, f"model checker: no runs for profile {profile} in "
                                       "the results")
    credited: dict[str, int] = {}
    bad = [r for r in runs if not r.get("ok")]
    for run in runs:
        facts = SCENARIO_FACTS.get(run["scenario"], ())
        if run["verdict"] == "clean" and facts:
            ledger.passed(*facts, source="model-checked")
            for fact in facts:
                credited[fact] = credited.get(fact, 0) + 1
        elif run["verdict"] == "found" and facts:
            ledger.failed(facts, f"model checker: {run['scenario']}/{run['scheduler']}: "
                                 f"{run['detail']}", source="model-checked")
    by = {(r["scenario"], r["scheduler"]): r["verdict"] for r in runs}
    if by.get(("read-acquire", "random")) == "found" and \
            by.get(("read-seqcst", "random")) == "clean":
        ledger.passed(READ_FACT, source="model-checked")
        credited[READ_FACT] = credited.get(READ_FACT, 0) + 1
    mutants = data.get("mutants", {})
    killed = sum(1 for m in mutants.values() if m.get("killed"))
    line = (f"model checker (Relacy, results of `make check-relacy` for these exact sources): "
            f"{len(runs)} runs on profile {profile}, "
            f"{sum(1 for r in runs if r['verdict'] == 'clean')} clean, "
            f"{sum(1 for r in runs if r['verdict'] == 'found')} found (findings in CPython's "
            f"own code, reported in docs/findings.md: "
            f"{', '.join(sorted(data.get('findings', {})))}); {len(bad)} unexpected; "
            f"mutants killed {killed}/{len(mutants)}")
    return ModelCheckResult(True, line, credited)
