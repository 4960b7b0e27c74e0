"""The runner's later phases are one table of phase objects (runner.LATER_PHASES): a phase
added there runs in its place, with the run's context, and a stopped run skips the phases
that do not run after a stop."""

from __future__ import annotations

from conformance.checks import runner
from conformance.checks.plan import Plan
from conformance.drivers import target as targets

PLAN = Plan(seed=1, examples=2, explore_seconds=0, live_examples=0, concurrency_rounds=0,
            model_check=False)


class _Probe:
    name = "probe"
    after_a_stop = False

    def __init__(self) -> None:
        self.seen: list[object] = []

    def applies(self, plan, target) -> bool:
        return target.kind == "python"

    def run(self, context) -> None:
        self.seen.append(context.target)
        context.result.phases.append(self.name)
        context.result.ledger.passed("S-ADV-1", source="concurrent")


def test_a_phase_added_to_the_table_runs_in_its_place(monkeypatch):
    probe = _Probe()
    monkeypatch.setattr(runner, "LATER_PHASES", (*runner.LATER_PHASES, probe))
    target = targets.resolve("conformance.oracle:oracle", isolate=False)
    result = runner.run(PLAN, target)
    assert probe.seen == [target]
    assert result.phases[-2:] == ["concurrent", "probe"], result.phases
    assert result.fact_status("S-ADV-1") == "pass"      # credited by a concurrent source
    # not for a target the phase does not apply to
    other = _Probe()
    monkeypatch.setattr(runner, "LATER_PHASES", (other,))
    runner.run(PLAN, targets.resolve())
    assert other.seen == []


def test_a_run_that_stopped_at_its_first_failure_skips_the_later_phases(monkeypatch):
    probe = _Probe()
    monkeypatch.setattr(runner, "LATER_PHASES", (*runner.LATER_PHASES, probe))
    result = runner.run(PLAN.with_(stop_at_first_failure=True),
                        targets.resolve("mutant_adapters:fifo_freelist", isolate=False))
    assert result.failures and probe.seen == [] and "concurrent" not in result.phases
