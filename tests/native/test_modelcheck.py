"""conformance.checks.modelcheck: the model checker's results in the conformance run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import sources
from conformance.checks import modelcheck
from conformance.model import status
from conformance.model.ledger import FactLedger

SOURCE = sources.reference_c()


def _results(tmp_path, sha, read_acquire="found"):
    runs = [{"subject": "port", "profile": "313", "scenario": s, "scheduler": "random",
             "verdict": v, "ok": True, "detail": ""}
            for s, v in (("rw", "clean"), ("growth", "clean"), ("read-seqcst", "clean"),
                         ("read-acquire", read_acquire))]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"sources_sha256": sha, "runs": runs, "findings": {},
                                "mutants": {"X": {"killed": True}}}))
    return path


def test_other_implementations_get_a_line_and_n_a():
    ledger = FactLedger()
    result = modelcheck.apply(ledger, "3.13", reference_port=False)
    assert not result.ran and "not run" in result.line
    assert status.fact_status("S-READ-1", ledger, profile="3.13",
                              layout_checked=True) == status.NOT_APPLICABLE


def test_results_for_other_sources_are_not_used(tmp_path):
    ledger = FactLedger()
    result = modelcheck.apply(ledger, "3.13", reference_port=True,
                              results_path=_results(tmp_path, "0" * 64))
    assert not result.ran and "other sources" in result.line
    assert not ledger.checks["S-ATTACH-1"]


def test_matching_results_credit_model_checked_facts(tmp_path):
    ledger = FactLedger()
    path = _results(tmp_path, modelcheck.sources_hash(SOURCE))
    result = modelcheck.apply(ledger, "3.13", reference_port=True, results_path=path)
    assert result.ran and "mutants killed 1/1" in result.line
    assert ledger.counts_by_source("S-RES-1") == {"model-checked": 1}
    assert status.fact_status("S-READ-1", ledger, profile="3.13",
                              layout_checked=True) == status.PASS
    # The read-side pair must hold for S-READ-1 to be credited.
    ledger2 = FactLedger()
    modelcheck.apply(ledger2, "3.13", reference_port=True,
                     results_path=_results(tmp_path, modelcheck.sources_hash(SOURCE), "clean"))
    assert not ledger2.checks["S-READ-1"]


# --- the Relacy harness itself: pieces, merge, order edits (issues 24 and 25) --------------

RUN = SOURCE / "relacy" / "run.py"
needs_relacy = pytest.mark.requires("relacy")
# The order edits of the loads and stores a true poll / goal_reached answer relies on,
# reference_c/mutants/NAME.patch (reference_c/relacy/README.md, "Loads behind a true answer").
ORDER_EDITS = ("GOAL_REACHED_RELAXED", "SCAN_RD_SEQ_RELAXED", "ATTACH_LOAD_RELAXED",
               "QS_LOAD_RELAXED")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True)


def test_pieces_are_listed():
    proc = _run("--list")
    assert proc.returncode == 0, proc.stderr
    pieces = proc.stdout.split()
    assert "port:313:fastpath:random" in pieces and "port:314:scan-rd:bound" in pieces
    assert "GOAL_REACHED_RELAXED:313:fastpath:random" in pieces
    assert not any(p.endswith(":full") for p in pieces)
    assert "port:313:rw:full" in _run("--list", "--search", "full").stdout.split()
    assert len(set(pieces)) == len(pieces)
    assert _run("--piece", "port:313:nosuch:random").returncode == 2


def test_order_edits_are_patch_files_for_the_model_checker():
    for name in ORDER_EDITS:
        text = (SOURCE / "mutants" / f"{name}.patch").read_text()
        header = text.split("\n--- ", 1)[0]
        assert f"Mutant: {name}" in header and "Killer: model checker" in header
        assert "Kind: order" in header and "Scenarios: " in header


@needs_relacy
def test_two_pieces_run_apart_and_merge(tmp_path):
    build = tmp_path / "build"
    port = _run("--build", str(build), "--piece", "port:313:fastpath:random",
                "--piece", "port:313:fastpath:bound", "--cap", "200",
                "--json", str(tmp_path / "a.json"))
    assert port.returncode == 0, port.stdout + port.stderr
    mutant = _run("--build", str(build), "--piece", "GOAL_REACHED_RELAXED:313:fastpath:random",
                  "--json", str(tmp_path / "b.json"))
    assert mutant.returncode == 0, mutant.stdout + mutant.stderr
    merged = tmp_path / "results.json"
    proc = _run("--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                "--json", str(merged))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(merged.read_text())
    assert data["ok"] and data["mutants"]["GOAL_REACHED_RELAXED"]["killed"]
    assert data["mutants"]["GOAL_REACHED_RELAXED"]["by"] == "fastpath/random"
    assert data["coverage"]["313/fastpath"]["random"].startswith("clean in 20000")
    assert data["coverage"]["313/fastpath"]["bound"] == "capped: clean in the first 200 " \
                                                        "iterations"
    assert data["capped"] == ["313/fastpath/bound"] and data["exhaustive"] == []
    assert "capped" in proc.stdout
    # the merged file is a results file the conformance run can use
    ledger = FactLedger()
    result = modelcheck.apply(ledger, "3.13", reference_port=True, results_path=merged)
    assert result.ran and "mutants killed 1/1" in result.line
    assert ledger.counts_by_source("S-GOAL-1") == {"model-checked": 2}


@needs_relacy
@pytest.mark.parametrize("mutant", ORDER_EDITS)
def test_each_order_edit_is_killed_by_a_scenario(mutant, tmp_path):
    out = tmp_path / "r.json"
    proc = _run("--build", str(tmp_path / "b"), "--mutant", mutant, "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = json.loads(out.read_text())["mutants"][mutant]
    assert row["killed"] and "DATA RACE" in row["detail"], row


def _pieces_from_env() -> list[str]:
    wanted = os.environ.get("QSBR_RELACY_PIECES", "")
    if not wanted or RUN is None:
        return []
    if wanted in ("all", "random", "bound", "full"):
        search = "random,bound" if wanted == "all" else wanted
        return _run("--list", "--search", search).stdout.split()
    return [p.strip() for p in wanted.split(",") if p.strip()]


#: Without the opt-in (QSBR_RELACY_PIECES): one small piece of the port, and one piece of a
#: mutant that this piece finds (a data race on the relaxed goal load, in a few dozen
#: iterations of Relacy's seeded random scheduler), so that both kinds of row are checked.
DEFAULT_PIECES = ("port:313:fastpath:bound", "GOAL_REACHED_RELAXED:313:fastpath:random")


@needs_relacy
@pytest.mark.parametrize("piece", _pieces_from_env() or DEFAULT_PIECES)
def test_relacy_piece(piece, tmp_path_factory):
    """One model-checker piece per test, so pytest-xdist spreads them over cores:
    QSBR_RELACY_PIECES=all (or random, bound, full, or a comma list of piece ids) and
    QSBR_RELACY_OUT=DIR; then `python3 reference_c/relacy/run.py --merge DIR/*.json`."""
    out = Path(os.environ.get("QSBR_RELACY_OUT") or tmp_path_factory.mktemp("pieces"))
    out.mkdir(parents=True, exist_ok=True)
    target = out / (piece.replace(":", "_") + ".json")
    proc = _run("--build", str(out / "build"), "--jobs", "1", "--piece", piece,
                "--json", str(target))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = json.loads(target.read_text())["runs"][0]
    assert row["piece"] == piece, row
    # The piece ran to a verdict of the model checker (not a build or harness error), over
    # iterations it counted, and a "found" names what it found.
    assert row["verdict"] in ("clean", "found") and row["iterations"] > 0, row
    assert row["verdict"] == "clean" or row["detail"], row
    if row["subject"] == "port":
        assert row["ok"], row
    else:
        # One piece of a mutant may miss it (the merge says whether any piece killed it), but
        # what it is checked against is that it must be found.
        assert row["expected"] == "found", row
        if piece in DEFAULT_PIECES:
            assert row["verdict"] == "found" and row["ok"] and "DATA RACE" in row["detail"], row
