"""The concurrency torture (S-SAFE-1, S-SAFE-2): clean on the port, and it catches bugs."""

import json
from pathlib import Path

import pytest

import cython_bridge
from conformance.checks.pytorture import python_torture
from conformance.frontends import cli
from conformance.reference import reference_port

REFERENCE_C = Path(__file__).resolve().parents[2] / "reference_c"


@pytest.mark.parametrize("profile", ["3.13", "3.14"])
def test_c_torture_is_clean_and_makes_progress(profile):
    # Bounded by updates, not by time: on a busy machine the run takes longer, not less.
    status, stats = cython_bridge.extension(profile).torture(
        readers=3, writers=2, churners=1, seconds=0, max_updates=1_000_000, seed=7)
    assert stats["errors"] == {"poisoned": 0, "bad_magic": 0, "too_old": 0, "stall": 0}
    assert status == 0
    assert stats["frees"] > 0 and stats["reads"] > 0
    # Churn grew the array (more than 8 thread states at once) whenever it ran a few batches
    # of 1..48 thread states; a machine too busy to schedule it proves nothing either way.
    if stats["churn_cycles"] >= 200:
        assert stats["array_size"] >= 16, stats


def test_torture_reports_progress():
    seen = []
    status, stats = cython_bridge.extension("3.13").torture(
        seconds=2.0, progress=seen.append, progress_interval=0.1)
    assert status == 0
    # The monitor reports every 0.1 s of wall time it is scheduled in: at least once in 2 s.
    assert len(seen) >= 1 and all("updates" in s for s in seen)
    assert seen[-1]["updates"] <= stats["updates"]


def test_python_torture_progress_counts_reads():
    seen = []
    status, stats = python_torture(reference_port("3.13"), readers=2,
                                   writers=1, seconds=2.0, progress=seen.append,
                                   progress_interval=0.1)
    assert status == 0 and seen
    assert max(s["reads"] for s in seen) > 0, seen      # not reads=0 on every line


def test_torture_rejects_bad_configuration():
    with pytest.raises(ValueError):
        cython_bridge.extension("3.13").torture(writers=0)


@pytest.mark.parametrize("profile", ["3.13", "3.14"])
def test_python_threads_torture(profile):
    status, stats = python_torture(reference_port(profile), readers=3,
                                   writers=2, seconds=1.0)
    assert stats["harness_errors"] == []
    assert stats["errors_reclaimed"] == 0
    assert status == 0 and stats["frees"] > 0


def test_torture_command(tmp_path, capsys):
    out = tmp_path / "torture.json"
    assert cli.main(["torture", "--seconds", "1", "-q", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "torture: PASS" in text and "grace-period latency" in text
    data = json.loads(out.read_text())
    assert data["status"] == 0 and data["stats"]["frees"] > 0
    assert cli.main(["torture", "--writers", "0"]) == 2
