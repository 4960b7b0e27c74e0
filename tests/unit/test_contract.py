"""The contract oracle (conformance.checks.contract): it judges a recorded history of
attach/detach/quiescent state/goal/poll events independently of CPython's algorithm."""

from __future__ import annotations

from conformance.checks import contract

A, D, Q, G, P = contract.ATTACH, contract.DETACH, contract.QS, contract.GOAL_ADVANCE, \
    contract.POLL


def test_contract_flags_a_poll_true_while_a_reader_holds_on():
    history = [(1, 2, 10, A, 0, 0), (3, 4, 20, A, 0, 0), (5, 6, 20, G, 7, 0),
               (7, 8, 20, Q, 0, 0), (9, 10, 20, P, 7, 1), (11, 12, 10, Q, 0, 0)]
    judged = contract.judge(history)
    assert judged.safety_checked == 1 and list(judged.errors) == ["S-SAFE-1"]


def test_contract_no_false_alarm_when_the_order_is_not_certain():
    # The reader's quiescent state overlaps the poll: it may have come first.
    history = [(1, 2, 10, A, 0, 0), (3, 4, 20, A, 0, 0), (5, 6, 20, G, 7, 0),
               (7, 8, 20, Q, 0, 0), (9, 12, 20, P, 7, 1), (10, 13, 10, Q, 0, 0)]
    assert contract.judge(history).ok
    # A reader that attached after the goal was taken does not hold it.
    history = [(3, 4, 20, A, 0, 0), (5, 6, 20, G, 7, 0), (7, 8, 10, A, 0, 0),
               (9, 10, 20, Q, 0, 0), (11, 12, 20, P, 7, 1)]
    assert contract.judge(history).ok


def test_contract_liveness():
    # Everyone attached at the goal moved on, yet the poll said no.
    history = [(1, 2, 10, A, 0, 0), (3, 4, 20, A, 0, 0), (5, 6, 20, G, 7, 0),
               (7, 8, 10, Q, 0, 0), (9, 10, 20, Q, 0, 0), (11, 12, 20, P, 7, 0)]
    judged = contract.judge(history)
    assert judged.liveness_checked == 1 and list(judged.errors) == ["S-SAFE-2"]
    # ... but not while the poller itself has not passed a quiescent state.
    assert contract.judge([e for e in history if e[:3] != (9, 10, 20)]).ok
