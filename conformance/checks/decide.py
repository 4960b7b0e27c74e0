"""The decide rule of the hardware litmus: how long to run each row, and what its count says.

Shared by the port's harness (:mod:`conformance.checks.hazards`), the interpreter probe
(:mod:`conformance.checks.hazards_live`, run inside a free-threaded interpreter: standard
library only) and the C ABI litmus.  A rate is a property of a harness on a machine, never a
constant: nothing here assumes one.  Instead:

1. **Calibration.**  Before anything is counted, the reference shape (the unfixed stale goal:
   an unlink store, then the non-advancing goal's load) runs a few thousand iterations at each
   offset range of a sweep (each side spins 0..R-1 empty iterations before its racing part,
   litmus_core.h), and the range that showed the most forbidden outcomes is used for every row
   of that build.  Which alignment of the two racing parts shows store buffering depends on the
   machine; the sweep finds one that does, on any machine, and the calibration's own counts are
   never part of a verdict.
2. **The reference row** runs until it has at least ``observations`` forbidden outcomes (30)
   or ``maximum`` iterations.  Short of 30, every comparison against it is *inconclusive on
   this machine* (the report says why).
3. **Each row expected to count nothing** (the fence, the advancing goal, a fix, a control, a
   seq_cst first load) runs until the upper end of its Wilson interval falls below a tenth of
   the reference's lower end -- *conclusive*: the row's rate is at most a tenth of the unfixed
   rate, with 95% confidence on each -- or until ``maximum`` iterations: *inconclusive on this
   machine*.  A row whose own lower end already lies above that bound is *not below*: it shows
   the outcome at a rate comparable to the unfixed one.
4. **A row expected to show the outcome** (allowed even under sequential consistency) runs like
   the reference: *observed* or *not observed in N iterations* (never "impossible").
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Z95 = 1.959963984540054
INTERVAL_METHOD = "Wilson score interval, 95% (z = 1.96)"

#: Verdicts of a comparison.
CONCLUSIVE = "conclusive"
INCONCLUSIVE = "inconclusive on this machine"
NOT_BELOW = "not below"
OBSERVED = "observed"
NOT_OBSERVED = "not observed"

#: What each row of a plan is for.
REFERENCE = "reference"     # the unfixed stale goal: what the harness shows on this machine
BELOW = "below"             # must be conclusively below the reference
EXPECT = "expect"           # allowed even under sequential consistency: should be observed
CONTROL = "control"         # impossible under any model: any count is a broken harness

RULE = ("decide rule: calibration sweep of offset ranges on the reference shape (its counts "
        "discarded); the reference runs until {observations} forbidden outcomes or {maximum:,} "
        "iterations; every other row runs until the upper end of its interval is below "
        "1/{margin:g} of the reference's lower end (conclusive) or {maximum:,} iterations "
        "(inconclusive on this machine)")


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion, as fractions."""
    if trials <= 0:
        raise ValueError("trials must be positive")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # The exact ends where rounding would leave a few ulps: 0 successes, all successes.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Budget:
    """How much each row may run.  Every figure is a count of iterations, never a time."""
    minimum: int = 100_000          # every row runs at least this many iterations
    maximum: int = 4_000_000        # and at most this many
    observations: int = 30          # the reference must show this many forbidden outcomes
    margin: float = 10.0            # conclusive: upper < reference lower / margin
    chunk: int = 100_000            # iterations per call into the harness
    ranges: tuple[int, ...] = (64, 256, 1024, 4096)     # the calibration sweep
    calibration: int = 20_000       # iterations per range of the sweep
    offsets: int | None = None      # a fixed range instead of the sweep

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.maximum:
            raise ValueError(f"iterations: need 0 < minimum ({self.minimum:,}) <= maximum "
                             f"({self.maximum:,})")
        if self.chunk <= 0 or self.calibration <= 0 or self.observations <= 0:
            raise ValueError("chunk, calibration and observations must be positive")
        if self.margin <= 1:
            raise ValueError("margin must be above 1")
        if self.offsets is not None and not 1 <= self.offsets <= 65536:
            raise ValueError(f"offset range {self.offsets} outside 1..65536")

    def describe(self) -> str:
        return RULE.format(observations=self.observations, maximum=self.maximum,
                           margin=self.margin)


#: run(iterations, offset_range, seed) -> counts with at least "iterations", "forbidden" and
#: "bands" ([[low, high, iterations, forbidden], ...]); other integer counts are summed.
Runner = Callable[[int, int, int], dict[str, Any]]


