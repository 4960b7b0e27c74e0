"""The bounded-exhaustive exploration (conformance.checks.exhaustive), blame and step records."""

import mutant_adapters
import pytest
from mutant_adapters import ISSUE14_MUTANTS

from conformance import load_implementation, run_conformance
from conformance.checks import exhaustive
from conformance.checks.blame import blame
from conformance.checks.exhaustive import U64, canonical_key, explore
from conformance.model.oracle import OracleInterpreter

NAMED_IN_ISSUE_14 = ("scan_skips_unallocated", "deferrals_per_thread", "scan_skips_own_slot",
                     "misuse_changes_seq")


def test_reference_port_explored_to_depth_2_conforms(profile):
    impl = load_implementation("conformance.reference:reference_port", profile=profile)
    result = explore(impl, depth=2, seconds=None)      # bounded by the depth alone
    assert result.failure is None, result.failure
    assert result.stopped_by == "depth"
    assert [s.depth_complete for s in result.starts] == [2] * len(exhaustive.START_POINTS)
    assert result.states > 100 and result.transitions > result.states
    assert result.steps >= result.transitions
    scope = result.scope()
    assert scope["depth_complete"] == 2 and scope["distinct_states"] == result.states
    assert {s["name"] for s in scope["start_points"]} == set(exhaustive.START_POINTS)


def test_exploration_is_deterministic():
    impl = load_implementation("conformance.oracle:oracle")
    first, second = (explore(impl, depth=2, seconds=None) for _ in range(2))
    assert (first.states, first.transitions, first.steps) == (
        second.states, second.transitions, second.steps)


def _two_threads(order):
    o = OracleInterpreter("3.13")
    handles = [o.new_thread_state() for _ in range(3)]
    for h in order:
        o.register(handles[h], o.reserve())
    return o


def test_canonical_key_renames_threads_and_keeps_sequences_relative():
    # The same state with the thread states created in another order: one key.
    assert canonical_key(_two_threads([0, 1])) == canonical_key(_two_threads([1, 0]))
    # Sequences relative to wr_seq: the same state one grace period later has the same key.
    a, b = _two_threads([0, 1]), _two_threads([0, 1])
    b.advance()
    assert b.poll(1, b.wr_seq) and b.rd_seq == 3
    a.attach(0)
    b.attach(0)
    assert canonical_key(a) == canonical_key(b)
    b.advance()
    assert canonical_key(a) != canonical_key(b)
    # ... but near the wrap it is a different state (a plain comparison would differ there).
    near = OracleInterpreter("3.13")
    near.set_sequences(U64, U64)
    far = OracleInterpreter("3.13")
    assert canonical_key(near) != canonical_key(far)


@pytest.mark.parametrize("mutant", sorted(ISSUE14_MUTANTS))
def test_exploration_finds_each_single_rule_mutant_naming_its_fact(mutant):
    fact = ISSUE14_MUTANTS[mutant][1]
    # The default run's scope, a count of states (not of seconds): the same on every machine.
    result = explore(getattr(mutant_adapters, mutant)(), seconds=None,
                     max_states=exhaustive.DEFAULT_MAX_STATES)
    assert result.failure is not None, f"{mutant} survived {result.summary()}"
    assert fact in result.failure.facts, result.failure
    assert len(result.failure.facts) <= 2, f"blame names too much: {result.failure.facts}"
    # the whole sequence, from a fresh interpreter, in the protocol's own terms
    records = result.failure.records
    assert records and records[0].operation in ("new_thread_state", "set_sequences", "reserve",
                                                "advance", "fini")
    assert not any("earlier steps" in r.render() for r in records)


@pytest.mark.parametrize("mutant", NAMED_IN_ISSUE_14)
def test_default_run_rejects_the_issue_14_mutants(mutant, seed):
    """The default run's checks (no options; stopping at the first failure so the test is
    quick) reject each mutant the issue names, naming the right fact."""
    impl = getattr(mutant_adapters, mutant)()
    result = run_conformance(impl, stop_at_first_failure=True, seed=seed)
    assert not result.conforms
    named = {f for failure in result.failures for f in failure.facts}
    assert ISSUE14_MUTANTS[mutant][1] in named, result.failures
    assert all(failure.records for failure in result.failures)


def test_blame_names_the_deciding_rule():
    assert blame({"S-POLL-1", "S-POLL-2"}, ["result"], operation="poll") == {"S-POLL-1"}
    assert blame({"S-POLL-1", "S-SEQ-3"}, ["result"], operation="poll") == {"S-POLL-1",
                                                                            "S-SEQ-3"}
    assert blame({"S-UNREG-1", "S-FREE-3", "S-DEF-3"}, ["bookkeeping"]) == {"S-DEF-3"}
    assert blame({"S-ATTACH-1"}, ["seq"], misuse=True) == {"MISUSE"}
    # nothing of what the step applied decides that part: name what it applied
    assert blame({"S-ADV-1"}, ["owner"]) == {"S-ADV-1"}


def test_oracle_credits_wrap_facts_only_when_the_wrap_decided():
    o = OracleInterpreter("3.13")
    t = o.new_thread_state()
    o.register(t, o.reserve())
    o.applied = []
    o.advance()
    assert "S-SEQ-4" not in o.applied               # no wrap crossed
    o.applied = []
    o.poll(t, o.wr_seq)
    assert "S-SEQ-3" not in o.applied               # a plain comparison agrees here
    w = OracleInterpreter("3.13")
    w.set_sequences(U64, U64)
    reader, poller = w.new_thread_state(), w.new_thread_state()
    w.register(reader, w.reserve())
    w.register(poller, w.reserve())
    w.attach(reader)
    w.applied = []
    goal = w.advance()
    assert goal == 1 and "S-SEQ-4" in w.applied     # crossed 2^64
    w.applied = []
    assert w.poll(poller, goal) is False
    assert "S-SEQ-3" in w.applied                   # plain unsigned would have said True


def test_plain_compare_poll_is_blamed_on_seq_3():
    result = explore(mutant_adapters.plain_compare(), seconds=None,
                     max_states=exhaustive.DEFAULT_MAX_STATES, starts=["near the 2^64 wrap"])
    assert result.failure is not None and "S-SEQ-3" in result.failure.facts


def test_unknown_start_point_is_an_error():
    with pytest.raises(ValueError, match="unknown start point"):
        explore(load_implementation("conformance.oracle:oracle"), starts=["nowhere"])


def test_wider_snapshot_rules():
    from conformance.model.adapter import SlotView, Snapshot
    from conformance.model.observed import wider_differences

    slots = (SlotView(0, True, 0, (), freelist_next=1, shared_is_interpreter=True),
             SlotView(0, False, None, (), freelist_next=None, shared_is_interpreter=False))
    snap = Snapshot(1, 1, 2, slots, (1,), {0: 0}, array_address_mod_64=16)
    parts = {part for part, _ in wider_differences(snap, "3.14")}
    assert parts == {"freelist_next", "alignment"}
    assert {part for part, _ in wider_differences(snap, "3.13")} == {"freelist_next"}
    # an adapter that observes none of it is not held to it
    assert wider_differences(Snapshot(1, 1, 2, (SlotView(0, True, 0), SlotView(0, False, None)),
                                      (1,), {0: 0}), "3.14") == []
