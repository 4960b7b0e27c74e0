"""Seeds a failure report names: the ``seed`` and ``record_seed`` fixtures (tests/conftest.py
imports them, with the report hook).

A test whose run is random takes ``seed``: ``QSBR_TEST_SEED`` when set (to rerun a failure),
else a fresh random one.  Either way the seed is printed, kept in the test's
``user_properties`` (JUnit XML) and, when the test fails, added to its report as a section of
its own (with the traceback), ``seed: N, rerun with QSBR_TEST_SEED=N``, which pytest shows
under ``-q``, with ``--show-capture=no`` and from an xdist worker too: CI's log is enough to
reproduce the run.  A test of the code's own choice of
a seed (a run given none draws one) calls ``record_seed(N)`` with the seed the run drew.
"""

from __future__ import annotations

import os

import pytest

#: The title of the failure report's section (tests/unit/test_seeds.py).
SECTION = "seed"
_LINES = pytest.StashKey[list]()


def _record(request, value: int, how: str) -> None:
    request.node.user_properties.append(("seed", value))
    line = f"seed: {value}, {how}"
    request.node.stash.setdefault(_LINES, []).append(line)
    print(line)


@pytest.fixture
def seed(request) -> int:
    """A seed for the test's run; see the module's text."""
    from conformance.checks.plan import new_seed
    given = os.environ.get("QSBR_TEST_SEED")
    value = int(given) if given else new_seed()
    _record(request, value, f"rerun with QSBR_TEST_SEED={value}")
    return value


@pytest.fixture
def record_seed(request):
    """``record_seed(N)``: the run under test drew seed N itself; a failure report names it."""
    def record(value: int) -> None:
        _record(request, value, f"drawn by the run itself (replay it with --seed {value})")
    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    lines = item.stash.get(_LINES, None)
    if lines and report.failed:
        text = "\n".join(lines)
        if hasattr(report.longrepr, "addsection"):   # printed with the traceback, always
            report.longrepr.addsection(SECTION, text)
        else:
            report.sections.append((SECTION, text))
    return report
