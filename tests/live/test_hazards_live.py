"""The hardware litmus through the running interpreter's own QSBR functions (hazards_live).

On a free-threaded interpreter with conformance.checks._hazard_probe built, under the decide
rule (conformance/checks/decide.py, the same as the port's harness): the stale-goal shape with
the non-advancing goal is observed at least 30 times within the budget; the advancing goal, the
seq_cst fence before the goal load and the seq_cst first load after attach are never above it
(and count 0 on x86-64, a hardware guarantee), and conclusively below it whenever the
reference's own rate lets that fit in the budget; each of them demonstrably raced (both allowed
interleavings seen), so that their zero means something.  No rate measured on any machine is
assumed.  Elsewhere these tests skip (or fail under CI) with the exact reason
hazards_live.unavailable_reason() gives; the command line's "cannot run" path is checked on
every interpreter.
"""

from __future__ import annotations

import gc
import json
import platform
import subprocess
import sys
import threading

import pytest
from requires import requires

from conformance.checks import decide, hazards_live

REASON = hazards_live.unavailable_reason()
needs_probe = pytest.mark.requires("hazard_probe")
X86 = platform.machine().lower() in ("x86_64", "amd64")
BUDGET = decide.Budget(minimum=20_000)


@pytest.fixture(scope="module")
def shapes() -> dict[str, dict]:
    return {hazards_live.label(s): s for s in hazards_live.live_shapes(BUDGET, seed=3)}


def _raced(counts: dict) -> None:
    """Both interleavings a sequentially consistent run allows were seen: the reader loaded
    the old pointer with the goal unreached, and the new one with the goal reached."""
    assert counts["unreached_old"] > 0, counts
    assert counts["reached_new"] > 0, counts


@pytest.mark.free_threading
@needs_probe
def test_stale_goal_observed_with_the_non_advancing_goal(shapes):
    s = shapes["stale-goal/non-advancing"]
    assert s["source"] == "binary" and s["binary"] == sys.executable
    assert s["goal_function"] in ("_Py_qsbr_shared_next", "_Py_qsbr_deferred_advance")
    assert s["role"] == "reference" and s["verdict"] == "observed", s
    assert s["forbidden"] >= BUDGET.observations
    assert BUDGET.minimum <= s["iterations"] <= BUDGET.maximum
    assert [c["offsets"] for c in s["calibration"]] == list(BUDGET.ranges)
    assert sum(b["iterations"] for b in s["bands"]) == s["iterations"]
    c = s["counts"]
    # The forbidden outcome is the reached-and-old cell of the outcome table, and in this shape
    # the writer's goal load always read wr_seq from before the reader's advance.
    assert c["forbidden"] == c["reached_old"] == c["stale"]
    # What the barriers order: every reclamation the poll allowed is seen by the reader.
    assert c["poisoned"] == c["reclaimed"] <= c["forbidden"]
    low, high = s["interval"]
    assert 0 < low <= s["per_million"] <= high


@pytest.mark.free_threading
@needs_probe
@pytest.mark.parametrize("which", ["stale-goal/advancing", "stale-goal/non-advancing+fence",
                                   "read-after-attach/seq_cst"])
def test_ordered_rows_are_below_the_unfixed_rate(shapes, which):
    s = shapes[which]
    ref = shapes["stale-goal/non-advancing"]
    assert s["role"] == "below" and s["reference"] == "stale-goal/non-advancing"
    assert s["offsets"] == ref["offsets"]
    assert s["verdict"] != "not below" and not s["wrong"], s
    if X86:
        assert s["forbidden"] == 0, f"{which} non-zero on x86-64: {s['counts']}"
    limit = ref["interval"][0] / BUDGET.margin
    if s["forbidden"] == 0 and 3.85e6 / BUDGET.maximum < limit:
        assert s["verdict"] == "conclusive", (s, ref)
    _raced(s["counts"])
    if s["goal"] == "advancing":
        assert s["counts"]["goal_advanced"] == s["iterations"]
    assert s["counts"]["reclaimed"] == s["counts"]["poisoned"] == 0 or not X86


@pytest.mark.free_threading
@needs_probe
def test_retire_before_unlink_observed(shapes):
    s = shapes["retire-before-unlink/non-advancing"]
    assert s["role"] == "expect" and s["verdict"] == "observed" and s["forbidden"] > 0, s
    _raced(s["counts"])