@dataclass
class Tally:
    """What one row counted, over every chunk it ran."""
    offsets: int
    seed: int
    iterations: int = 0
    forbidden: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    bands: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    chunks: int = 0

    def add(self, part: dict[str, Any]) -> None:
        self.chunks += 1
        for key, value in part.items():
            if key == "bands":
                for low, high, n, k in value:
                    band = self.bands.setdefault((int(low), int(high)), [0, 0])
                    band[0] += int(n)
                    band[1] += int(k)
            elif isinstance(value, int) and not isinstance(value, bool):
                self.counts[key] = self.counts.get(key, 0) + value
        self.iterations = self.counts.get("iterations", 0)
        self.forbidden = self.counts.get("forbidden", 0)

    @property
    def interval(self) -> tuple[float, float]:
        """The forbidden rate's interval, per million iterations."""
        if self.iterations == 0:
            return 0.0, 1e6
        low, high = wilson(self.forbidden, self.iterations)
        return low * 1e6, high * 1e6

    @property
    def per_million(self) -> float:
        return self.forbidden * 1e6 / self.iterations if self.iterations else 0.0

    def band_rows(self) -> list[dict[str, Any]]:
        return [{"low": low, "high": high, "iterations": n, "forbidden": k,
                 "per_million": k * 1e6 / n if n else 0.0}
                for (low, high), (n, k) in sorted(self.bands.items())]


def next_step(done: int, budget: Budget) -> int:
    """The next call's iterations: up to the minimum in chunks, then doubling what has run (so
    a row overshoots what it needed by at most a factor of two) up to a chunk per call."""
    if done < budget.minimum:
        step = min(budget.chunk, budget.minimum - done)
    else:
        step = min(budget.chunk, max(done, 1))
    return min(step, budget.maximum - done)


def _run_chunks(run: Runner, tally: Tally, until: Callable[[Tally], bool],
                budget: Budget) -> None:
    while tally.iterations < budget.maximum:
        if tally.iterations >= budget.minimum and until(tally):
            return
        tally.add(run(next_step(tally.iterations, budget), tally.offsets,
                      tally.seed + tally.chunks))


def calibrate(run: Runner, budget: Budget, seed: int) -> tuple[int, list[dict[str, Any]]]:
    """The offset range to use, and the sweep's table (its counts are not evidence)."""
    if budget.offsets is not None:
        return budget.offsets, []
    table = []
    for number, offsets in enumerate(budget.ranges):
        part = run(budget.calibration, offsets, seed + 1_000_000 + number)
        table.append({"offsets": offsets, "iterations": int(part["iterations"]),
                      "forbidden": int(part["forbidden"])})
    best = max(table, key=lambda row: (row["forbidden"], -row["offsets"]))
    if best["forbidden"] == 0:
        # Nothing showed anywhere: the widest range samples the most alignments.
        return budget.ranges[-1], table
    return best["offsets"], table


def measure_reference(run: Runner, budget: Budget, offsets: int, seed: int) -> Tally:
    """Run until ``observations`` forbidden outcomes, or ``maximum`` iterations."""
    tally = Tally(offsets, seed)
    _run_chunks(run, tally, lambda t: t.forbidden >= budget.observations, budget)
    return tally


def bound(reference: Tally, budget: Budget) -> float | None:
    """The rate (per million) a row must be conclusively below, or None when the reference
    did not reach its observations (no comparison can then be conclusive)."""
    if reference.forbidden < budget.observations:
        return None
    return reference.interval[0] / budget.margin


def measure_below(run: Runner, budget: Budget, offsets: int, seed: int,
                  limit: float | None) -> Tally:
    """Run until the interval's upper end is below ``limit`` (per million), its lower end is
    above it (it cannot become conclusive), or ``maximum`` iterations."""
    tally = Tally(offsets, seed)

    def decided(t: Tally) -> bool:
        if limit is None:
            return True         # nothing to be conclusive against: the minimum is enough
        low, high = t.interval
        return high < limit or low > limit

    _run_chunks(run, tally, decided, budget)
    return tally


