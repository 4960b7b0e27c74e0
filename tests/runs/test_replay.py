"""One-case replay (qsbr-conformance replay) and the structured diffs failures carry."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import watched

from conformance.checks import exhaustive, replay, statediff
from conformance.checks.differential import ConformanceFailure, make_machine
from conformance.checks.runner import run_conformance
from conformance.frontends import cli, replay_cli, report
from conformance.model.ledger import FactLedger

TESTS = Path(__file__).resolve().parents[1]
#: Killed by the coverage scenario, the exploration and the random phase (S-FREE-3).
MUTANT = "mutant_adapters:fifo_freelist"
REFERENCE = "conformance.reference:reference_port"


@pytest.fixture(scope="module")
def default_report(tmp_path_factory) -> tuple[Path, dict]:
    """A default CLI run (no options but --impl, --json and a fixed seed) of a wrong adapter."""
    path = tmp_path_factory.mktemp("replay") / "report.json"
    assert cli.main(["--impl", MUTANT, "--seed", "1", "--json", str(path), "-q"]) == 1
    return path, json.loads(path.read_text())


def _index(data: dict, check: str) -> int:
    return next(k for k, f in enumerate(data["failures"]) if f["check"] == check)


@pytest.mark.parametrize("check", ["coverage scenario", "exhaustive", "differential"])
def test_replay_reproduces_each_phase_failure(default_report, check, capsys):
    path, data = default_report
    k = _index(data, check)
    started = time.perf_counter()
    assert replay_cli.main([str(path), "--failure", str(k)]) == 1
    seconds = time.perf_counter() - started
    out = capsys.readouterr().out
    assert "STILL FAILS the same way" in out, out
    recorded = data["failures"][k]
    assert f"facts {', '.join(recorded['facts'])}" in out
    assert f"step {len(recorded['step_records'])} of {len(recorded['step_records'])}" in out
    # The figure for the closing notes (isolated child included); not asserted.
    print(f"replay of the {check} failure ({len(recorded['step_records'])} steps): "
          f"{seconds:.2f} s", file=sys.stderr)


def test_replay_on_the_reference_port_no_longer_fails(default_report, capsys):
    path, data = default_report
    for check in ("coverage scenario", "differential"):
        assert replay_cli.main([str(path), "--failure", str(_index(data, check)),
                                "--impl", REFERENCE]) == 0
        assert "NO LONGER FAILS" in capsys.readouterr().out


def test_replay_without_isolation_and_default_failure(default_report, capsys):
    path, data = default_report
    assert replay_cli.main([str(path), "--no-isolate"]) == 1       # failure 0 by default
    out = capsys.readouterr().out
    assert f"replay of failure 0 ({data['failures'][0]['check']}" in out
    assert "STILL FAILS the same way" in out


def test_emitted_test_fails_on_the_buggy_port_and_passes_on_the_reference(
        default_report, tmp_path, capsys):
    path, data = default_report
    k = _index(data, "differential")
    buggy = tmp_path / "test_qsbr_buggy.py"
    fixed = tmp_path / "test_qsbr_fixed.py"
    assert replay_cli.main([str(path), "--failure", str(k), "--emit-test", str(buggy)]) == 1
    assert replay_cli.main([str(path), "--failure", str(k), "--impl", REFERENCE,
                            "--emit-test", str(fixed)]) == 0
    capsys.readouterr()
    source = buggy.read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import os", "from mutant_adapters import fifo_freelist",
                       "from conformance.checks.replay import replay_steps",
                       "from conformance.model.adapter import load_implementation"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))
    env.pop("QSBR_REPLAY_IMPL", None)

    def pytest_run(test: Path, **extra: str):
        return watched.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(test)], cwd=tmp_path,
                           env=dict(env, **extra))

    failing = pytest_run(buggy)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "S-FREE-3" in failing.stdout and "1 failed" in failing.stdout
    passing = pytest_run(fixed)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "1 passed" in passing.stdout
    # The buggy port's test, pointed at the reference port.
    other = pytest_run(buggy, QSBR_REPLAY_IMPL=REFERENCE)
    assert other.returncode == 0, other.stdout + other.stderr


def test_records_that_end_elsewhere_are_not_replayed(default_report, tmp_path, capsys):
    """A failure whose records do not end at the call it names (records of another machine)
    is refused, not replayed; so is one without any step sequence."""
    path, data = default_report
    k = _index(data, "differential")
    failure = data["failures"][k]
    named = failure["step_records"][-1]["text"].split(" ")[0]
    failure["message"] = failure["message"].replace(named, "advance()", 1)
    torture = {"check": "concurrent torture", "facts": ["S-SAFE-2"], "message": "m",
               "steps": [], "step_records": []}
    data = dict(data, failures=[failure, torture])
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    assert replay_cli.main([str(broken), "--failure", "0"]) == 2
    assert "not its own" in capsys.readouterr().err
    assert replay_cli.main([str(broken), "--failure", "1"]) == 2
    assert "no step sequence" in capsys.readouterr().err
    assert replay_cli.main([str(broken), "--failure", "5"]) == 2
    assert replay_cli.main([str(tmp_path / "missing.json")]) == 2


def test_comparisons_and_wrap_failures(tmp_path, capsys):
    """A comparison failure replays as its one call.  The coverage scenario's wrap part runs
    on a second machine: its failure replays the same way if its records are its own, and is
    refused otherwise, never replayed as another machine's sequence."""
    import mutant_adapters

    result = run_conformance(mutant_adapters.plain_compare("3.13"), examples=10, seed=3,
                             explore_seconds=0)
    result.options = {"impl": "mutant_adapters:plain_compare"}
    path = tmp_path / "plain.json"
    report.write_json(result, str(path))
    data = json.loads(path.read_text())
    k = _index(data, "comparisons")
    assert data["failures"][k]["diff"] == [
        {"field": "result", "observed": not data["failures"][k]["diff"][0]["expected"],
         "expected": data["failures"][k]["diff"][0]["expected"]}]
    assert replay_cli.main([str(path), "--failure", str(k)]) == 1
    assert "STILL FAILS the same way" in capsys.readouterr().out
    wrap = _index(data, "coverage scenario")
    assert "poll(t1, 1)" in data["failures"][wrap]["message"]
    # The wrap part's failure carries its own sequence (from the start near the wrap): it
    # replays, ending at the call its message names.
    assert data["failures"][wrap]["step_records"][-1]["text"] == "poll(t1, 1) -> True"
    assert replay_cli.main([str(path), "--failure", str(wrap)]) == 1
    assert "STILL FAILS the same way" in capsys.readouterr().out
    # A report whose records for it are another sequence's (what the wrap part's failure
    # carried when it ran on the first machine) is refused, never replayed as that sequence.
    data["failures"][wrap]["step_records"] = data["failures"][k]["step_records"]
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data))
    assert replay_cli.main([str(tampered), "--failure", str(wrap)]) == 2
    assert "not its own" in capsys.readouterr().err


