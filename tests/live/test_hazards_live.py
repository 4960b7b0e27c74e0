"""The hardware litmus through the running interpreter's own QSBR functions (hazards_live).

On a free-threaded interpreter with conformance.checks._hazard_probe built, the stale-goal
shape must be observed with the non-advancing goal, and both controls (advancing goal, seq_cst
fence before the goal load) must read zero while the two threads demonstrably raced (both
allowed interleavings seen), so that their zero means something.  Elsewhere these tests skip
with the exact reason hazards_live.unavailable_reason() gives; the Wilson interval and the
command line's "cannot run" path are checked on every interpreter.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading

import pytest
from requires import requires

from conformance.checks import hazards_live

REASON = hazards_live.unavailable_reason()
needs_probe = pytest.mark.requires("hazard_probe")

#: Iterations per shape.  Measured on this project's machine (2 vCPUs, AMD EPYC, load average
#: 11-20 from other jobs), stale-goal with the non-advancing goal, 5 million iterations per run
#: (docs/hazards-live.md): 3.13.5t 5,460 per million (95% interval 5,396-5,525; an earlier run
#: 4,438-4,555), 3.13.15t 5,719 (5,653-5,786; earlier 2,865-2,959), 3.14.7t 4,102
#: (4,046-4,158).  Take p = 1,000 per million, about a third of the lowest low end: with
#: n = 200,000 iterations the expected count is n*p = 200, and the chance of seeing none is
#: (1 - p)**n < exp(-n*p) = exp(-200) < 1e-86.  A zero here is a broken harness (or hardware
#: without store buffering), not bad luck.
ITERATIONS = 200_000


@pytest.fixture(scope="module")
def shapes() -> dict[str, dict]:
    return {hazards_live.label(s): s for s in hazards_live.live_shapes(ITERATIONS)}


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
    assert s["iterations"] == ITERATIONS and not s["control"]
    assert s["forbidden"] > 0, s
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
def test_controls_read_zero(shapes, which):
    s = shapes[which]
    assert s["control"] and s["iterations"] == ITERATIONS
    assert s["forbidden"] == 0, f"control {which} non-zero: broken harness: {s['counts']}"
    assert not s["control_failed"]
    _raced(s["counts"])
    if s["goal"] == "advancing":
        assert s["counts"]["goal_advanced"] == ITERATIONS
    assert s["counts"]["reclaimed"] == s["counts"]["poisoned"] == 0


@pytest.mark.free_threading
@needs_probe
def test_retire_before_unlink_observed(shapes):
    s = shapes["retire-before-unlink/non-advancing"]
    assert not s["control"] and s["forbidden"] > 0, s
    _raced(s["counts"])


@pytest.mark.free_threading
@needs_probe
def test_read_after_attach_with_an_acquire_load_raced(shapes):
    """C11 allows the outcome, x86 cannot show it (attach's seq_cst store is an xchg) and
    ARM64 may: no expectation on the count, only that the run raced and is consistent."""
    s = shapes["read-after-attach/acquire"]
    assert s["load"] == "acquire" and not s["control"]
    c = s["counts"]
    _raced(c)
    assert c["forbidden"] == c["reached_old"] and c["poisoned"] == c["reclaimed"]


@pytest.mark.free_threading
@needs_probe
def test_progress_reports_every_chunk(monkeypatch):
    monkeypatch.setattr(hazards_live, "CHUNK", 1000)
    seen: list[tuple[str, int, int]] = []
    out = hazards_live.live_shapes(2010, progress=lambda *a: seen.append(a))
    assert [s["iterations"] for s in out] == [2010] * len(hazards_live.SHAPES)
    labels = [hazards_live.label(shape) for shape in hazards_live.SHAPES]
    assert seen == [(lab, done, 2010) for lab in labels for done in (1000, 2000, 2010)]


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


def test_wilson_interval():
    # The 95% Wilson score intervals of the worked examples in Newcombe (1998), Statistics in
    # Medicine 17:857-872 (method 3).
    for (k, n), expected in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
                             (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}.items():
        assert hazards_live.wilson(k, n) == pytest.approx(expected, abs=1e-4)
    assert hazards_live.wilson(0, 0) == (0.0, 1.0)


def test_command_line(tmp_path):
    """The JSON the hazards command reads from ``--binary``: shapes with the per-shape fields,
    or, where the litmus cannot run, exit status 2 and the reason."""
    out = tmp_path / "h.json"
    proc = subprocess.run([sys.executable, "-m", "conformance.checks.hazards_live",
                           "--iterations", "20000", "--json", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path)
    report = json.loads(out.read_text())
    assert report["binary"] == sys.executable
    if REASON is not None:
        assert proc.returncode == 2, proc.stderr
        assert report["unavailable"] == REASON and report["shapes"] == []
        return
    assert proc.returncode == 0, proc.stdout + proc.stderr
    keys = {"name", "release", "binary", "goal", "fence", "fix", "iterations", "forbidden",
            "per_million", "interval", "control", "source"}
    assert [hazards_live.label(s) for s in report["shapes"]] == [
        hazards_live.label(shape) for shape in hazards_live.SHAPES]
    for s in report["shapes"]:
        assert keys <= set(s) and s["iterations"] == 20000 and s["source"] == "binary"
        assert s["fix"] is None and (s["forbidden"] == 0 or not s["control"])


@needs_probe
def test_hazards_command_runs_the_binary_beside_the_rebuilt_port(tmp_path):
    """`qsbr-conformance hazards --binary PYTHON`: the same shapes through the interpreter's own
    compiled code, in the same JSON (source "binary"), stale goal observed, controls zero."""

    from conformance.frontends import hazards_cli

    requires("toolchain")
    out = tmp_path / "h.json"
    status = hazards_cli.main(["--iterations", "200000", "--profile", "3.14", "--no-relacy",
                               "-q", "--binary", sys.executable, "--json", str(out)])
    assert status == 0
    shapes = [s for s in json.loads(out.read_text())["shapes"] if s.get("source") == "binary"]
    stale = [s for s in shapes if s["name"] == "stale-goal" and not s["control"]]
    assert stale and stale[0]["forbidden"] > 0
    assert all(s["forbidden"] == 0 for s in shapes if s["control"])