@pytest.mark.free_threading
@needs_probe
def test_read_after_attach_with_an_acquire_load_raced(shapes):
    """C11 allows the outcome, x86 cannot show it (attach's seq_cst store is an xchg) and
    ARM64 may: on x86-64 the row says it is unchecked here (never a pass); the run raced and
    is consistent."""
    s = shapes["read-after-attach/acquire"]
    assert s["load"] == "acquire" and s["role"] == "below"
    if X86:
        assert "x86-64 cannot show this shape" in s["unchecked_here"]
        assert s["wrong"] is False
    c = s["counts"]
    _raced(c)
    assert c["forbidden"] == c["reached_old"] and c["poisoned"] == c["reclaimed"]


@pytest.mark.free_threading
@needs_probe
def test_progress_reports_every_chunk():
    budget = decide.Budget(minimum=2000, maximum=2000, chunk=1000, calibration=1000)
    seen: list[tuple[str, int, int]] = []
    out = hazards_live.live_shapes(budget, progress=lambda *a: seen.append(a))
    assert [s["iterations"] for s in out] == [2000] * len(hazards_live.SHAPES)
    labels = [hazards_live.label(shape) for shape in hazards_live.SHAPES]
    calibration = len(budget.ranges)        # the reference's sweep runs first
    expected = [(labels[0], 1000 * i, 2000) for i in range(1, calibration + 3)]
    expected += [(lab, done, 2000) for lab in labels[1:] for done in (1000, 2000)]
    assert seen == expected


@pytest.mark.free_threading
@needs_probe
def test_stop_the_world_requests_are_honoured():
    """A thread collecting garbage in a loop stops the world again and again; the litmus
    threads must park (detach, re-attach) between iterations instead of deadlocking it.  Stops
    on counts: as soon as a run reports a park, or after 3,000 runs (a failure)."""
    probe = hazards_live._probe()
    where, cpus = hazards_live.addresses(), hazards_live.cpus()
    stop, collections = threading.Event(), [0]

    def collector() -> None:
        while not stop.is_set():
            gc.collect()
            collections[0] += 1

    thread = threading.Thread(target=collector)
    thread.start()
    parked = runs = 0
    try:
        while not parked and runs < 3000:
            counts = probe.run("stale-goal", "non-advancing", False, 2_000, cpus,
                               where["advance"], where["poll"], where["batch"])
            assert counts["iterations"] == 2_000
            parked += counts["parked_writer"] + counts["parked_reader"]
            runs += 1
    finally:
        stop.set()
        thread.join()
    assert parked > 0, f"no park in {runs} runs ({collections[0]} collections)"


def test_command_line(tmp_path):
    """The JSON the hazards command reads from ``--binary``: shapes with the per-shape fields,
    or, where the litmus cannot run, exit status 2 and the reason."""
    out = tmp_path / "h.json"
    proc = subprocess.run([sys.executable, "-m", "conformance.checks.hazards_live",
                           "--iterations", "20000", "--max-iterations", "20000",
                           "--json", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path)
    report = json.loads(out.read_text())
    assert report["binary"] == sys.executable
    if REASON is not None:
        assert proc.returncode == 2, proc.stderr
        assert report["unavailable"] == REASON and report["shapes"] == []
        return
    assert proc.returncode == 0, proc.stdout + proc.stderr
    keys = {"name", "release", "binary", "goal", "fence", "fix", "iterations", "forbidden",
            "per_million", "interval", "control", "source", "role", "verdict", "offsets",
            "bands", "wrong"}
    assert [hazards_live.label(s) for s in report["shapes"]] == [
        hazards_live.label(shape) for shape in hazards_live.SHAPES]
    for s in report["shapes"]:
        assert keys <= set(s) and s["iterations"] == 20000 and s["source"] == "binary"
        assert s["fix"] is None and s["wrong"] is False
    assert "decide rule" in report["decide_rule"]


@needs_probe
def test_hazards_command_runs_the_binary_beside_the_rebuilt_port(tmp_path):
    """`qsbr-conformance hazards --binary PYTHON`: the same shapes through the interpreter's own
    compiled code, in the same JSON (source "binary"), stale goal observed, controls zero."""

    from conformance.frontends import hazards_cli

    requires("toolchain")
    out = tmp_path / "h.json"
    status = hazards_cli.main(["--iterations", "20000", "--profile", "3.14", "--no-relacy",
                               "-q", "--binary", sys.executable, "--json", str(out)])
    data = json.loads(out.read_text())
    assert status == 0, (data["errors"], data["wrong"])
    shapes = [s for s in data["shapes"] if s.get("source") == "binary"]
    stale = [s for s in shapes if s["name"] == "stale-goal" and s["role"] == "reference"]
    assert stale and stale[0]["verdict"] == "observed"
    assert not any(s["wrong"] for s in data["shapes"])