# -- structured diffs ----------------------------------------------------------------------

def test_json_failures_carry_per_field_diffs(default_report):
    _, data = default_report
    for failure in data["failures"]:
        if failure["check"] in ("coverage scenario", "exhaustive", "differential"):
            assert failure["diff"], failure
            fields = {d["field"] for d in failure["diff"]}
            assert fields == {"freelist"}, failure["diff"]
            entry = failure["diff"][0]
            assert sorted(entry["observed"]) == sorted(entry["expected"])
            assert entry["observed"] != entry["expected"]
            assert f"got {tuple(entry['observed'])}" in failure["message"]


def test_state_diff_names_slot_thread_and_outcome_fields():
    import mutant_adapters

    machine = make_machine(mutant_adapters.advance_returns_old("3.13"), FactLedger())()
    with pytest.raises(ConformanceFailure) as caught:
        machine.step("advance")
    assert caught.value.diff == [{"field": "result", "observed": 1, "expected": 3}]

    from conformance.model.adapter import SlotView, Snapshot
    want = Snapshot(5, 3, 2, (SlotView(5, True, 0, (("deferrals", 1),)),
                              SlotView(0, False, None)), (1,), {0: 0, 1: None})
    got = Snapshot(5, 1, 2, (SlotView(3, True, 1, (("deferrals", 0),)),
                             SlotView(0, False, None)), (), {0: None})
    assert statediff.snapshot_diff(got, want) == [
        {"field": "rd_seq", "observed": 1, "expected": 3},
        {"field": "slots[0].seq", "observed": 3, "expected": 5},
        {"field": "slots[0].owner", "observed": "t1", "expected": "t0"},
        {"field": "slots[0].bookkeeping.deferrals", "observed": 0, "expected": 1},
        {"field": "freelist", "observed": [], "expected": [1]},
        {"field": "threads[t0]", "observed": None, "expected": 0},
        {"field": "threads[t1]", "observed": statediff.ABSENT, "expected": None}]
    assert statediff.outcome_diff("AlreadyAttachedError", None, None, None) == [
        {"field": "error", "observed": "AlreadyAttachedError", "expected": None}]
    assert statediff.render([{"field": "x", "observed": 1, "expected": 2}] * 30, 2)[-1] \
        .startswith("... 28 more")


def test_exhaustive_failure_carries_a_diff():
    import mutant_adapters

    found = exhaustive.explore(mutant_adapters.fifo_freelist("3.13"), depth=4,
                               seconds=None).failure      # bounded by the depth alone
    assert found is not None and found.diff
    assert {d["field"] for d in found.diff} == {"freelist"}


def test_text_and_markdown_show_the_diff(default_report):
    import mutant_adapters

    result = run_conformance(mutant_adapters.fifo_freelist("3.13"), examples=5, seed=1,
                             explore_seconds=0)
    text, markdown = report.to_text(result), report.to_markdown(result)
    assert "differences (observed, expected):" in text
    assert "    freelist: observed [" in text
    assert "| `freelist` | `[" in markdown


def test_replay_steps_api_reports_where_it_failed():
    import mutant_adapters

    steps = [{"operation": "new_thread_state", "result": 0},
             {"operation": "reserve", "result": 7},
             {"operation": "register", "thread": 0, "args": [7]},
             {"operation": "unregister", "thread": 0}]
    buggy = replay.replay_steps(mutant_adapters.fifo_freelist("3.13"), steps)
    assert not buggy.passed and buggy.failed_at == 3 and buggy.facts == ("S-FREE-3",)
    assert "unregister(t0)" in buggy.explanation()
    from conformance.model.oracle import Oracle
    assert replay.replay_steps(Oracle("3.13"), steps).passed


def test_a_layout_failure_replays_as_the_layout_check(tmp_path, capsys):
    """No steps: the layout check runs again (here on the reference port, whose layout is
    CPython's: the recorded failure no longer happens)."""
    path = tmp_path / "layout.json"
    path.write_text(json.dumps({
        "options": {"impl": REFERENCE, "profile": "3.13"}, "profile": "3.13",
        "failures": [{"check": "layout", "facts": ["S-SLOT-2"], "message": "layout differs",
                      "steps": [], "step_records": []}]}))
    assert replay_cli.main([str(path)]) == 0
    assert "NO LONGER FAILS: the layout matches" in capsys.readouterr().out
    assert replay_cli.main([str(path), "--emit-test", str(tmp_path / "t.py")]) == 2
