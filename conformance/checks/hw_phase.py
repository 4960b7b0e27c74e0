"""The hardware phase of a C ABI library's default run, and its TSan phase.

After the concurrent torture, a run of a C ABI library (target kind ``cabi``) runs the hazards
litmus through the library's own exported functions (conformance.checks.cabi_hazards) under
its decide rule, bounded by ``cabi_hazards.DEFAULT_RUN_MAX`` iterations:

- a forbidden read-seqcst outcome fails S-ATTACH-1 and S-SAFE-1 (ledger source ``hardware``;
  the run fails);
- a conclusive clean result credits S-ATTACH-1 and S-SAFE-1 with source ``hardware`` (kind
  ``hardware``, shown ``H``), which can pass an ordering fact (conformance.model.status);
- an inconclusive one credits nothing and says so;
- either way the run's concurrency note names the orders this machine cannot show at all
  (x86-64: S-DETACH-1, S-QS-1, S-POLL-1) and where to check them (``torture --tsan``, Relacy):
  never a pass for an order nothing could have caught.

With ``QSBR_LIBRARY_TSAN`` naming the same library built with ``-fsanitize=thread``, the TSan
torture joins the run (conformance.checks.cabi_torture, ``tsan=True``) and credits, with source
``concurrent``, what ThreadSanitizer can fail: the release/acquire edges of detach and
quiescent_state and the grace-period contract.  TSan ignores ``atomic_thread_fence`` and
cannot tell a release store from a seq_cst one, so it credits neither S-ATTACH-1 nor S-POLL-1
(docs/concurrency.md, "What each check can fail").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from . import cabi_hazards, cabi_torture

#: what a clean TSan torture of a TSan build can vouch for (see the module docstring)
TSAN_FACTS = ("S-DETACH-1", "S-QS-1", "S-ADV-1", "S-RES-1", "S-REG-1", "S-UNREG-1",
              "S-POLL-2", "S-SAFE-1", "S-SAFE-2")
TSAN_ROUNDS = 40


def run_phase(result: Any, target: Any, plan: Any,
              say: Callable[[str], None] | None = None) -> None:
    """The hardware litmus (and, with $QSBR_LIBRARY_TSAN, the TSan torture) of a C ABI
    library, credited to ``result.ledger``; a no-op for other targets."""
    if getattr(target, "kind", None) != "cabi" or not getattr(target, "library", None) \
            or plan.concurrency_rounds <= 0 or result.interrupted:
        return
    result.phases.append("hardware")
    if say is not None:
        say("hardware litmus through the library's functions ...")
    try:
        _hardware(result, target.library, plan.seed or 1)
        tsan = os.environ.get("QSBR_LIBRARY_TSAN")
        if tsan:
            result.phases.append("tsan")
            if say is not None:
                say(f"TSan torture of {tsan} ...")
            _tsan(result, tsan, plan.seed or 1)
    except KeyboardInterrupt:
        result.interrupted = True


def _note(result: Any, text: str) -> None:
    result.concurrency = f"{result.concurrency}; {text}" if result.concurrency else text


def _hardware(result: Any, library: str, seed: int) -> None:
    from .runner import Failure

    try:
        report = cabi_hazards.run_library(library, seed=seed % (1 << 31), hazards=False,
                                          max_iterations=cabi_hazards.DEFAULT_RUN_MAX)
    except cabi_hazards.LitmusSetupError as exc:
        _note(result, f"no hardware litmus ran: {exc}")
        return
    unchecked = ", ".join(report.unchecked)
    elsewhere = (f"; orders this machine ({report.machine}) cannot show, unchecked by hardware: "
                 f"{unchecked} (check them with {cabi_hazards.ELSEWHERE})" if unchecked else "")
    if report.errors:
        _note(result, "hardware litmus: no verdict (" + "; ".join(report.errors) + ")"
              + elsewhere)
        return
    if report.failed_facts:
        for fact in report.failed_facts:
            result.ledger.failed((fact,), report.detail, source="hardware")
        result.failures.append(Failure("hardware litmus", report.failed_facts,
                                       f"{report.detail}; replay: qsbr-conformance hazards "
                                       f"--library {library} --seed {report.seed}"))
    elif report.credited_facts:
        result.ledger.passed(*report.credited_facts, source="hardware",
                             count=sum(s.iterations for s in report.shapes
                                       if s.shape == "read-seqcst" and not s.control))
    _note(result, f"hardware litmus (read-seqcst, {report.verdict}"
          + (" on this machine" if report.verdict == "inconclusive" else "")
          + f"): {report.detail}" + elsewhere)


def _tsan(result: Any, library: str, seed: int) -> None:
    from .runner import Failure

    if not os.path.exists(library) or not cabi_torture.library_has_tsan(library):
        _note(result, f"QSBR_LIBRARY_TSAN={library} is not a library built with "
                      "-fsanitize=thread: no TSan phase")
        return
    try:
        run = cabi_torture.run(library, rounds=TSAN_ROUNDS, updates=500, seed=seed, tsan=True)
    except cabi_torture.TortureSetupError as exc:
        _note(result, f"no TSan phase: {exc}")
        return
    if run.status == 0:
        result.ledger.passed(*TSAN_FACTS, source="concurrent", count=TSAN_ROUNDS)
        _note(result, f"TSan torture of {library}, {TSAN_ROUNDS} rounds: no race (TSan ignores "
                      "fences and treats seq_cst as acquire/release: S-ATTACH-1 and S-POLL-1's "
                      "fence are not judged by it)")
        return
    facts = tuple(run.failed_facts) or ("S-SAFE-1",)
    for fact in facts:
        result.ledger.failed((fact,), run.errors.get(fact, [run.verdict()])[0],
                             source="concurrent")
    result.failures.append(Failure("TSan torture", facts, run.verdict() + (
        "\n" + run.stacks if getattr(run, "stacks", "") else "")))
    _note(result, f"TSan torture of {library}: {run.verdict()}")
