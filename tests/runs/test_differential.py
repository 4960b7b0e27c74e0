"""The differential run itself: the shipped implementations conform, and bugs are caught."""

import pytest

from conformance import load_implementation, run_conformance
from conformance.model.facts import MODEL_CHECKED_ONLY, facts_for_profile


@pytest.mark.slow
def test_reference_port_conforms(profile):
    impl = load_implementation("conformance.reference:reference_port", profile=profile)
    result = run_conformance(impl, examples=120, seed=11, explore_states=500)
    assert result.failures == []
    assert result.conforms
    for fact in facts_for_profile(profile):
        if fact.id in MODEL_CHECKED_ONLY:       # the model checker's, not this run's
            assert result.fact_status(fact.id) == "n/a"
            continue
        assert result.ledger.checks[fact.id] > 0, f"{fact.id} was never checked"


def test_oracle_as_an_implementation_is_judged_and_credited_like_any_other(profile):
    """The oracle loaded as an implementation (its answers cannot differ from the model's, so
    this is not a test of the oracle): what it checks is the harness.  Every phase ran, every
    fact of the profile that a sequential run can check was checked, in the scenario, the
    exploration and the random phase, and a fact it cannot check says why."""
    impl = load_implementation("conformance.oracle:oracle", profile=profile)
    result = run_conformance(impl, examples=40, seed=5, explore_states=500)
    assert result.failures == [] and result.conforms
    assert result.fact_status("S-SLOT-2") == "n/a"      # the oracle has no C layout
    for fact in facts_for_profile(profile):
        if fact.id in MODEL_CHECKED_ONLY or fact.id == "S-SLOT-2":
            continue
        assert result.ledger.checks[fact.id] > 0, f"{fact.id} was never checked"
    by_source = result.ledger.counts_by_source("S-ADV-1")
    assert {"scenario", "exhaustive", "random"} <= set(by_source), by_source


@pytest.mark.parametrize("mutant, fact", [
    ("advance_returns_old", "S-ADV-1"),
    ("fifo_freelist", "S-FREE-3"),
    ("plain_compare", "S-SEQ-3"),
])
def test_mutant_adapter_is_rejected_naming_the_fact(mutant, fact):
    impl = load_implementation(f"mutant_adapters:{mutant}")
    result = run_conformance(impl, examples=150, seed=3, explore_states=500)
    assert not result.conforms
    named = {f for failure in result.failures for f in failure.facts}
    assert fact in named, f"{mutant}: failures named {named}"
    assert any(failure.steps for failure in result.failures), "no shrunk sequence reported"
