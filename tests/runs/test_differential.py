"""The differential run itself: the shipped implementations conform, and bugs are caught."""

import pytest

from conformance import load_implementation, run_conformance
from conformance.model.facts import MODEL_CHECKED_ONLY, facts_for_profile


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


def test_oracle_against_itself_conforms(profile):
    result = run_conformance(load_implementation("conformance.oracle:oracle", profile=profile),
                             examples=40, seed=5)
    assert result.conforms
    assert result.fact_status("S-SLOT-2") == "n/a"      # the oracle has no C layout


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
