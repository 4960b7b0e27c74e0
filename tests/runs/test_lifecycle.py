"""Issue 33's kinds a default run missed: allocation failure armed across the lifecycle (and,
with them, the fault boundaries a report names).

The wrong implementations are tests/lifecycle_mutant_adapters.py; each must be killed by a run
with the default options (stopping at its first failure: what kills it runs first) naming the
facts its bug breaks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conformance.checks.runner import run_conformance
from conformance.model import boundaries
from conformance.model.oracle import OracleInterpreter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lifecycle_mutant_adapters as mutants  # noqa: E402


@pytest.mark.parametrize("name", sorted(mutants.MUTANTS))
def test_mutant_is_killed_by_a_default_run_naming_its_facts(name):
    _cls, _profile, facts, _kind, exact = mutants.MUTANTS[name]
    result = run_conformance(getattr(mutants, name)(), seed=1, stop_at_first_failure=True)
    assert not result.conforms
    named = {f for failure in result.failures for f in failure.facts}
    if exact:
        assert named == facts, [failure.message for failure in result.failures]
    else:
        assert facts <= named, [failure.message for failure in result.failures]


def test_fault_boundaries_are_expected_and_named_by_the_oracle():
    expected = boundaries.expected("3.13")
    for name in boundaries.FAULT_BOUNDARIES:
        assert name in expected
    o = OracleInterpreter("3.13")
    t = o.new_thread_state()
    o.register(t, o.reserve())
    o.fail_next_allocations(2)              # armed while an array exists
    o.fini()
    o.reached = []
    assert o.reserve() == -1                # consumed after fini
    assert set(o.reached) >= {
        boundaries.fault("while an array exists", "after fini"),
        "faults: armed before fini, consumed after it"}
    o.reached = []
    assert o.reserve() == -1
    assert "faults: a second armed failure consumed by the next growth" in o.reached
    o.reached = []
    assert o.reserve() == 7
    assert boundaries.FAULT_RECOVERED in o.reached


def test_fault_scenario_reaches_every_fault_boundary():
    from conformance.oracle import oracle
    result = run_conformance(oracle("3.14"), examples=1, seed=2, explore_seconds=0)
    assert result.conforms
    missing = [name for name in boundaries.FAULT_BOUNDARIES if not result.boundaries.counts[name]]
    assert missing == []


def test_several_interpreters_are_credited_on_the_reference_port():
    from conformance.reference import reference_port
    result = run_conformance(reference_port(profile="3.13"), examples=5, seed=4,
                             explore_states=300)
    assert result.conforms, [failure.message for failure in result.failures]
    assert result.ledger.checks["S-INTERP-1"] > 0 and result.ledger.checks["S-INTERP-2"] > 0
    assert result.exploration.starts[-1].name == "beside a second interpreter"
    assert result.exploration.starts[-1].states > 0


def test_the_exploration_beside_a_second_interpreter_kills_a_shared_table():
    from conformance.checks.exhaustive import explore
    found = explore(mutants.shared_table(), seconds=None, max_states=200,
                    starts=["beside a second interpreter"]).failure
    assert found is not None and found.facts == ("S-INTERP-1",)
    assert "new_interpreter() -> 1" in [r.render().split("    #")[0] for r in found.records]


def test_a_failure_across_interpreters_replays():
    from conformance.checks.replay import replay_steps
    result = run_conformance(mutants.shared_sequences(), seed=1, stop_at_first_failure=True)
    failure = result.failures[0]
    assert any(r.operation == "use_interpreter" for r in failure.records)
    replayed = replay_steps(mutants.shared_sequences(), failure.records)
    assert replayed.failure is not None and replayed.failure.facts == ("S-INTERP-1",)
    assert replay_steps(mutants.oracle_factory(), failure.records).failure is None


# -- one comparator and one failure record (issue 30) ------------------------------------------

def test_one_failure_record_type_under_every_old_name():
    from conformance.checks import differential, exhaustive, replay, runner
    from conformance.checks.failure import Failed, FailureRecord
    assert runner.Failure is exhaustive.ExploreFailure is replay.RecordedFailure is FailureRecord
    assert exhaustive._Failed is Failed and issubclass(differential.ConformanceFailure, Failed)
    raised = differential.ConformanceFailure({"S-ADV-1"}, "advance() -> 1")
    assert isinstance(raised.record, FailureRecord) and raised.facts == ("S-ADV-1",)
    assert str(raised) == "[S-ADV-1] advance() -> 1"


def test_the_machine_and_the_exploration_give_one_verdict():
    """The same bug, found by the fixed scenarios (the machine) and by the exploration: the
    same comparator, so the same facts and the same per-field message."""
    from conformance.checks.exhaustive import explore
    impl = mutants.advance_pulls_read_sequence()
    by_run = run_conformance(impl, seed=1, stop_at_first_failure=True).failures[0]
    by_exploration = explore(impl, seconds=None, max_states=300).failure
    assert by_exploration is not None
    assert by_run.facts == by_exploration.facts == ("S-ADV-1",)
    line = "rd_seq: got 3, expected 1"
    assert line in by_run.message and line in by_exploration.message
    assert {"field": "rd_seq", "observed": 3, "expected": 1} in by_exploration.diff


def test_compare_step_names_fields_and_facts():
    from conformance.checks.compare import Expected, Observed, compare_step
    state = {"wr_seq": 3, "rd_seq": 1, "size": 8,
             "slots": [(0, False, None, (("deferrals", 0),))] * 8,
             "freelist": list(range(7, -1, -1)), "threads": {}}
    before = dict(state, wr_seq=1)
    expected = Expected("advance", "advance()", frozenset({"S-ADV-1", "S-SEQ-1"}), None, 3,
                        state=state, before=before)
    assert compare_step(expected, Observed(None, 3, state=state)) is None
    wrong = compare_step(expected, Observed(None, 5, state=dict(state, wr_seq=5)))
    assert wrong is not None and wrong.facts == ("S-ADV-1", "S-SEQ-1")     # QSBR_INCR 4
    moved = compare_step(expected, Observed(None, 3, state=dict(state, rd_seq=3)))
    assert moved is not None and moved.facts == ("S-ADV-1",) and moved.parts == ("rd_seq",)
    assert moved.diff == [{"field": "rd_seq", "observed": 3, "expected": 1}]


def test_composite_actions_are_one_set(monkeypatch):
    """create_thread and destroy_thread are conformance.checks.composites' for the machine and
    the exploration alike: replacing them there changes both."""
    from conformance.checks import composites
    from conformance.checks.differential import make_machine
    from conformance.checks.exhaustive import Action, _OracleRun
    from conformance.model.ledger import FactLedger
    from conformance.oracle import oracle

    made = []
    original = composites.create_thread

    def watched(call):
        made.append("create_thread")
        return original(call)

    monkeypatch.setattr(composites, "create_thread", watched)
    machine = make_machine(oracle("3.13"), FactLedger())()
    machine.start(None)
    machine.create_thread()
    run = _OracleRun(OracleInterpreter("3.13"))
    run.run(Action("create_thread"))
    assert made == ["create_thread", "create_thread"]
    assert [r.operation for r in machine.trace] == [c[0] for c in run.calls] == [
        "new_thread_state", "reserve", "register"]
    machine.teardown()