def judge(role: str, tally: Tally, reference: Tally | None, budget: Budget) -> dict[str, Any]:
    """The verdict of one row: ``verdict`` (one of the constants above) and ``why``."""
    low, high = tally.interval
    if role in (REFERENCE, EXPECT):
        if tally.forbidden >= budget.observations or (role == EXPECT and tally.forbidden):
            return {"verdict": OBSERVED,
                    "why": f"{tally.forbidden:,} forbidden outcomes in {tally.iterations:,} "
                           "iterations"}
        if role == EXPECT:
            return {"verdict": NOT_OBSERVED,
                    "why": f"not observed in {tally.iterations:,} iterations on this machine "
                           "(it is allowed even under sequential consistency: zero is not "
                           "proof)"}
        return {"verdict": INCONCLUSIVE,
                "why": f"{tally.forbidden} forbidden outcomes in {tally.iterations:,} "
                       f"iterations, fewer than the {budget.observations} a comparison needs: "
                       "this machine does not show the unfixed shape often enough here"}
    assert reference is not None
    limit = bound(reference, budget)
    if limit is None:
        return {"verdict": INCONCLUSIVE,
                "why": "the reference showed the unfixed shape fewer than "
                       f"{budget.observations} times: nothing to compare against here"}
    if high < limit:
        return {"verdict": CONCLUSIVE,
                "why": f"upper end {high:,.2f} per million < {limit:,.2f} (1/{budget.margin:g} "
                       f"of the reference's lower end {reference.interval[0]:,.1f})"}
    if low > limit:
        return {"verdict": NOT_BELOW,
                "why": f"lower end {low:,.2f} per million > {limit:,.2f}: the outcome shows "
                       "at a rate comparable to the unfixed shape"}
    return {"verdict": INCONCLUSIVE,
            "why": f"after {tally.iterations:,} iterations (the maximum) the interval "
                   f"[{low:,.2f}, {high:,.2f}] per million still straddles {limit:,.2f}"}


# --- the options of both command lines (hazards, and hazards_live in a child interpreter) ------

DEFAULTS = Budget()


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _offsets(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or 1..65536, got {text!r}") from None
    if not 1 <= value <= 65536:
        raise argparse.ArgumentTypeError(f"expected 'auto' or 1..65536, got {value}")
    return value


def add_budget_options(parser: argparse.ArgumentParser) -> None:
    """The decide rule's options."""
    parser.add_argument("--iterations", type=_positive, default=DEFAULTS.minimum, metavar="N",
                        help=f"iterations every shape runs at least (default "
                             f"{DEFAULTS.minimum:,}); the run stops on counts, never a clock")
    parser.add_argument("--max-iterations", type=_positive, default=DEFAULTS.maximum,
                        metavar="N", help=f"iterations a shape runs at most (default "
                                          f"{DEFAULTS.maximum:,})")
    parser.add_argument("--observations", type=_positive, default=DEFAULTS.observations,
                        metavar="K",
                        help=f"forbidden outcomes the unfixed reference shape must show before "
                             f"a comparison can be conclusive (default {DEFAULTS.observations})")
    parser.add_argument("--margin", type=float, default=DEFAULTS.margin, metavar="X",
                        help=f"a row is conclusively below the reference when its interval's "
                             f"upper end is under 1/X of the reference's lower end (default "
                             f"{DEFAULTS.margin:g})")
    parser.add_argument("--offsets", type=_offsets, default=None, metavar="auto|R",
                        help="each side spins 0..R-1 empty iterations before its racing part "
                             "(litmus7's randomised offsets); auto (default): a calibration "
                             f"sweep of {', '.join(map(str, DEFAULTS.ranges))} on the reference "
                             "shape picks R")
    parser.add_argument("--chunk", type=_positive, default=DEFAULTS.chunk, metavar="N",
                        help=argparse.SUPPRESS)
    parser.add_argument("--calibration", type=_positive, default=DEFAULTS.calibration,
                        metavar="N",
                        help=f"iterations per range of the calibration sweep (default "
                             f"{DEFAULTS.calibration:,}; not part of any verdict)")


def budget_from(args: argparse.Namespace) -> Budget:
    """The Budget the options ask for (ValueError when they contradict each other)."""
    return Budget(minimum=args.iterations, maximum=max(args.max_iterations, args.iterations),
                  observations=args.observations, margin=args.margin, chunk=args.chunk,
                  calibration=args.calibration, offsets=args.offsets)


def budget_arguments(budget: Budget) -> list[str]:
    """The command-line options that give a child (hazards_live) the same budget."""
    args = ["--iterations", str(budget.minimum), "--max-iterations", str(budget.maximum),
            "--observations", str(budget.observations), "--margin", f"{budget.margin:g}",
            "--chunk", str(budget.chunk), "--calibration", str(budget.calibration)]
    if budget.offsets is not None:
        args += ["--offsets", str(budget.offsets)]
    return args
