"""The pytest plugin: `pytest --qsbr-impl MODULE:FACTORY` inside another project's run."""

from pathlib import Path

import pytest

from conformance.model.facts import FACTS

TESTS = Path(__file__).resolve().parents[1]

pytest_plugins = ["pytester"]


def _run(pytester, *args):
    pytester.makepyfile(test_nothing="def test_own_project():\n    assert True\n")
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


@pytest.mark.slow
def test_plugin_adds_one_test_per_fact(pytester):
    result = _run(pytester, "--qsbr-impl", "conformance.oracle:oracle", "--qsbr-examples",
                  "10", "--qsbr-seed", "1", "--junitxml", "report.xml", "-rs")
    # 32 facts + MISUSE + verdict + the project's own test; S-DEF-2 and S-SLOT-2 are n/a,
    # S-READ-1 (model-checked only, reference port only) is skipped saying so, and the 11 other
    # ordering facts are skipped as "pass (sequential only)" (the oracle does not declare
    # thread_safe, so no concurrent check ran)
    assert len(FACTS) == 32
    result.assert_outcomes(passed=21, skipped=14)
    result.stdout.fnmatch_lines(["*S-READ-1: n/a: only the model checker*"])
    result.stdout.fnmatch_lines(["*S-ADV-1: pass (sequential only)*"])
    assert "qsbr[S-FREE-3]" in (pytester.path / "report.xml").read_text()


def test_plugin_fails_the_broken_fact(pytester, monkeypatch):
    """The broken fact fails with its own failure and sequence, the verdict fails, every other
    failing test is a fact the run never reached because it stopped at that failure, and the
    project's own test is untouched."""
    import xml.etree.ElementTree as ET

    monkeypatch.setenv("PYTHONPATH", str(TESTS))       # where mutant_adapters lives
    result = _run(pytester, "--qsbr-impl", "mutant_adapters:advance_returns_old",
                  "--qsbr-examples", "10", "--qsbr-seed", "1", "--junitxml", "report.xml")
    assert result.ret == 1
    cases = {case.get("name"): case for case in
             ET.parse(pytester.path / "report.xml").iter("testcase")}
    failed = {name: case.find("failure").get("message") for name, case in cases.items()
              if case.find("failure") is not None}
    assert failed.pop("qsbr[S-ADV-1]").startswith(
        "S-ADV-1 failed:\nadvance(): got 1, expected 3\n"), result.stdout.str()
    assert failed.pop("qsbr[verdict]").startswith("QSBR conformance report: mutant "
                                                  "AdvanceReturnsOld")
    assert all(message == f"{name[5:-1]} was not reached: the run stopped at its first failure "
                          "(S-ADV-1); fix that first" for name, message in failed.items()), failed
    assert cases["test_own_project"].find("failure") is None
    assert result.parseoutcomes()["failed"] == len(failed) + 2


def test_plugin_is_silent_without_the_option(pytester):
    result = _run(pytester)
    result.assert_outcomes(passed=1)


@pytest.mark.slow
def test_plugin_runs_the_suite_once_under_xdist_with_junit_classes(pytester, monkeypatch,
                                                                  tmp_path):
    log = tmp_path / "factory.log"
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    monkeypatch.setenv("QSBR_TEST_FACTORY_LOG", str(log))
    result = _run(pytester, "--qsbr-impl", "counting_adapters:counted", "--qsbr-examples",
                  "10", "--qsbr-seed", "1", "-n", "2", "--junitxml", "report.xml", "-rs")
    # as without xdist: S-DEF-2, S-SLOT-2 (n/a), S-READ-1 (model-checked only) and the 11
    # ordering facts passed sequentially only are skipped
    result.assert_outcomes(passed=21, skipped=14)
    result.stdout.fnmatch_lines(["*S-READ-1: n/a: only the model checker*"])
    # One call to check the implementation loads (a usage error otherwise), one for the run:
    # not one per worker or per collected fact.
    assert len(log.read_text().splitlines()) == 2
    import xml.etree.ElementTree as ET
    cases = [c for c in ET.parse(pytester.path / "report.xml").iter("testcase")
             if c.get("name", "").startswith("qsbr[")]
    assert len(cases) == len(FACTS) + 2      # every fact, MISUSE, verdict
    assert {c.get("classname") for c in cases} == {"qsbr_conformance"}
    assert all(c.get("time") is not None for c in cases)


def test_plugin_bad_options_are_one_usage_error(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    for args in (["--qsbr-impl", "nosuch:f"], ["--qsbr-impl", "crashing_adapters:returns_none"],
                 ["--qsbr-impl", "conformance.oracle:oracle", "--qsbr-examples", "0"],
                 ["--qsbr-impl", "conformance.oracle:oracle", "--qsbr-step-timeout", "-1"]):
        result = _run(pytester, *args)
        assert result.ret == 4, args            # pytest's usage error
        text = result.stdout.str() + result.stderr.str()
        assert "Traceback" not in text and "failed" not in result.stdout.str(), text
        assert text.count("rror") <= 2, text
