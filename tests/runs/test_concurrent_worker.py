"""The runner's concurrent phase runs a driver-level worker (conformance.checks.concurrent_worker)
that gets the serialised plan and target: the factory's keyword arguments reach it."""

from __future__ import annotations

import textwrap

from conformance.checks import runner
from conformance.checks.plan import Plan
from conformance.drivers import target as targets


def test_the_concurrent_phase_opens_the_target_with_its_keyword_arguments(tmp_path,
                                                                          monkeypatch):
    (tmp_path / "kwarg_adapter.py").write_text(textwrap.dedent('''
        import os

        import verdict_adapters

        def make(profile="3.13", *, racy=False, log=None):
            """The locked oracle, or with racy=True the one that loses updates under
            concurrency; each call appends a line to ``log``."""
            if log is not None:
                with open(log, "a") as handle:
                    handle.write(f"{os.getpid()} racy={racy}\\n")
            factory = verdict_adapters.racy_advance if racy else verdict_adapters.locked_oracle
            return factory(profile)
    '''), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    log = tmp_path / "calls.log"
    target = targets.resolve("kwarg_adapter:make", isolate=False,
                             kwargs=(("racy", True), ("log", str(log))))
    plan = Plan(seed=3, examples=2, explore_seconds=0, live_examples=0, model_check=False,
                concurrency_rounds=4)
    result = runner.run(plan, target)
    assert "concurrent" in result.phases
    calls = log.read_text().splitlines()
    # the run's own load, then the worker's in a process of its own: both with racy=True
    assert len(calls) == 2 and all(line.endswith("racy=True") for line in calls), calls
    assert len({line.split()[0] for line in calls}) == 2, calls
    assert "Python-threads torture in a child process" in (result.concurrency or ""), \
        result.concurrency
