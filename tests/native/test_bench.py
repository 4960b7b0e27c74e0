"""`qsbr-conformance bench` and reference_c/bench: they run, and their JSON has the right shape
and sane numbers.  Tiny round counts; no timing limits (the figures are the bench's business)."""

import json
import math

import pytest

from conformance import sources
from conformance.bench import native, plot, suite
from conformance.checks import mutants
from conformance.frontends import bench_cli, cli

needs_toolchain = pytest.mark.requires("toolchain")

TINY = ["-r", "2", "-t", "0.05", "-R", "2", "-T", "1", "-d", "1", "-n", "600", "-C", "2"]
SINGLE = {"quiescent_state", "attach_detach", "advance", "poll_no_scan", "grace_period_1thread",
          "deferred_free", *(f"poll_scan_{n}" for n in (8, 16, 64, 256, 1024, 4096))}
NO_LIMIT = {"grace_period_1thread", "deferred_free"}     # no hardware-limit variant


def _sane(stat):
    assert set(stat) == {"best", "median"}
    for value in stat.values():
        assert math.isfinite(value) and value > 0, stat


def _check_native(data, profile):
    assert data["profile"] == profile and data["clock"] == "CLOCK_MONOTONIC"
    names = {op["name"] for op in data["operations"]}
    assert names == SINGLE | {"deferred_advance" if profile == "3.13" else "shared_next"}
    for op in data["operations"]:
        _sane(op["port"])
        if op["name"] not in NO_LIMIT:
            _sane(op["limit"])
            _sane(op["ratios"]["port/limit"])
            assert op["ratios"]["port/limit"]["best"] == pytest.approx(
                op["port"]["best"] / op["limit"]["best"], rel=1e-3)
        if op["urcu"] is not None:
            _sane(op["urcu"])
            _sane(op["ratios"]["port/urcu"])
        else:
            assert op["ratios"]["port/urcu"] is None
        assert op["iterations"] > 0
        assert op["slots"] == (int(op["name"].rsplit("_", 1)[1])
                               if op["name"].startswith("poll_scan_") else 0)
    has_urcu = data["urcu"] is not None
    assert has_urcu == all(data_op["urcu"] is not None for data_op in data["operations"]
                           if data_op["name"] in ("quiescent_state", "attach_detach",
                                                  "grace_period_1thread"))
    rows = data["threads"]["rows"]
    assert [row["readers"] for row in rows] == [1, 2]
    for row in rows:
        for variant in ("port", "urcu") if has_urcu else ("port",):
            _sane(row[variant]["gp_latency_ns"])
            _sane(row[variant]["reclaim_per_s"])
            assert row[variant]["grace_periods"] >= 1
        if not has_urcu:
            assert row["urcu"] is None
    _check_contention(data, profile, [1, 2])


def _check_contention(data, profile, readers):
    contention = data["contention"]
    assert contention["goal"] == ("_Py_qsbr_deferred_advance" if profile == "3.13"
                                  else "_Py_qsbr_shared_next")
    assert [row["readers"] for row in contention["rows"]] == readers
    for row in contention["rows"]:
        _sane(row["goal_ns"])
        _sane(row["reader_qs_ns"])
        _sane(row["overlap"])
        assert row["overlap"]["best"] <= 1 + row["readers"] + 0.5   # CPU time over wall time
        assert row["goals"] >= 1024     # the writer takes goals in batches of 1024


_built = {}


def _binary(tmp_path_factory, profile):
    """The bench for one profile, built once per test process."""
    if profile not in _built:
        build = tmp_path_factory.mktemp(f"bench{profile}")
        _built[profile] = native.build(sources.workspace(), profile, build)[0]
    return _built[profile]


@needs_toolchain
@pytest.mark.parametrize("profile", ["3.13", "3.14"])
def test_c_bench_json(tmp_path_factory, profile):
    data = native.run(_binary(tmp_path_factory, profile), args=TINY)
    _check_native(data, profile)


@needs_toolchain
def test_c_bench_really_scans(tmp_path):
    """The bench checks its own premises: with a poll that never scans, the 'poll with a scan'
    loop sees a poll succeed that must fail, and the bench stops instead of timing it."""
    source = mutants.patched_source(sources.workspace(), "POLL_NO_SCAN", tmp_path / "m")
    binary, _ = native.build(source, "3.13", tmp_path / "build")
    with pytest.raises(native.BenchError):
        native.run(binary, args=TINY)


@needs_toolchain
def test_c_bench_usage_errors(tmp_path_factory):
    binary = _binary(tmp_path_factory, "3.14")
    for bad in (["-r", "0"], ["-R", "x"], ["extra"]):
        with pytest.raises(native.BenchError):
            native.run(binary, args=bad)


