"""Counts the checks made for each fact id, and keeps the first failures of each."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class FactLedger:
    checks: Counter = field(default_factory=Counter)
    failures: dict[str, list[str]] = field(default_factory=dict)
    steps: int = 0
    examples: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def passed(self, *fact_ids: str) -> None:
        with self._lock:
            for fact_id in set(fact_ids):
                self.checks[fact_id] += 1

    def failed(self, fact_ids: set[str] | tuple[str, ...], detail: str) -> None:
        with self._lock:
            for fact_id in set(fact_ids):
                self.checks[fact_id] += 1
                self.failures.setdefault(fact_id, [])
                if len(self.failures[fact_id]) < 3:
                    self.failures[fact_id].append(detail)

    def merge(self, other: FactLedger) -> None:
        with self._lock:
            self.checks.update(other.checks)
            for fact_id, details in other.failures.items():
                mine = self.failures.setdefault(fact_id, [])
                mine.extend(details[: max(0, 3 - len(mine))])
            self.steps += other.steps
            self.examples += other.examples
