"""Fidelity against the running free-threaded interpreter (3.13t, 3.14t).

The live probe reads CPython's own QSBR state; the oracle predicts it from the same actions.
Skipped on GIL builds, which have no QSBR.
"""

import sys

import pytest
from requires import requires

from conformance.checks import live
from conformance.model import profiles
from conformance.model.layout import EXPECTED_LAYOUT
from conformance.reference import reference_port

pytestmark = [
    pytest.mark.free_threading,
    pytest.mark.requires("free_threaded"),
]


def test_probe_is_built_for_this_interpreter():
    assert live.probe_available(), "conformance.checks._live_probe was not built"


def test_layout_of_the_port_matches_the_live_interpreter():
    from conformance.checks import _live_probe
    release = profiles.for_version(sys.version_info[:3]).name
    actual = _live_probe.layout()
    assert actual == EXPECTED_LAYOUT[release]
    port = reference_port(release).layout()
    assert {k: port[k] for k in actual} == actual      # S-SLOT-2, port versus CPython


def test_fixed_scenario_growth_fork_and_subinterpreter():
    result = live.check_actions(live.SCENARIO)
    assert result.failures == []
    assert result.checks["S-SLOT-3"] >= 3        # 8 -> 16 -> 32 -> 64
    assert result.checks["S-FORK-1"] >= 2


def test_generated_action_sequences():
    result = live.live_check(examples=30, seed=5)
    assert result.failures == []
    assert result.actions >= 300, result.actions
    other_line = {"3.13": "S-DEF-2", "3.14": "S-DEF-1"}[result.profile]
    assert all(result.checks[fact] > 0 for fact in live.LIVE_FACTS if fact != other_line), \
        result.checks
    assert result.seq_values > 0 and result.seq_skipped == []


def test_a_subinterpreter_may_grow_a_full_main_array():
    # With 7 threads beside the main one the main interpreter's 8 slots are full; starting a
    # subinterpreter runs its builtin modules' init functions in the main interpreter on a
    # thread state made for that (import.c, switch_to_main_interpreter), which grows the
    # array.  The model accepts exactly that state (grown, the new slots free) and no other.
    sequence = [["start"]] * 7 + [["subinterp"], ["fork"], ["seq", "quiescent_state"]]
    requires("subinterpreters")
    result = live.check_actions(sequence)
    assert result.failures == []
    assert result.interpreter_thread_states == 1


def test_sequence_values_are_compared_operation_by_operation():
    # wr_seq, rd_seq and every slot's seq after each driven operation: the interpreter's own
    # _Py_qsbr_advance / _Py_qsbr_poll / batching function (found through .symtab), the
    # header's quiescent_state and goal_reached, and a real detach/attach.
    result = live.check_actions(live.SCENARIO)
    assert result.failures == []
    assert result.seq_skipped == [], result.seq_skipped
    batch = "shared_next" if result.profile == "3.14" else "deferred_advance"
    for op in ("quiescent_state", "advance", "goal_reached", "poll", batch, "detach_attach"):
        assert result.seq_ops[op] > 0, result.seq_ops
    assert result.seq_values >= 1000, result.seq_values
    for fact in ("S-ADV-1", "S-POLL-1", "S-QS-1", "S-ATTACH-1", "S-DETACH-1", "S-GOAL-1"):
        assert result.checks[fact] > 0, fact


def test_the_interpreter_functions_are_located_soundly():
    from conformance.checks import symbols
    found = symbols.find_functions(("_Py_qsbr_advance", "_Py_qsbr_poll"))
    assert len(set(found.values())) == 2 and all(found.values())


def test_symtab_values_handed_to_a_driver_are_checked_there():
    from conformance.checks import symbols
    names = ("_Py_qsbr_advance", "_Py_qsbr_poll")
    known = symbols.symtab_values(names)
    assert known, "this interpreter's .symtab could not be read"
    assert symbols.find_functions(names, known) == symbols.find_functions(names)
    # Values of another binary (every anchor off by the same amount, as a rebuilt interpreter
    # would be) must not be used as they are: the functions are read from the files instead.
    (path, values), = known.items()
    shifted = {name: value + 64 for name, value in values.items()}
    shifted[symbols.ANCHORS[0]] += 16           # the anchors no longer agree on one bias
    assert symbols.find_functions(names, {path: shifted}) == symbols.find_functions(names)
    reasons: list[str] = []
    assert symbols._from_values(path, names, shifted, reasons) is None
    assert "do not agree on one load address" in reasons[0]


def test_a_wrong_sequence_value_is_reported():
    # The comparison must be able to fail: replay a recorded advance whose live result and
    # wr_seq are off by one increment.
    records = live.run_driver([["seq", "advance"]])
    record = records[1]
    model = live._Model(records[0]["profile"], records[0]["main_thread_id"])
    record["seq"]["after"]["wr_seq"] += 2
    record["seq"]["result"] += 2
    result = live.LiveResult()
    live._seq_compare(model, record, result, "step 1")
    assert any("wr_seq: live" in f for f in result.failures), result.failures
    assert any("result: live" in f for f in result.failures), result.failures