def test_ratios():
    data = {"operations": [{"port": {"best": 3.0, "median": 4.0},
                            "limit": {"best": 1.5, "median": 1.0}, "urcu": None}],
            "threads": {"rows": [{"readers": 1,
                                  "port": {"gp_latency_ns": {"best": 10.0, "median": 20.0},
                                           "reclaim_per_s": {"best": 5.0, "median": 4.0}},
                                  "urcu": {"gp_latency_ns": {"best": 40.0, "median": 40.0},
                                           "reclaim_per_s": {"best": 10.0, "median": 2.0}}}]}}
    native.add_ratios(data)
    assert data["operations"][0]["ratios"] == {"port/limit": {"best": 2.0, "median": 4.0},
                                               "port/urcu": None}
    assert data["threads"]["rows"][0]["ratios"] == {
        "gp_latency port/urcu": {"best": 0.25, "median": 0.5},
        "reclaim_per_s port/urcu": {"best": 0.5, "median": 2.0}}


def test_mutant_kill_times(tmp_path):
    rows = [{"mutant": "A", "killed": True, "by": "conformance", "seconds": 2.0},
            {"mutant": "B", "killed": True, "by": "torture", "seconds": 9.5},
            {"mutant": "C", "killed": True, "by": "replay", "seconds": 4.0},
            {"mutant": "D", "killed": False, "by": "", "seconds": 30.0}]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(rows))
    got = suite.mutant_kill_times(path)
    assert (got["killed"], got["mutants"], got["not_killed"]) == (3, 4, ["D"])
    assert (got["median_seconds"], got["worst_seconds"], got["worst_mutant"]) == (4.0, 9.5, "B")
    path.write_text(json.dumps({"not": "a mutants run"}))
    with pytest.raises(ValueError):
        suite.mutant_kill_times(path)


def test_suite_modes():
    impl_spec = suite.DEFAULT_IMPL
    from conformance.model.adapter import load_implementation
    impl = load_implementation(impl_spec, profile="3.14")
    scenario = suite.scenario_mode(impl, 1)
    random = suite.random_mode(impl, 2, steps=10)
    for mode in (scenario, random):
        assert mode["steps"] > 0 and mode["checks"] > 0
        assert math.isfinite(mode["steps_per_second"]) and mode["steps_per_second"] > 0
    assert random["examples"] == 2
    # A time-bounded measurement, but what it covers is not: the first levels are always
    # explored whole, however slow the machine (conformance.checks.exhaustive.explore).
    from conformance.checks.exhaustive import DEFAULT_MIN_DEPTH
    exhaustive = suite.exhaustive_mode(impl, 0.5)
    assert exhaustive["available"] is True, exhaustive
    assert exhaustive["depth_complete"] >= DEFAULT_MIN_DEPTH, exhaustive
    assert exhaustive["steps"] > 0 and exhaustive["steps_per_second"] > 0
    assert exhaustive["states"] > 0 and exhaustive["transitions"] > exhaustive["states"]
    verdict = suite.time_to_verdict(impl_spec, "3.13", 2, steps=10)
    assert verdict["conforms"] is True and verdict["seconds"] > 0
    assert verdict["phases"][:3] == ["layout", "comparisons", "scenario"]


