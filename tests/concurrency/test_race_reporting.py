"""What the race probes and the Python-threads torture report (issue 33): the locks they
find, the pauses that waited out their limit (counted, never timed), an exception inside a
probe (the probe, the operations, the schedule, the traceback, the operation's fact, a command
that reruns that probe), and the torture's churn and state checks.
"""

from __future__ import annotations

import json
import shlex

import pytest
import race_mutant_adapters

from conformance.adapter import SlotView, Snapshot
from conformance.checks import concurrent, contract, races, stepping
from conformance.checks.pytorture import python_torture
from conformance.frontends import cli

#: The stepped race probes hold a thread between two shared accesses with sys.settrace's
#: opcode events; on the free-threaded builds (3.13t, 3.14t) they do not yet force the
#: interleavings these tests require (seen under tox py314t: rounds with no preemption), so
#: the tests run on the GIL build, where CI runs tests/concurrency (tools/test).
pytestmark = pytest.mark.requires("gil")



def _probes(name, profile="3.13", **kwargs):
    impl = getattr(race_mutant_adapters, name)(profile)
    with races.switching(races.FORCED_SWITCH_INTERVAL):
        return races.race_probes(impl, races.POINTS, **kwargs)


def test_a_nested_lock_waits_out_no_limit():
    # interp.q.mutex: found by following attributes, so no stepped round stops a thread that
    # holds it and no pause waits out its limit (a count, not a time)
    result = _probes("nested_lock", only=["advance | advance", "reserve | unregister",
                                          "quiescent_state | poll"])
    assert result.errors == {} and result.stats["escapes"] == 0
    declared = _probes("declared_lock", only=["advance | advance"])
    assert declared.errors == {} and declared.stats["escapes"] == 0


def test_a_hidden_lock_is_counted_and_reported(monkeypatch):
    monkeypatch.setattr(stepping, "ESCAPE_SECONDS", 0.05)
    result = _probes("hidden_lock", only=["advance | advance"])
    assert result.errors == {}
    assert result.stats["escapes"] > 0 and result.escaped
    line = concurrent._race_line({"rounds": result.rounds, "escapes": result.stats["escapes"],
                                  "escape_seconds": 0.05, "pairs_covered": 1, "pairs": 78,
                                  "pairs_not_covered": ["reserve | reserve"]})
    assert "waited out their 0.05 s limit" in line and "race_locks()" in line
    assert "covering 1 of 78 operation pairs" in line and "reserve | reserve" in line


def test_the_torture_reports_waits_and_coverage(monkeypatch, capsys):
    monkeypatch.setattr(stepping, "ESCAPE_SECONDS", 0.05)
    assert cli.main(["torture", "--impl", "race_mutant_adapters:hidden_lock",
                     "--python-threads", "--updates", "10", "--race-rounds", "6", "-q"]) == 0
    out = capsys.readouterr().out
    assert "waited out their limit" in out and "78 of 78 pairs the protocol allows" in out
    assert cli.main(["torture", "--impl", "race_mutant_adapters:nested_lock",
                     "--python-threads", "--updates", "10", "--race-rounds", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert "waited out" not in out


def test_a_probe_exception_names_probe_fact_traceback_and_reruns(capsys, tmp_path):
    out = tmp_path / "t.json"
    assert cli.main(["torture", "--impl", "race_mutant_adapters:asserts_alone",
                     "--python-threads", "--updates", "10", "--readers", "1", "--churn", "0",
                     "-q", "--json", str(out)]) == 1
    data = json.loads(out.read_text())
    probes = data["stats"]["races"]
    assert list(probes["errors"]) == ["S-QS-1"], probes["errors"]
    detail = probes["errors"]["S-QS-1"][0]
    assert "race probe 'quiescent_state | quiescent_state" in detail
    assert "preempted before its access point" in detail
    assert "raised AssertionError: another thread is inside quiescent_state" in detail
    assert "Traceback" in detail and "race_mutant_adapters.py" in detail
    assert "S-SAFE-2" not in data["stats"]["contract"]["errors"]
    rerun = probes["replay"]["S-QS-1"]
    assert "--race-probe" in rerun and "race_mutant_adapters:asserts_alone" in rerun
    capsys.readouterr()
    argv = shlex.split(rerun)[1:]
    assert cli.main(argv + ["-q", "--race-rounds", "64", "--churn", "0", "--readers", "1",
                            "--json", str(out)]) == 1
    again = json.loads(out.read_text())["stats"]["races"]
    assert again["rounds"] == 1 and list(again["errors"]) == ["S-QS-1"]


def test_a_torture_thread_exception_is_charged_to_its_operation():
    # race probes off: the writer's third poll raises, in a torture thread
    status, stats = python_torture(race_mutant_adapters.raising_poll("3.13"), readers=2,
                                   writers=1, seconds=0, updates=50, race_rounds=0,
                                   probe_rounds=0, churners=0)
    assert status == 1
    assert set(stats["contract"]["errors"]) == {"S-POLL-1"}, stats["contract"]["errors"]
    assert "poll raised ValueError: the third poll" in stats["contract"]["errors"]["S-POLL-1"][0]
    assert stats["harness_errors"] == []


def test_state_checks_after_each_round_name_a_lost_push():
    status, stats = python_torture(race_mutant_adapters.forgets_pushes("3.13"), readers=2,
                                   writers=1, seconds=0, updates=200, race_rounds=0,
                                   churners=1, round_updates=20, seed=7)
    assert status == 1
    errors = stats["contract"]["errors"]
    assert "S-FREE-3" in errors and "S-UNREG-1" in errors, errors
    assert "neither allocated nor on the freelist" in errors["S-FREE-3"][0]
    assert "state check after round" in errors["S-FREE-3"][0]
    assert stats["seed"] == 7 and stats["churn_cycles"] >= 5


def test_the_honest_port_passes_the_churn_and_the_state_checks():
    status, stats = python_torture(race_mutant_adapters.lock_free_scan("3.14"), readers=2,
                                   writers=1, seconds=0, updates=200, race_rounds=0,
                                   churners=2, round_updates=20)
    assert status == 0, stats
    assert stats["state_checks"] >= 200 // 20 and stats["churn_cycles"] > 0
    assert stats["contract"]["errors"] == {}


def _snap(**kw):
    base = dict(wr_seq=5, rd_seq=3, size=2,
                slots=(SlotView(seq=3, allocated=True, owner=10, bookkeeping=()),
                       SlotView(seq=0, allocated=False, owner=None, bookkeeping=())),
                freelist=(1,), threads={10: 0})
    base.update(kw)
    return Snapshot(**base)


def test_state_invariants():
    assert contract.state_invariants(_snap()) == {}
    assert set(contract.state_invariants(_snap(freelist=()))) == {"S-FREE-3", "S-UNREG-1"}
    assert set(contract.state_invariants(_snap(freelist=(1, 1)))) == {"S-FREE-3", "S-UNREG-1"}
    assert set(contract.state_invariants(_snap(freelist=(1, 0)))) == {"S-FREE-1", "S-RES-1"}
    assert set(contract.state_invariants(_snap(threads={10: 0, 11: 0}))) == {"S-REG-1",
                                                                           "S-RES-1"}
    assert set(contract.state_invariants(_snap(threads={10: 1}))) == {"S-REG-1"}
    assert set(contract.state_invariants(_snap(rd_seq=7))) == {"S-POLL-2"}
    assert set(contract.state_invariants(_snap(wr_seq=6))) == {"S-ADV-1"}
    assert set(contract.state_invariants(_snap(rd_seq=5))) == {"S-POLL-2"}   # past slot 0
