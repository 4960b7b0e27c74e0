"""The decide rule's arithmetic (conformance/checks/decide.py), on deterministic fake harnesses:
no hardware, no rates of any machine."""

from __future__ import annotations

import argparse

import pytest

from conformance.checks import decide
from conformance.checks.decide import Budget


def harness(rate_by_range: dict[int, float] | float):
    """A fake litmus: after N iterations at a range, floor(N * rate) forbidden outcomes."""
    calls = []
    done: dict[int, int] = {}

    def run(n: int, offsets: int, seed: int) -> dict:
        rate = rate_by_range if isinstance(rate_by_range, float) else rate_by_range[offsets]
        calls.append((n, offsets, seed))
        before = done.get(offsets, 0)
        done[offsets] = before + n
        k = int(done[offsets] * rate) - int(before * rate)
        return {"iterations": n, "forbidden": k, "reached": n,
                "bands": [[-offsets + 1, 0, n // 2, k // 2], [1, offsets - 1, n - n // 2,
                                                              k - k // 2]]}
    run.calls = calls   # type: ignore[attr-defined]
    return run


BUDGET = Budget(minimum=1000, maximum=100_000, chunk=1000, calibration=500)


def test_wilson_interval():
    # The 95% Wilson score intervals of the worked examples in Newcombe (1998), Statistics in
    # Medicine 17:857-872 (method 3).
    for (k, n), expected in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
                             (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}.items():
        assert decide.wilson(k, n) == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ValueError):
        decide.wilson(0, 0)


def test_calibration_picks_the_range_that_shows_most_and_is_not_counted():
    run = harness({64: 0.0, 256: 0.002, 1024: 0.01, 4096: 0.004})
    offsets, table = decide.calibrate(run, BUDGET, seed=3)
    assert offsets == 1024
    assert [row["offsets"] for row in table] == [64, 256, 1024, 4096]
    assert [row["forbidden"] for row in table] == [0, 1, 5, 2]
    # then the reference is measured afresh, at that range, from its own seed stream
    ref = decide.measure_reference(run, BUDGET, offsets, seed=3)
    assert ref.offsets == 1024 and ref.forbidden >= 30 and ref.iterations == 3000
    assert {c[1] for c in run.calls[4:]} == {1024}
    assert [c[2] for c in run.calls[4:]] == [3, 4, 5]          # a new seed per chunk


def test_nothing_anywhere_takes_the_widest_range_and_a_fixed_range_skips_the_sweep():
    assert decide.calibrate(harness(0.0), BUDGET, 1)[0] == 4096
    fixed = Budget(minimum=1000, maximum=2000, offsets=77)
    run = harness({77: 0.5})
    assert decide.calibrate(run, fixed, 1) == (77, [])
    assert run.calls == []


def test_a_zero_row_runs_until_conclusive_and_no_longer():
    ref = decide.measure_reference(harness(0.01), BUDGET, 64, 1)     # 10,000 per million
    limit = decide.bound(ref, BUDGET)
    assert limit == pytest.approx(ref.interval[0] / 10)
    row = decide.measure_below(harness(0.0), BUDGET, 64, 1, limit)
    verdict = decide.judge(decide.BELOW, row, ref, BUDGET)
    assert verdict["verdict"] == decide.CONCLUSIVE
    # conclusive as soon as 3.84/N < limit, in whole chunks: not a chunk later
    assert row.interval[1] < limit
    shorter = decide.Tally(64, 1)
    shorter.add({"iterations": row.iterations - BUDGET.chunk, "forbidden": 0})
    assert row.iterations == BUDGET.minimum or shorter.interval[1] >= limit


def test_a_row_at_the_unfixed_rate_is_not_below_and_a_straddling_one_is_inconclusive():
    ref = decide.measure_reference(harness(0.01), BUDGET, 64, 1)
    same = decide.measure_below(harness(0.01), BUDGET, 64, 1, decide.bound(ref, BUDGET))
    assert decide.judge(decide.BELOW, same, ref, BUDGET)["verdict"] == decide.NOT_BELOW
    assert same.iterations == BUDGET.minimum           # decided at once: it cannot get below
    near = decide.measure_below(harness(0.0008), BUDGET, 64, 1, decide.bound(ref, BUDGET))
    verdict = decide.judge(decide.BELOW, near, ref, BUDGET)
    assert near.iterations == BUDGET.maximum and verdict["verdict"] in (
        decide.INCONCLUSIVE, decide.NOT_BELOW)


def test_a_reference_short_of_its_observations_makes_everything_inconclusive():
    ref = decide.measure_reference(harness(0.0001), BUDGET, 64, 1)   # 10 in 100,000
    assert ref.iterations == BUDGET.maximum and ref.forbidden == 10
    assert decide.judge(decide.REFERENCE, ref, None, BUDGET)["verdict"] == decide.INCONCLUSIVE
    assert decide.bound(ref, BUDGET) is None
    row = decide.measure_below(harness(0.0), BUDGET, 64, 1, None)
    assert row.iterations == BUDGET.minimum          # nothing to be conclusive against
    verdict = decide.judge(decide.BELOW, row, ref, BUDGET)
    assert verdict["verdict"] == decide.INCONCLUSIVE and "fewer than 30" in verdict["why"]


def test_expected_rows_say_observed_or_not_observed_never_impossible():
    seen = decide.measure_reference(harness(0.5), BUDGET, 64, 1)
    assert decide.judge(decide.EXPECT, seen, None, BUDGET)["verdict"] == decide.OBSERVED
    unseen = decide.measure_reference(harness(0.0), BUDGET, 64, 1)
    verdict = decide.judge(decide.EXPECT, unseen, None, BUDGET)
    assert verdict["verdict"] == decide.NOT_OBSERVED and "zero is not proof" in verdict["why"]


def test_bands_and_counts_are_summed_over_chunks():
    tally = decide.Tally(64, 1)
    tally.add({"iterations": 10, "forbidden": 2, "reached": 3, "bands": [[-63, 0, 6, 1],
                                                                        [1, 63, 4, 1]]})
    tally.add({"iterations": 10, "forbidden": 1, "reached": 1, "bands": [[-63, 0, 5, 0]]})
    assert (tally.iterations, tally.forbidden, tally.counts["reached"]) == (20, 3, 4)
    assert tally.band_rows()[0] == {"low": -63, "high": 0, "iterations": 11, "forbidden": 1,
                                    "per_million": pytest.approx(1e6 / 11)}


@pytest.mark.parametrize("kwargs", [{"minimum": 0}, {"minimum": 10, "maximum": 5},
                                    {"margin": 1.0}, {"offsets": 0}, {"chunk": 0}])
def test_bad_budgets_are_refused(kwargs):
    with pytest.raises(ValueError):
        Budget(**kwargs)


def test_options_round_trip_to_a_child():
    parser = argparse.ArgumentParser()
    decide.add_budget_options(parser)
    budget = decide.budget_from(parser.parse_args(["--iterations", "5000", "--offsets", "256",
                                                   "--max-iterations", "90000", "--margin",
                                                   "20"]))
    again = decide.budget_from(parser.parse_args(decide.budget_arguments(budget)))
    assert again == budget and budget.offsets == 256 and budget.margin == 20
    assert decide.budget_from(parser.parse_args([])).offsets is None


def test_steps_reach_the_minimum_then_double_up_to_a_chunk():
    budget = Budget(minimum=20_000, maximum=1_000_000, chunk=100_000)
    done, steps = 0, []
    while done < budget.maximum:
        steps.append(decide.next_step(done, budget))
        done += steps[-1]
    assert steps[:5] == [20_000, 20_000, 40_000, 80_000, 100_000]
    assert sum(steps) == budget.maximum and all(0 < s <= budget.chunk for s in steps)
