"""Races in Python-level code of thread-safe ports (issue 25): the Python-threads torture's race
probes (conformance.checks.races) must catch each port of tests/racy_adapters.py, naming the
fact its race breaks, on this build; the honest lock-protected port must pass.

Every run is bounded by counts (race rounds, updates), never by a clock.  The stepped rounds
preempt a thread at each access point in turn, so the catch does not depend on the
scheduler; on a free-threaded build the free rounds and the free-running torture add truly
parallel ones.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
import racy_adapters
from requires import requires

from conformance.checks import contract, races
from conformance.checks.pytorture import RACE_ROUNDS, python_torture
from conformance.frontends import cli

#: The stepped race probes hold a thread between two shared accesses with sys.settrace's
#: opcode events; on the free-threaded builds (3.13t, 3.14t) they do not yet force the
#: interleavings these tests require (seen under tox py314t: rounds with no preemption), so
#: the tests run on the GIL build, where CI runs tests/concurrency (tools/test).
pytestmark = pytest.mark.requires("gil")


GIL = races.gil_enabled()


def _torture(name: str, profile: str, **kwargs):
    return python_torture(getattr(racy_adapters, name)(profile), readers=2, writers=1,
                          seconds=0, updates=50, **kwargs)


@pytest.mark.parametrize("name", sorted(racy_adapters.RACY))
def test_each_race_is_caught_naming_its_fact(name):
    profile, fact = racy_adapters.RACY[name]
    before = sys.getswitchinterval()
    status, stats = _torture(name, profile, race_rounds=RACE_ROUNDS)
    assert sys.getswitchinterval() == before            # restored
    assert status == 1, stats
    assert fact in stats["races"]["errors"], stats["races"]
    assert fact in stats["contract"]["errors"]          # what the default run reads
    detail = stats["races"]["errors"][fact][0]
    assert "no order of them run one at a time gives that" in detail
    assert stats["races"]["preemptions"] > 0
    assert ("GIL on" in stats["evidence"]) == GIL


@pytest.mark.parametrize("profile", ["3.13", "3.14"])
def test_the_honest_locked_port_passes(profile):
    status, stats = _torture("locked", profile, race_rounds=RACE_ROUNDS)
    assert status == 0, stats
    probes = stats["races"]
    assert probes["errors"] == {} and stats["contract"]["errors"] == {}
    assert set(probes["by_kind"]) == set(races.kinds(profile))
    # its operations hold the lock almost everywhere: few lock-free lines, but some
    assert probes["preemptions"] > 0 and probes["free"] > 0 and probes["escapes"] == 0
    assert stats["frees"] > 0


def test_without_race_rounds_the_races_pass():
    """What the probes add: on a GIL build the free-running torture alone (updates,
    grace-period probes) does not see this race, which the race rounds catch
    (test_each_race_is_caught_naming_its_fact).  On a free-threaded build truly parallel
    threads may or may not hit it, so nothing can be required there either way."""
    requires("gil")
    status, stats = _torture("growth_copy_outside_lock", "3.14", race_rounds=0)
    assert "races" not in stats
    assert status == 0 and stats["frees"] > 0, stats
    assert stats["contract"]["errors"] == {} and stats["harness_errors"] == [], stats


def test_switch_interval_is_forced_and_restored_on_gil_builds():
    seen = []

    class Spy:
        thread_safe = True
        profile = "3.13"

        def new_interpreter(self):
            seen.append(sys.getswitchinterval())
            return racy_adapters.locked("3.13").new_interpreter()

    before = sys.getswitchinterval()
    status, stats = python_torture(Spy(), readers=1, writers=1, seconds=0, updates=5,
                                   race_rounds=1, switch_interval=1e-5)
    assert status == 0, stats
    assert sys.getswitchinterval() == before
    assert seen and all(value == pytest.approx(1e-5 if GIL else before) for value in seen)


def test_torture_command_names_the_race(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert cli.main(["torture", "--impl", "racy_adapters:unlocked_advance", "--python-threads",
                     "--updates", "20", "--race-rounds", "4", "-q", "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert "FAIL S-ADV-1" in text and "race probe 'advance | advance'" in text
    assert ("evidence: GIL on" in text) == GIL
    data = json.loads(out.read_text())
    assert "S-ADV-1" in data["stats"]["races"]["errors"]
    assert cli.main(["torture", "--impl", "racy_adapters:locked", "--python-threads",
                     "--updates", "20", "--race-rounds", "2", "-q"]) == 0
    text = capsys.readouterr().out
    assert "race probes: " in text and "torture: PASS" in text
    assert cli.main(["torture", "--race-rounds", "3", "--seconds", "1"]) == 2  # C threads


# --- the contract oracle's advance rule -----------------------------------------------------

def test_judge_advances():
    assert contract.judge_advances([3, 5], 1, 5).ok
    assert contract.judge_advances([5, 3], 1, None).ok
    assert list(contract.judge_advances([3, 3], 1, 3).errors) == ["S-ADV-1"]
    assert list(contract.judge_advances([3, 5], 1, 7).errors) == ["S-ADV-1"]   # moved by 6
    wrap = (1 << 64) - 1
    assert contract.judge_advances([1, 3], wrap, 3).ok                        # across 2^64


def test_history_with_a_repeated_or_backward_goal_fails_s_adv_1():
    G = contract.GOAL_ADVANCE
    def judge(history):
        return contract.judge(history, advances=True)
    assert judge([(1, 2, 10, G, 3, 0), (3, 4, 20, G, 5, 0)]).ok
    assert list(judge([(1, 4, 10, G, 3, 0), (2, 5, 20, G, 3, 0)]).errors) == ["S-ADV-1"]
    # the second started after the first returned, yet got an earlier goal
    assert list(judge([(1, 2, 10, G, 5, 0), (3, 4, 20, G, 3, 0)]).errors) == ["S-ADV-1"]
    # overlapping: either order is possible
    assert judge([(1, 4, 10, G, 5, 0), (2, 5, 20, G, 3, 0)]).ok
    # a history of several interpreters (the C ABI torture's rounds) repeats goals
    assert contract.judge([(1, 2, 10, G, 3, 0), (3, 4, 20, G, 3, 0)]).ok


# --- the default conformance run ----------------------------------------------------------
# (--no-isolate: until an isolated run keeps the thread_safe declaration, the concurrent check
# runs for a thread-safe adapter only in process)

@pytest.fixture
def child_path(monkeypatch):
    """The torture runs in a child process: it must import racy_adapters too."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))    # tests/
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [here] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def test_default_run_credits_the_registry_facts_to_the_race_probes(tmp_path, child_path):
    out = tmp_path / "r.json"
    assert cli.main(["--impl", "racy_adapters:locked", "--no-isolate", "--examples", "5",
                     "--concurrency-rounds", "2", "-q", "--json", str(out)]) == 0
    rows = {row["id"]: row for row in json.loads(out.read_text())["facts"]}
    for fact in ("S-RES-1", "S-REG-1", "S-UNREG-1", "S-ADV-1"):
        assert rows[fact]["result"] == "pass", rows[fact]
        assert "concurrent" in rows[fact]["checked_by"]


def test_default_run_fails_a_racy_port_naming_its_fact(tmp_path, child_path):
    out = tmp_path / "r.json"
    assert cli.main(["--impl", "racy_adapters:claim_after_unlock", "--no-isolate",
                     "--examples", "5", "--concurrency-rounds", "2", "-q",
                     "--json", str(out)]) == 1
    rows = {row["id"]: row for row in json.loads(out.read_text())["facts"]}
    assert rows["S-RES-1"]["result"] == "FAIL"
