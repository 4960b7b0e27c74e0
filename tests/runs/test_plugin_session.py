"""The plugin runs the suite lazily, when the first fact's item runs (not at collection), and
under pytest-xdist once, in the controller, which hands the outcomes to the workers."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SHORT = ["--qsbr-examples", "3", "--qsbr-seed", "1", "--qsbr-explore-seconds", "0",
         "--qsbr-live-examples", "0", "--qsbr-concurrency-rounds", "0"]

pytest_plugins = ["pytester"]


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _setup(pytester, monkeypatch, tmp_path) -> Path:
    log = tmp_path / "factory.log"
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    monkeypatch.setenv("QSBR_TEST_FACTORY_LOG", str(log))
    pytester.makepyfile(test_own="def test_own_project():\n    assert True\n")
    return log


def test_collection_alone_runs_nothing(pytester, monkeypatch, tmp_path):
    log = _setup(pytester, monkeypatch, tmp_path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--qsbr-impl",
                                           "counting_adapters:counted", *SHORT,
                                           "--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*qsbr?verdict?*"])
    # the usage check loads it once in pytest_configure; no run
    assert len(_calls(log)) == 1, _calls(log)


def test_a_deselected_plugin_runs_nothing(pytester, monkeypatch, tmp_path):
    log = _setup(pytester, monkeypatch, tmp_path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--qsbr-impl",
                                           "counting_adapters:counted", *SHORT,
                                           "-k", "own_project")
    result.assert_outcomes(passed=1)
    assert len(_calls(log)) == 1, _calls(log)


def test_under_xdist_the_controller_runs_the_suite_once(pytester, monkeypatch, tmp_path):
    log = _setup(pytester, monkeypatch, tmp_path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--qsbr-impl",
                                           "counting_adapters:counted", *SHORT, "-n", "2",
                                           "--qsbr-no-isolate")
    assert result.parseoutcomes().get("passed", 0) >= 2, result.stdout.str()
    calls = _calls(log)
    # one load for the usage check, one for the run: both in the controller's process (not
    # isolated: the factory runs in the process that runs the suite)
    assert len(calls) == 2 and len(set(calls)) == 1, calls
