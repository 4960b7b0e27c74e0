"""tests/requires.py: the one way a test skips, and what it does under CI."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requires as req

TESTS = Path(__file__).resolve().parents[1]
# Spelled in pieces, so that this file does not match the pattern it looks for.
FORBIDDEN = re.compile("|".join(("pytest" + r"\.mark\.skip" + "if", "pytest" + r"\.skip\(",
                                 "importor" + "skip")))


def test_nothing_else_in_tests_skips():
    offenders = [f"{path.relative_to(TESTS)}:{number}"
                 for path in sorted(TESTS.rglob("*.py")) if path.name != "requires.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if FORBIDDEN.search(line)]
    assert offenders == []


def test_every_requirement_can_be_checked_here():
    # Each provider runs (present or missing) without raising anything but its own verdict.
    for name in req.NAMES:
        args = ("3.14.7",) if name == "tarball" else ()
        why = req.check(name, *args)
        assert why is None or (isinstance(why, str) and why)


def test_an_unknown_requirement_is_an_error():
    with pytest.raises(ValueError, match="unknown requirement 'relacyy'"):
        req.check("relacyy")
    with pytest.raises(ValueError, match="unknown release"):
        req.check("tarball", "3.99.0")


def _pytester(tmp_path: Path, ci: str | None, body: str,
              **extra_env: str) -> subprocess.CompletedProcess:
    (tmp_path / "requires.py").write_text((TESTS / "requires.py").read_text())
    for helper in ("conftest.py", "seeds.py", "redis_server.py"):     # what conftest imports
        (tmp_path / helper).write_text((TESTS / helper).read_text())
    (tmp_path / "test_it.py").write_text(textwrap.dedent(body))
    env = {"PATH": "/nonexistent", "HOME": str(tmp_path),
           "QSBR_PYTHON_CACHE": str(tmp_path / "no-cache")}
    if ci is not None:
        env["CI"] = ci
    env.update(extra_env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "-p", "no:randomly", str(tmp_path / "test_it.py")],
                          capture_output=True, text=True, cwd=tmp_path, env=env)


BODY = """
    import pytest
    from requires import requires, tarball

    def test_needs_a_compiler():
        requires("cc")

    @pytest.mark.requires("redis-server")
    def test_needs_redis():
        pass

    def test_needs_a_tarball():
        tarball("3.14.7")
"""


def test_missing_things_skip_locally_and_say_what_is_missing(tmp_path):
    proc = _pytester(tmp_path, None, BODY)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "3 skipped" in out
    assert "needs no cc on PATH" in out
    assert "redis" in out and "the CPython 3.14.7 tarball" in out


def test_under_ci_a_missing_thing_fails(tmp_path):
    proc = _pytester(tmp_path, "true", BODY)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    # the marker's requirement fails in the test's setup: pytest counts it as an error
    assert "2 failed" in out and "1 error" in out
    assert out.count("CI provides this, but it is missing") >= 3
    assert "CI provides this, but it is missing" in out


def test_a_stage_lacking_something_on_purpose_names_the_stage_that_runs_it(tmp_path):
    body = """
        from requires import requires, FREE_THREADED

        def test_free_threaded_only():
            requires("free_threaded" if not FREE_THREADED else "gil")
    """
    proc = _pytester(tmp_path, "true", body)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout and "CI runs this test" in proc.stdout


def test_an_environment_lacking_an_extra_on_purpose_says_so_under_ci(tmp_path):
    """tox's environments lack the campaign extra on purpose (QSBR_STAGE_LACKS): a test that
    needs it skips there under CI, naming the stage that runs it; anything else still fails."""
    body = """
        from requires import requires

        def test_needs_redis():
            requires("redis-server")

        def test_needs_a_compiler():
            requires("cc")
    """
    proc = _pytester(tmp_path, "true", body, QSBR_STAGE_LACKS="hypofuzz redis-server")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "1 failed" in out and "1 skipped" in out
    assert "lacks redis-server on purpose" in out and "GIL build" in out
