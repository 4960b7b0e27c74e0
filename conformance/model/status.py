"""The one place that decides a fact's status from what was checked.

Front ends (text, Markdown and JSON reports, the pytest plugin) render these statuses; they never
decide one themselves.
"""

from __future__ import annotations

from .facts import FACT_BY_ID, MODEL_CHECKED_ONLY
from .ledger import FactLedger

PASS = "pass"
FAIL = "FAIL"
UNCHECKED = "UNCHECKED"
NOT_APPLICABLE = "n/a"


def fact_status(fact_id: str, ledger: FactLedger, *, profile: str,
                layout_checked: bool) -> str:
    """pass / FAIL / UNCHECKED / n/a for a fact id (or the MISUSE pseudo-id)."""
    fact = FACT_BY_ID.get(fact_id)
    if fact is not None and profile not in fact.profiles:
        return NOT_APPLICABLE
    if fact_id == "S-SLOT-2" and not layout_checked:
        return NOT_APPLICABLE
    if fact_id in ledger.failures:
        return FAIL
    if fact_id in MODEL_CHECKED_ONLY and not ledger.checks[fact_id]:
        return NOT_APPLICABLE
    return PASS if ledger.checks[fact_id] else UNCHECKED
