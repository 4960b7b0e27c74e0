"""The one place that decides a fact's status from what was checked.

Front ends (text, Markdown and JSON reports, the pytest plugin) render these statuses; they never
decide one themselves.

A fact whose rule is about ordering or concurrency (``Fact.ordering``) is "pass" only if a
concurrent, model-checking or hardware check of THIS implementation exercised it (ledger kinds
"concurrent", "model-checked" or "hardware"; each source credits only the facts whose kind of
bug it can fail: docs/concurrency.md, "What each check can fail"); passed by sequential checks
alone it is "pass (sequential only)": nothing contradicted it, but nothing that could have told
a wrong implementation apart ran.  That status still conforms (exit status 0), and the verdict
says what was not checked.
"""

from __future__ import annotations

from .facts import FACT_BY_ID, MODEL_CHECKED_ONLY
from .ledger import KINDS, FactLedger

PASS = "pass"
PASS_SEQUENTIAL = "pass (sequential only)"
FAIL = "FAIL"
UNCHECKED = "UNCHECKED"
NOT_APPLICABLE = "n/a"
#: statuses with which a run still conforms
CONFORMING = (PASS, PASS_SEQUENTIAL, NOT_APPLICABLE)
#: the kinds of check that can pass an ordering fact
CONCURRENT_KINDS = frozenset({"concurrent", "model-checked", "hardware"})


def fact_status(fact_id: str, ledger: FactLedger, *, profile: str,
                layout_checked: bool) -> str:
    """pass / pass (sequential only) / FAIL / UNCHECKED / n/a for a fact id (or MISUSE)."""
    fact = FACT_BY_ID.get(fact_id)
    if fact is not None and profile not in fact.profiles:
        return NOT_APPLICABLE
    if fact_id == "S-SLOT-2" and not layout_checked:
        return NOT_APPLICABLE
    if fact_id in ledger.failures:
        return FAIL
    if fact_id in MODEL_CHECKED_ONLY and not ledger.checks[fact_id]:
        return NOT_APPLICABLE
    if not ledger.checks[fact_id]:
        return UNCHECKED
    if fact is not None and fact.ordering and not CONCURRENT_KINDS & ledger.kinds(fact_id):
        return PASS_SEQUENTIAL
    return PASS


def not_applicable_reason(fact_id: str, ledger: FactLedger, *, profile: str,
                          layout_checked: bool) -> str:
    """Why a fact is n/a for this run ("" when it is not n/a); front ends print this."""
    if fact_status(fact_id, ledger, profile=profile,
                   layout_checked=layout_checked) != NOT_APPLICABLE:
        return ""
    fact = FACT_BY_ID.get(fact_id)
    if fact is not None and profile not in fact.profiles:
        return f"not part of the {profile} profile"
    if fact_id in MODEL_CHECKED_ONLY:
        return ("only the model checker exercises it (make -C reference_c check-relacy; "
                "reference port only), and it has no results for this run")
    return "the implementation exposes no layout()"


def checked_by(fact_id: str, ledger: FactLedger) -> list[str]:
    """The kinds of check that exercised the fact, in a fixed order."""
    kinds = ledger.kinds(fact_id)
    return [kind for kind in KINDS if kind in kinds]
