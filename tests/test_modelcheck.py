"""conformance.checks.modelcheck: the model checker's results in the conformance run."""

import json

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
