"""The Python-threads torture of thread-safe Python adapters (conformance.checks.pytorture):
its grace-period probes fix the interleaving, so each planted bug is named on every seed and
under any load; and the statuses of a run that had no concurrent check say so.
"""

from __future__ import annotations

import json

import pytest

from conformance.checks.pytorture import python_torture
from conformance.frontends import cli
from conformance.reference import reference_port


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("mutant, fact", [("early_poll", "S-SAFE-1"),
                                          ("detached_blocks", "S-SAFE-2")])
def test_python_threads_torture_names_a_grace_period_bug(mutant, fact, seed):
    # The grace-period probes fix the interleaving by handing each reader its next operation,
    # so the catch does not depend on the scheduler: every seed, every load.
    import mutant_adapters
    # (race_rounds=0: these are the grace-period probes' own; the race probes, judged against
    # the model, would name the sequential difference too)
    status, stats = python_torture(getattr(mutant_adapters, mutant)("3.13"), readers=3,
                                   writers=2, seconds=0, updates=20, seed=seed, race_rounds=0)
    assert status == 1
    assert stats["probe_rounds"] == 3 + 8
    assert list(stats["contract"]["errors"]) == [fact], stats


def test_python_threads_torture_checks_the_resource_hook():
    # 3 readers, 2 writers and the prober: 6 thread states outgrow nothing, so use more
    # readers; the adapter's live_allocations() counts each array its growth did not free.
    import mutant_adapters
    status, stats = python_torture(mutant_adapters.leaky_growth("3.13"), readers=9, writers=2,
                                   seconds=0, updates=20, seed=1, race_rounds=0)
    assert status == 1
    assert stats["resources"] and "S-RES-1" in stats["resources"], stats
    assert stats["contract"]["errors"] == {}


def test_python_threads_probes_pass_on_the_reference_port():
    status, stats = python_torture(reference_port("3.14"), readers=4, writers=1,
                                   seconds=0, updates=20, seed=4)
    assert status == 0, stats
    assert stats["probe_rounds"] == 4 + 8 and stats["probe_polls"] >= 12
    assert stats["contract"]["errors"] == {}
    # every probe round judged at least one true poll, and the rounds with holders false ones
    assert stats["contract"]["safety_checked"] >= 12
    assert stats["contract"]["liveness_checked"] >= 4


def test_python_threads_torture_needs_a_thread_safe_adapter(capsys):
    assert cli.main(["torture", "--impl", "conformance.oracle:oracle", "--python-threads",
                     "--updates", "10"]) == 2
    assert "thread_safe" in capsys.readouterr().err


def test_sequential_only_run_says_what_it_did_not_check(tmp_path, seed):
    out = tmp_path / "r.json"
    assert cli.main(["--impl", "conformance.oracle:oracle", "--examples", "5", "-q",
                     "--seed", str(seed),
                     "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = {row["id"]: row for row in data["facts"]}
    assert all("checked_by" in row for row in data["facts"])
    assert rows["S-ATTACH-1"]["result"] == "pass (sequential only)"
    # (a free-threaded interpreter's live phase confirms it too; no concurrent check ran)
    assert rows["S-ATTACH-1"]["checked_by"] in (["sequential"], ["sequential", "live"])
    assert rows["S-SEQ-3"]["result"] == "pass"
    assert "NOT checked under concurrency" in data["verdict"]
    assert "S-SAFE-1" in data["verdict"] and "thread_safe" in data["verdict"]
