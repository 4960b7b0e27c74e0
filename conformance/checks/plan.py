"""The plan of a conformance run: what to check and how much, frozen before anything runs.

Every front end (the command line, the pytest plugin, the benchmarks, the mutant table) turns
its own options into one :class:`Plan` and one resolved target
(:class:`conformance.drivers.target.Target`), and hands both to the one runner
(:func:`conformance.checks.runner.run`), which runs the same ordered phases whichever front
end asked.  So for a given plan and target every fact's status and the verdict are the same
on every path; the front ends only parse and render.

The defaults here are the defaults of every front end.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from . import exhaustive

#: Defaults of a conformance run (the command line's and the pytest plugin's alike).
DEFAULT_EXAMPLES = 150
DEFAULT_STEPS = 60
#: the exploration is bounded by distinct states (reproducible: a replay with the same seed
#: reaches the same scope); a time bound is only added on request (None: none)
DEFAULT_EXPLORE_STATES = exhaustive.DEFAULT_MAX_STATES
DEFAULT_EXPLORE_SECONDS: float | None = None
#: the time bound used when the states bound is turned off (explore_states 0)
FALLBACK_EXPLORE_SECONDS = exhaustive.DEFAULT_SECONDS
DEFAULT_EXPLORE_DEPTH = exhaustive.DEFAULT_DEPTH
DEFAULT_LIVE_EXAMPLES = 10
DEFAULT_CONCURRENCY_ROUNDS = 12

#: The phases of a run, in the order the runner runs them.
PHASES = ("layout", "comparisons", "scenario", "exhaustive", "random", "model check", "live",
          "concurrent", "hardware", "tsan")


def new_seed() -> int:
    """A seed for a run that was given none, so that every run can be replayed."""
    return random.SystemRandom().randrange(1 << 32)


class PlanError(ValueError):
    """A plan that cannot run (a bad bound); front ends report it as a usage error."""


@dataclass(frozen=True)
class Plan:
    """What a run checks.  ``seed`` is always set (a random one when none was given), so that
    every run can be replayed."""

    seed: int = field(default_factory=new_seed)
    #: Hypothesis examples (step sequences) of the random phase, and steps per example
    examples: int = DEFAULT_EXAMPLES
    steps: int = DEFAULT_STEPS
    #: bounded-exhaustive exploration: distinct-states bound (0: none), an added time bound
    #: (None: none; 0 turns the exploration off) and the depth bound
    explore_states: int = DEFAULT_EXPLORE_STATES
    explore_seconds: float | None = DEFAULT_EXPLORE_SECONDS
    explore_depth: int = DEFAULT_EXPLORE_DEPTH
    #: generated action sequences run against the live interpreter (free-threaded builds with
    #: the probe only); 0 skips the live phase
    live_examples: int = DEFAULT_LIVE_EXAMPLES
    #: rounds of the bounded concurrent torture; 0 skips the concurrent phase
    concurrency_rounds: int = DEFAULT_CONCURRENCY_ROUNDS
    #: use the model checker's results where they are for this target's code
    model_check: bool = True
    #: stop after the first failing phase (e.g. to time how fast a mutant is killed)
    stop_at_first_failure: bool = False
    #: Hypothesis example database (a directory or redis:// URL) shared with campaigns; None:
    #: no database (every run starts from its seed alone)
    database: str | None = None
    #: report files written after the run (None: not written)
    json: str | None = None
    markdown: str | None = None

    def __post_init__(self) -> None:
        for name in ("examples", "steps"):
            if getattr(self, name) < 1:
                raise PlanError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("explore_depth", "explore_states", "live_examples", "concurrency_rounds",
                     "seed"):
            if getattr(self, name) < 0:
                raise PlanError(f"{name} must be >= 0, got {getattr(self, name)}")
        seconds = self.explore_seconds
        if seconds is not None and (seconds != seconds or seconds < 0):
            raise PlanError("explore_seconds must be >= 0 (0 turns the exploration off), "
                            f"got {seconds}")

    @property
    def explores(self) -> bool:
        """Whether the plan runs the exhaustive exploration at all."""
        return self.explore_seconds != 0 and self.explore_depth > 0

    def with_(self, **changes: Any) -> Plan:
        """A copy with some fields changed (the plan itself never changes)."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        """The plan as a report records it and as a child process of the run receives it."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """The plan :meth:`to_json` wrote (PlanError for something that is not one)."""
        try:
            return cls(**data)
        except TypeError as exc:
            raise PlanError(f"not a recorded plan: {exc}") from None
