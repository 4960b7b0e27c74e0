"""The suite's own speed: how many checked steps per second each exploration mode runs, how
long a default run takes to its verdict, and how long each mutant of the catalog takes to be
killed (from the JSON that ``qsbr-conformance mutants --json`` writes).

A "checked step" is one protocol call run on the implementation and on the oracle and compared
(results, errors and the whole observable state): ``FactLedger.steps``, or the exhaustive
explorer's ``ExploreResult.steps``.  Timings are wall-clock (``time.perf_counter``), one run per
figure: these are runs of seconds, not microbenchmarks, so pytest-benchmark's and pyperf's
repetition machinery would only multiply the cost; the figures vary with the machine's load.
"""

from __future__ import annotations

import importlib
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck
from hypothesis import seed as hypothesis_seed
from hypothesis.stateful import run_state_machine_as_test

from ..checks.differential import coverage_scenario, make_machine
from ..checks.hsettings import suite_settings
from ..checks.plan import DEFAULT_EXAMPLES, DEFAULT_STEPS
from ..drivers import target as targets
from ..drivers.target import REFERENCE_IMPL as DEFAULT_IMPL
from ..model.adapter import Implementation
from ..model.ledger import FactLedger


def _rate(steps: int, seconds: float) -> float:
    return round(steps / seconds, 1) if seconds > 0 else 0.0


def random_mode(impl: Implementation, examples: int, steps: int = DEFAULT_STEPS,
                seed: int = 1) -> dict[str, Any]:
    """The differential random mode alone (Hypothesis' state machine), no failure expected."""
    ledger = FactLedger()
    machine = hypothesis_seed(seed)(make_machine(impl, ledger))
    began = time.perf_counter()
    run_state_machine_as_test(machine, settings=suite_settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
        suppress_health_check=list(HealthCheck)))
    seconds = time.perf_counter() - began
    return {"mode": "random", "examples": ledger.examples, "steps": ledger.steps,
            "checks": sum(ledger.checks.values()), "seconds": round(seconds, 3),
            "steps_per_second": _rate(ledger.steps, seconds)}


def scenario_mode(impl: Implementation, repeats: int) -> dict[str, Any]:
    """The fixed coverage scenario (and the wrap scenario it runs), ``repeats`` times."""
    ledger = FactLedger()
    machine = make_machine(impl, ledger)
    began = time.perf_counter()
    for _ in range(repeats):
        with ledger.crediting("scenario"):
            coverage_scenario(machine())
    seconds = time.perf_counter() - began
    return {"mode": "scenario", "runs": repeats, "steps": ledger.steps,
            "checks": sum(ledger.checks.values()), "seconds": round(seconds, 3),
            "steps_per_second": _rate(ledger.steps, seconds)}


def exhaustive_mode(impl: Implementation, seconds: float) -> dict[str, Any]:
    """The bounded-exhaustive explorer (conformance.checks.exhaustive), if this checkout has it."""
    try:
        exhaustive = importlib.import_module("conformance.checks.exhaustive")
    except ModuleNotFoundError:
        return {"mode": "exhaustive", "available": False,
                "why": "conformance.checks.exhaustive is not in this checkout"}
    result = exhaustive.explore(impl, seconds=seconds)
    return {"mode": "exhaustive", "available": True, "steps": result.steps,
            "states": result.states, "transitions": result.transitions,
            "depth_complete": result.depth_complete, "stopped_by": result.stopped_by,
            "seconds": round(result.seconds, 3),
            "steps_per_second": _rate(result.steps, result.seconds)}


def time_to_verdict(impl_spec: str, profile: str, examples: int, steps: int = DEFAULT_STEPS,
                    seed: int = 1) -> dict[str, Any]:
    """A whole conformance run to its verdict, through the one runner the command line uses
    (conformance.checks.runner.run): every phase of a default run, with this many examples."""
    from ..checks import runner
    from ..checks.plan import Plan

    plan = Plan(seed=seed, examples=examples, steps=steps)
    target = targets.resolve(impl_spec, profile)
    began = time.perf_counter()
    result = runner.run(plan, target)
    seconds = time.perf_counter() - began
    return {"examples": examples, "steps_per_example": steps, "seed": seed,
            "conforms": result.conforms, "checked_steps": result.ledger.steps,
            "phases": result.phases, "seconds": round(seconds, 3),
            "what": "conformance.checks.runner.run(), the run `qsbr-conformance` makes (every "
                    "phase it runs on this interpreter), without the process start-up"}


def mutant_kill_times(path: Path) -> dict[str, Any]:
    """Median and worst time to kill, from ``qsbr-conformance mutants --json`` output."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list) or not all(
            isinstance(r, dict) and {"mutant", "killed", "seconds"} <= r.keys() for r in rows):
        raise ValueError(f"{path} is not the JSON of `qsbr-conformance mutants --json`")
    killed = [r for r in rows if r["killed"]]
    times = [float(r["seconds"]) for r in killed]
    worst = max(killed, key=lambda r: float(r["seconds"])) if killed else None
    return {"source": str(path), "mutants": len(rows), "killed": len(killed),
            "not_killed": sorted(r["mutant"] for r in rows if not r["killed"]),
            "median_seconds": round(statistics.median(times), 2) if times else None,
            "worst_seconds": round(float(worst["seconds"]), 2) if worst else None,
            "worst_mutant": worst["mutant"] if worst else None,
            "per_mutant": {r["mutant"]: {"seconds": float(r["seconds"]), "by": r.get("by", "")}
                           for r in killed},
            "what": "wall time from the start of the mutant's build to its kill (build "
                    "included), as the mutants run measured it"}


def measure(*, quick: bool, profile: str = "3.13", impl_spec: str = DEFAULT_IMPL,
            mutants_json: Path | None = None,
            note: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every figure of the suite's own speed, for one implementation and profile."""
    impl = targets.resolve(impl_spec, profile, isolate=False).open()
    modes = []
    note("suite: scenario mode")
    modes.append(scenario_mode(impl, 3 if quick else 20))
    note("suite: random mode")
    modes.append(random_mode(impl, 10 if quick else 60))
    note("suite: exhaustive mode")
    modes.append(exhaustive_mode(impl, 2.0 if quick else 10.0))   # bounds; it overshoots
    examples = 20 if quick else DEFAULT_EXAMPLES
    note(f"suite: a conformance run of {examples} examples to its verdict")
    verdict = time_to_verdict(impl_spec, profile, examples)
    verdict["default_run"] = examples == DEFAULT_EXAMPLES
    return {"implementation": impl_spec, "profile": profile, "modes": modes,
            "time_to_verdict": verdict,
            "mutants": mutant_kill_times(mutants_json) if mutants_json else None}
