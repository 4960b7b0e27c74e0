"""Sequential generation (issues 24 and 25): growth from every interesting state past 64 slots,
misuse in combination, argument types, the half range, the boundary ledger and the exploration's
reproducible (states) bound.

The wrong implementations are tests/seqgen_mutant_adapters.py; each must be killed by a run
with the default options (the run stops at its first failure: what kills it runs first, so the
rest of the run could not change the verdict) and the fact its bug breaks must be named.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conformance.checks import exhaustive
from conformance.checks.runner import run_conformance
from conformance.model import boundaries, errors
from conformance.model.oracle import OracleInterpreter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import seqgen_mutant_adapters as mutants  # noqa: E402


@pytest.mark.parametrize("name", sorted(mutants.MUTANTS))
def test_mutant_is_killed_by_a_default_run_naming_its_fact(name):
    _cls, _profile, fact, _kind = mutants.MUTANTS[name]
    result = run_conformance(getattr(mutants, name)(), seed=1, stop_at_first_failure=True)
    assert not result.conforms
    named = {f for failure in result.failures for f in failure.facts}
    assert fact in named, [failure.message for failure in result.failures]
    if fact == "S-RES-1":
        assert "S-FREE-1" not in named      # the growth's copy, not the pop


@pytest.mark.parametrize("profile", ["3.13", "3.14"])
def test_reference_port_conforms_and_reaches_every_boundary(profile):
    from conformance.reference import reference_port
    result = run_conformance(reference_port(profile=profile), examples=30, seed=3)
    assert result.conforms, [failure.message for failure in result.failures]
    assert result.boundaries is not None
    assert result.boundaries.gaps == []
    exported = boundaries.to_json(result.boundaries)
    assert exported["gaps"] == [] and exported["expected"] == len(exported["reached"])
    assert boundaries.render_text(result.boundaries)[0].startswith(
        f"boundaries: {exported['expected']} of {exported['expected']} reached")


@pytest.mark.parametrize("profile", ["3.13", "3.14"])
def test_the_fixed_scenarios_alone_reach_every_boundary(profile):
    """By construction: no exploration, one random example."""
    from conformance.oracle import oracle
    result = run_conformance(oracle(profile), examples=1, seed=2, explore_seconds=0)
    assert result.conforms and result.exploration is None
    assert result.boundaries.gaps == []


def test_gaps_are_named_when_a_run_reaches_nothing():
    ledger = boundaries.BoundaryLedger(profile="3.13")
    ledger.reached(boundaries.growth(64, 128))
    text = "\n".join(boundaries.render_text(ledger))
    assert "growth: 64 -> 128" not in ledger.gaps
    assert "half-range: set_sequences with rd_seq and wr_seq 2^63 apart" in ledger.gaps
    assert "not reached" in text and "wrap: advance crosses 2^64" in text
    assert boundaries.to_json(ledger)["reached"] == {"growth: 64 -> 128": 1}


def test_profile_only_boundaries():
    assert boundaries.misuse("shared_next", "UnsupportedOperationError") in \
        boundaries.expected("3.13")
    assert boundaries.misuse("shared_next", "UnsupportedOperationError") not in \
        boundaries.expected("3.14")
    assert boundaries.misuse("deferred_advance", "UnsupportedOperationError") in \
        boundaries.expected("3.14")


@pytest.mark.parametrize("value", [True, False, 3.0, "3", None])
def test_coercible_arguments_are_rejected(value):
    o = OracleInterpreter("3.13")
    t = o.new_thread_state()
    o.register(t, o.reserve())
    with pytest.raises(errors.BadSequenceError):
        o.poll(t, value)
    with pytest.raises(errors.BadSequenceError):
        o.goal_reached(t, value)
    with pytest.raises(errors.IndexOutOfRangeError):
        o.register(o.new_thread_state(), value)
    assert not errors.is_integer(value)


def test_precedence_follows_the_protocol():
    o = OracleInterpreter("3.13")
    t = o.new_thread_state()
    o.register(t, o.reserve())
    assert o.misuse_conditions("poll", "no such handle", -1) == ["argument", "handle"]
    with pytest.raises(errors.BadSequenceError):
        o.poll("no such handle", -1)
    assert o.misuse_conditions("set_sequences", -1, 1) == ["argument", "not fresh"]
    with pytest.raises(errors.BadSequenceError):
        o.set_sequences(-1, 1)
    with pytest.raises(errors.NotFreshError):
        o.set_sequences(4, 1)
    loose = o.new_thread_state()
    assert o.misuse_conditions("should_process", loose) == ["profile", "slot"]
    with pytest.raises(errors.UnsupportedOperationError):
        o.should_process(loose)
    with pytest.raises(errors.UnknownThreadStateError):
        o.should_process("no such handle")
    with pytest.raises(errors.UnknownThreadStateError):
        o.delete_thread_state("no such handle")


def test_half_range_set_sequences_is_valid_both_ways():
    o = OracleInterpreter("3.13")
    o.set_sequences((1 << 63) + 1, 1)
    o.set_sequences(1, (1 << 63) + 1)
    assert "S-SEQ-3" in o.applied
    with pytest.raises(errors.BadSequenceError):
        o.set_sequences(1, 2)               # rd_seq's parity is checked too


def test_states_bound_gives_the_same_scope_every_time():
    oracle = __import__("conformance.oracle", fromlist=["oracle"]).oracle("3.13")
    first = exhaustive.explore(oracle, seconds=None, max_states=400, min_depth=1)
    second = exhaustive.explore(oracle, seconds=None, max_states=400, min_depth=1)
    assert first.stopped_by == second.stopped_by == "states"
    assert first.states_bound == 400 and first.scope()["states_bound"] == 400
    assert (first.states, first.transitions, first.steps) == (
        second.states, second.transitions, second.steps)
    assert [s.depth_complete for s in first.starts] == [s.depth_complete for s in second.starts]
