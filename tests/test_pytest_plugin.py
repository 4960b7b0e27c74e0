"""The pytest plugin: `pytest --qsbr-impl MODULE:FACTORY` inside another project's run."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent

pytest_plugins = ["pytester"]


def _run(pytester, *args):
    pytester.makepyfile(test_nothing="def test_own_project():\n    assert True\n")
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_plugin_adds_one_test_per_fact(pytester):
    result = _run(pytester, "--qsbr-impl", "conformance.oracle:oracle", "--qsbr-examples",
                  "10", "--qsbr-seed", "1", "--junitxml", "report.xml", "-rs")
    # 29 facts + MISUSE + verdict + the project's own test; S-DEF-2 and S-SLOT-2 are n/a, and
    # S-READ-1 (model-checked only, reference port only) is skipped saying so
    result.assert_outcomes(passed=29, skipped=3)
    result.stdout.fnmatch_lines(["*S-READ-1: only the model checker*"])
    assert "qsbr[S-FREE-3]" in (pytester.path / "report.xml").read_text()


def test_plugin_fails_the_broken_fact(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))       # where mutant_adapters lives
    result = _run(pytester, "--qsbr-impl", "mutant_adapters:advance_returns_old",
                  "--qsbr-examples", "10", "--qsbr-seed", "1")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 2        # S-ADV-1 and the verdict at least
    result.stdout.fnmatch_lines(["*qsbr?S-ADV-1?*"])


def test_plugin_is_silent_without_the_option(pytester):
    result = _run(pytester)
    result.assert_outcomes(passed=1)
