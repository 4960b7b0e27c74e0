"""The concurrency torture (S-SAFE-1, S-SAFE-2): clean on the port, and it catches bugs."""

import json
from pathlib import Path

import pytest

import cython_bridge
from conformance.checks.pytorture import python_torture
from conformance.frontends import cli
from conformance.reference import reference_port

REFERENCE_C = Path(__file__).resolve().parents[2] / "reference_c"

#: Runs are bounded by updates, not by time: on a busy machine a run takes longer, not less.
UPDATES = 1_000_000
#: With seed 7 the churner's first batch (its sizes come from the seed) holds 14 thread states:
#: with the 3 readers, 2 writers and the idle thread that is 20 at once, so the array grows
#: from 8 slots to 32 as soon as the churner has finished one batch.
FIRST_BATCH = 14
#: Runs of UPDATES tried until the churner was scheduled at all (a count, not a clock).
TRIES = 5


@pytest.mark.parametrize("profile", ["3.13", "3.14"])
def test_c_torture_is_clean_and_makes_progress(profile):
    """Clean, reading and freeing on every run; and the churn grows the array while the
    readers read (S-RES-1's growth path under concurrency).  Which batch sizes the churner
    makes is fixed by the seed; only how many batches it finishes depends on the scheduler,
    so the runs are repeated (at most TRIES, each clean) until it finished one."""
    for _ in range(TRIES):
        status, stats = cython_bridge.extension(profile).torture(
            readers=3, writers=2, churners=1, seconds=0, max_updates=UPDATES, seed=7)
        assert stats["errors"] == {"poisoned": 0, "bad_magic": 0, "too_old": 0, "stall": 0}
        assert status == 0
        assert stats["updates"] >= UPDATES and stats["frees"] > 0 and stats["reads"] > 0
        if stats["churn_cycles"]:
            break
    assert stats["churn_cycles"] >= FIRST_BATCH, stats
    assert stats["array_size"] >= 32, stats


def test_torture_reports_progress():
    seen = []
    status, stats = cython_bridge.extension("3.13").torture(
        seconds=0, max_updates=UPDATES, progress=seen.append, progress_interval=0.001)
    assert status == 0
    # The monitor looks every 5 ms of the run; 1,000,000 updates take far longer than that
    # on any machine (each allocates, exchanges and frees an object), and on a busy one the
    # run takes longer, which only adds reports.
    assert len(seen) >= 1 and all("updates" in s for s in seen)
    assert seen[-1]["updates"] <= stats["updates"]


def test_python_torture_progress_counts_reads():
    seen = []
    status, stats = python_torture(reference_port("3.13"), readers=2,
                                   writers=1, seconds=0, updates=5000, progress=seen.append,
                                   progress_interval=0.001)
    assert status == 0 and seen
    assert max(s["reads"] for s in seen) > 0, seen      # not reads=0 on every line


def test_torture_rejects_bad_configuration():
    with pytest.raises(ValueError):
        cython_bridge.extension("3.13").torture(writers=0)


@pytest.mark.parametrize("profile", ["3.13", "3.14"])
def test_python_threads_torture(profile):
    status, stats = python_torture(reference_port(profile), readers=3,
                                   writers=2, seconds=0, updates=2000)
    assert stats["harness_errors"] == []
    assert stats["errors_reclaimed"] == 0
    assert status == 0 and stats["frees"] > 0 and stats["updates"] >= 2000


def test_torture_command(tmp_path, capsys):
    out = tmp_path / "torture.json"
    assert cli.main(["torture", "--seconds", "0", "--updates", str(UPDATES), "-q",
                     "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "torture: PASS" in text and "grace-period latency" in text
    data = json.loads(out.read_text())
    assert data["status"] == 0 and data["stats"]["frees"] > 0
    assert data["stats"]["updates"] >= UPDATES
    assert cli.main(["torture", "--writers", "0"]) == 2
