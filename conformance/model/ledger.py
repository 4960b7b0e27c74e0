"""Counts the checks made for each fact id, by source, and keeps the first failures of each.

A *source* says where a check came from; each source belongs to one *kind* of checking, and the
kinds are what a fact's status is decided from (conformance.model.status):

    source        kind            what it is
    layout        sequential      sizeof/offsetof from the adapter's layout()
    comparisons   sequential      QSBR_LT/QSBR_LEQ against the oracle
    scenario      sequential      the fixed coverage scenario
    exhaustive    sequential      bounded-exhaustive differential exploration
    random        sequential      Hypothesis' random step sequences
    concurrent    concurrent      a torture of this implementation, judged by the contract oracle
    model-checked model-checked   a model checker's result for this implementation's code
    live          live            the running free-threaded interpreter
    hardware      hardware        a litmus through this implementation's own functions on this
                                  machine, decided conclusive (conformance.checks.cabi_hazards)

``ledger.source`` is the source credited when a call names none; a check sets it for the
duration of its run (``with ledger.crediting("exhaustive"): ...``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

#: source -> kind
SOURCES: dict[str, str] = {
    "layout": "sequential",
    "comparisons": "sequential",
    "scenario": "sequential",
    "exhaustive": "sequential",
    "random": "sequential",
    "concurrent": "concurrent",
    "model-checked": "model-checked",
    "live": "live",
    "hardware": "hardware",
}
KINDS: tuple[str, ...] = ("sequential", "concurrent", "model-checked", "live", "hardware")


@dataclass
class FactLedger:
    #: source -> fact id -> number of checks
    by_source: dict[str, Counter] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    steps: int = 0
    examples: int = 0
    source: str = "random"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _source(self, source: str | None) -> str:
        source = self.source if source is None else source
        if source not in SOURCES:
            raise ValueError(f"unknown check source {source!r} (known: {', '.join(SOURCES)})")
        return source

    @contextmanager
    def crediting(self, source: str) -> Iterator[None]:
        """Credit checks made inside the block to ``source`` (unless they name another)."""
        previous, self.source = self.source, self._source(source)
        try:
            yield
        finally:
            self.source = previous

    def passed(self, *fact_ids: str, source: str | None = None, count: int = 1) -> None:
        """``count`` checks of each fact passed (one per round of a torture, say)."""
        source = self._source(source)
        with self._lock:
            counter = self.by_source.setdefault(source, Counter())
            for fact_id in set(fact_ids):
                counter[fact_id] += count

    def failed(self, fact_ids: set[str] | tuple[str, ...], detail: str,
               source: str | None = None) -> None:
        source = self._source(source)
        with self._lock:
            counter = self.by_source.setdefault(source, Counter())
            for fact_id in set(fact_ids):
                counter[fact_id] += 1
                self.failures.setdefault(fact_id, [])
                if len(self.failures[fact_id]) < 3:
                    self.failures[fact_id].append(detail)

    @property
    def checks(self) -> Counter:
        """Checks per fact id, all sources together."""
        total: Counter = Counter()
        for counter in self.by_source.values():
            total.update(counter)
        return total

    def counts_by_source(self, fact_id: str) -> dict[str, int]:
        return {source: counter[fact_id] for source, counter in self.by_source.items()
                if counter[fact_id]}

    def counts_by_source_total(self, source: str) -> int:
        """Checks credited to ``source``, all facts together."""
        return sum(self.by_source.get(source, Counter()).values())

    def kinds(self, fact_id: str) -> set[str]:
        """The kinds of checking (sequential, concurrent, ...) that exercised this fact."""
        return {SOURCES[source] for source in self.counts_by_source(fact_id)}

    def merge(self, other: FactLedger) -> None:
        with self._lock:
            for source, counter in other.by_source.items():
                self.by_source.setdefault(source, Counter()).update(counter)
            for fact_id, details in other.failures.items():
                mine = self.failures.setdefault(fact_id, [])
                mine.extend(details[: max(0, 3 - len(mine))])
            self.steps += other.steps
            self.examples += other.examples
