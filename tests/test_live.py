"""Fidelity against the running free-threaded interpreter (3.13t, 3.14t).

The live probe reads CPython's own QSBR state; the oracle predicts it from the same actions.
Skipped on GIL builds, which have no QSBR.
"""

import pytest

import cython_bridge
from conformance.checks import live
from conformance.model.layout import EXPECTED_LAYOUT

pytestmark = [
    pytest.mark.free_threading,
    pytest.mark.skipif(not live.free_threaded(),
                       reason="needs a free-threaded CPython build (3.13t/3.14t): GIL builds "
                              "have no QSBR state to probe"),
]


def test_probe_is_built_for_this_interpreter():
    assert live.probe_available(), "conformance.checks._live_probe was not built"


def test_layout_of_the_port_matches_the_live_interpreter():
    from conformance.checks import _live_probe
    actual = _live_probe.layout()
    assert actual == EXPECTED_LAYOUT[_live_probe.PROFILE]
    port = cython_bridge.reference_port(_live_probe.PROFILE).layout()
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
    assert all(result.checks[fact] > 0 for fact in live.LIVE_FACTS), result.checks
