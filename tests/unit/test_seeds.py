"""The ``seed`` fixture (tests/seeds.py): a failing test's report names its seed, under -q and
from an xdist worker, and QSBR_TEST_SEED reruns it with the same one."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import watched

TESTS = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from seeds import pytest_runtest_makereport, record_seed, seed  # noqa: F401
"""

CASES = """
def test_fails_with_its_seed(seed):
    assert seed < 0, "planted failure"

def test_passes(seed):
    assert seed >= 0

def test_fails_with_a_drawn_seed(record_seed):
    record_seed(4321)
    assert False, "planted failure"
"""


def _pytest(tmp_path: Path, *args: str, seed: str | None = None):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {k: v for k, v in os.environ.items() if k != "QSBR_TEST_SEED"}
    if seed is not None:
        env["QSBR_TEST_SEED"] = seed
    return watched.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--rootdir", str(tmp_path), *args, str(tmp_path)],
                       cwd=tmp_path, env=env)


@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["in-process", "xdist"])
def test_a_failure_report_names_the_seed_under_q(tmp_path, workers):
    proc = _pytest(tmp_path, *workers)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "2 failed, 1 passed" in out, out
    # The report's own section, with the traceback (the print is in the captured stdout too).
    drawn = re.findall(r"^-+ seed -+\nseed: (\d+), rerun with QSBR_TEST_SEED=(\d+)$", out, re.M)
    assert len(drawn) == 1 and drawn[0][0] == drawn[0][1], out
    assert re.search(r"^-+ seed -+\nseed: 4321, drawn by the run itself \(replay it with "
                     r"--seed 4321\)$", out, re.M), out
    # a passing test's seed is not in the report
    assert len(re.findall(r"^-+ seed -+$", out, re.M)) == 2, out


def test_the_report_section_is_shown_without_captured_output(tmp_path):
    proc = _pytest(tmp_path, "--show-capture=no")
    assert "Captured stdout" not in proc.stdout
    assert len(re.findall(r"^seed: \d+, rerun with QSBR_TEST_SEED=\d+$", proc.stdout,
                          re.M)) == 1, proc.stdout


def test_qsbr_test_seed_reruns_with_that_seed(tmp_path):
    proc = _pytest(tmp_path, "-k", "its_seed", seed="987654321")
    assert "seed: 987654321, rerun with QSBR_TEST_SEED=987654321" in proc.stdout, proc.stdout