def test_usage_errors(tmp_path, capsys):
    assert cli.main(["bench", "--rounds", "0"]) == 2
    assert cli.main(["bench", "--readers", "-1"]) == 2
    assert cli.main(["bench", "--contention", "65"]) == 2
    assert cli.main(["bench", "--mutants-json", str(tmp_path / "missing.json")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert cli.main(["bench", "--no-native", "--quick", "--mutants-json", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "--rounds" in err and "no such file" in err and "not the JSON" in err


@needs_toolchain
def test_bench_command(tmp_path, capsys, monkeypatch):
    """The whole subcommand, one profile, tiny counts: table, JSON and plot."""
    monkeypatch.setattr(native, "run", lambda binary, quick=False, args=None, _run=native.run:
                        _run(binary, args=TINY))
    mutants_json = tmp_path / "m.json"
    mutants_json.write_text(json.dumps([{"mutant": "A", "killed": True, "seconds": 3.5}]))
    out = tmp_path / "b.json"
    status = cli.main(["bench", "--quick", "--profile", "3.14", "--json", str(out), "-q",
                       "--build-dir", str(tmp_path / "build"),
                       "--mutants-json", str(mutants_json)])
    text = capsys.readouterr().out
    assert status == 0, text
    data = json.loads(out.read_text())
    assert list(data["native"]) == ["3.14"]
    _check_native(data["native"]["3.14"], "3.14")
    assert "port/limit" in text and "poll_scan_4096" in text and "steps/s" in text
    modes = {m["mode"]: m for m in data["suite"]["modes"]}
    assert modes["random"]["steps"] > 0 and modes["scenario"]["steps"] > 0
    assert data["suite"]["time_to_verdict"]["conforms"] is True
    assert data["suite"]["mutants"]["median_seconds"] == 3.5
    assert data["seconds"] > 0
    if plot.available():
        assert data["plot"] == str(out.with_suffix(".png"))
        assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert data["plot"] is None


def test_tables_render_without_urcu():
    data = {"urcu": None, "rounds": 1, "clock": "CLOCK_MONOTONIC", "cpus": 2,
            "operations": [{"name": "advance", "port": {"best": 2.0, "median": 2.0},
                            "limit": {"best": 1.0, "median": 1.0}, "urcu": None,
                            "ratios": {"port/limit": {"best": 2.0, "median": 2.0},
                                       "port/urcu": None}}],
            "threads": {"rounds": 1, "rows": [
                {"readers": 1, "port": {"gp_latency_ns": {"best": 900.0, "median": 900.0},
                                        "reclaim_per_s": {"best": 1e6, "median": 1e6}},
                 "urcu": None}]}}
    text = bench_cli.native_table("3.13", data)
    assert "apt-get install liburcu-dev" in text and "2.00" in text


@needs_toolchain
def test_bench_fix_rows(tmp_path, capsys):
    """--fix NAME builds a patched copy of the port and shows, beside the port's own figures,
    the operations the fix touches (the non-advancing goal, a deferred free, and advance as the
    noise row), from alternating runs of the two builds."""
    out = tmp_path / "b.json"
    assert bench_cli.main(["--no-suite", "--quick", "--readers", "0", "--profile", "3.14",
                           "--fix", "stale-goal-rmw", "--build-dir", str(tmp_path / "build"),
                           "--contention", "1", "--json", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "fix stale-goal-rmw" in text and "shared_next" in text
    assert "under contention" in text and "stale-goal-rmw reader qs" in text
    data = json.loads(out.read_text())
    pair = data["native_fixes"]["stale-goal-rmw"]["3.14"]
    assert pair["repeats"] == bench_cli.FIX_REPEATS
    for kind in ("plain", "fixed"):
        names = {op["name"]: op for op in pair[kind]["operations"]}
        for name in ("shared_next", "deferred_free", "advance"):
            _sane(names[name]["port"])
        _check_contention(pair[kind], "3.14", [1])
        assert pair[kind]["contention"]["rows"][0]["goals"] >= 1024 * bench_cli.FIX_REPEATS
    assert bench_cli.main(["--no-suite", "--quick", "--readers", "0", "--fix", "nope",
                           "--build-dir", str(tmp_path / "build"), "-q"]) == 2


def test_contention_side_by_side():
    """Runs of one build merge to the best of the bests and the median of the medians; the
    table puts the port and each fix side by side, row by row."""
    def run(goal, qs):
        return {"operations": [], "contention": {"goal": "_Py_qsbr_shared_next", "rounds": 1,
                                                 "rows": [{"readers": 1, "goals": 2048,
                                                           "goal_ns": goal, "reader_qs_ns": qs}]}}
    runs = [run({"best": 5.0, "median": 9.0}, {"best": 2.0, "median": 3.0}),
            run({"best": 4.0, "median": 7.0}, {"best": 2.5, "median": 2.5}),
            run({"best": 6.0, "median": 8.0}, {"best": 1.5, "median": 4.0})]
    merged = bench_cli.merge_runs(runs)["contention"]["rows"][0]
    assert merged["goal_ns"] == {"best": 4.0, "median": 8.0}
    assert merged["reader_qs_ns"] == {"best": 1.5, "median": 3.0}
    assert merged["goals"] == 3 * 2048
    fixed = run({"best": 11.0, "median": 12.0}, {"best": 7.0, "median": 7.5})
    text = bench_cli.contention_table("3.14", {"port": bench_cli.merge_runs(runs),
                                               "stale-goal-rmw": fixed})
    row = text.splitlines()[-1].split()
    assert row[0] == "1" and row[1:3] == ["4.00", "(8.00)"] and row[3:5] == ["11.00", "(12.00)"]
    assert row[5:7] == ["1.50", "(3.00)"] and row[7:9] == ["7.00", "(7.50)"]
    assert row[9:] == ["-", "-"]        # no overlap figures in these runs
