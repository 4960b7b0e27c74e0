"""The concurrent phase of a conformance run: a bounded torture of the target itself.

Which torture runs depends on the target alone (conformance.drivers.target), never on the
front end or on isolation:

- the reference port and C ABI libraries: the C driver (reference_c/harness/cabi_torture.c)
  on the library, whose first rounds are also judged by the contract oracle;
- a Python adapter that declares ``thread_safe = True`` (isolated or not: the declaration
  travels with the target's capabilities): Python threads in a child process of their own
  (conformance.checks.concurrent_worker, given the serialised plan and target as every child
  of a run is), judged by the contract oracle, with a hang bound in charged time
  (conformance.drivers.patience);
- any other adapter: no concurrent check, and the result says why and what would check it.

Results are credited to the ledger with source ``concurrent``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any

from ..drivers.isolation import child_environment, python_command
from ..drivers.target import Capabilities, Target
from ..model import profiles
from .plan import Plan

#: The facts the Python-threads torture judges (its own checks and the contract oracle).
PYTHON_THREAD_FACTS = ("S-ATTACH-1", "S-DETACH-1", "S-QS-1", "S-ADV-1", "S-POLL-1",
                       "S-POLL-2", "S-SAFE-1", "S-SAFE-2")
#: Exercised concurrently only by the race probes (conformance.checks.races): a reserve that
#: grows beside an unregister, a register, a reserve.
RACE_PROBE_FACTS = ("S-RES-1", "S-REG-1", "S-UNREG-1")
#: Updates of the Python-threads torture per round of --concurrency-rounds.
UPDATES_PER_ROUND = 250


def library_for(target: Target, release: str | None) -> str | None:
    """The C ABI library the C driver can torture for this target, if there is one (for the
    reference port, the library built from the same sources as the bridge)."""
    if target.kind == "cabi":
        return target.library
    if target.kind != "reference":
        return None
    from .. import sources
    try:
        source = sources.workspace()
    except OSError:             # no sources (SourcesNotFound), or the cache is not writable
        return None
    folder = profiles.build_folder(release or "3.13")
    path = source / "build" / folder / "libqsbr.so"
    if not path.exists():
        subprocess.run(["make", "-C", str(source), "--no-print-directory", "lib",
                        f"PROFILE={folder}"], capture_output=True)
    return str(path) if path.exists() else None


def torture_progress(stdout: str, stderr: str) -> tuple[str, ...]:
    """The last progress line's update, free and race-probe round counts
    (conformance.checks.concurrent_worker)."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("progress "):
            # (race_rounds: the race probes' progress, before the first update)
            return tuple(re.findall(r"\b(?:updates|frees|race_rounds)=(\d+)", line))
    return ()


def run_phase(result: Any, plan: Plan, target: Target, capabilities: Capabilities,
              failure_type: Any) -> None:
    """The bounded concurrent torture of the target (``plan.concurrency_rounds`` rounds),
    credited to ``result.ledger``; a failure is a ``failure_type`` (the runner's record) in
    ``result.failures``."""
    rounds, seed = plan.concurrency_rounds, plan.seed
    if rounds <= 0:
        result.concurrency = "the concurrent torture was skipped (--concurrency-rounds 0)"
        result.concurrency_command = (f"qsbr-conformance --impl {target.spec} "
                                      "--concurrency-rounds 12")
        return
    library = library_for(target, capabilities.release or target.release)
    if library is not None:
        _c_driver(result, target, library, rounds, seed, failure_type)
        return
    if target.kind == "cabi":
        result.concurrency = ("no concurrent check ran: $QSBR_LIBRARY names no library for "
                              "the C driver")
        result.concurrency_command = ("QSBR_LIBRARY=LIB qsbr-conformance torture --impl "
                                      "conformance.cabi:from_env")
        return
    if not capabilities.thread_safe:
        result.concurrency = (f"no concurrent check ran: {target.spec} does not declare "
                              "thread_safe = True (docs/adapter-protocol.md, 'Thread safety')")
        result.concurrency_command = ("declare thread_safe = True if it is, then "
                                      f"qsbr-conformance torture --impl {target.spec} "
                                      "--python-threads")
        return
    _python_threads(result, plan, target, failure_type)


def _c_driver(result: Any, target: Target, library: str, rounds: int, seed: int,
              failure_type: Any) -> None:
    from . import cabi_torture

    ledger = result.ledger
    folder = library.split(os.sep)[-2] if target.kind == "reference" else ""
    tsan_library = (f"reference_c/build/tsan/{folder}/libqsbr.so (make -C reference_c lib "
                    f"SANITIZE=thread BUILD=build/tsan PROFILE={folder})"
                    if target.kind == "reference"
                    else "LIB, with LIB your library built with -fsanitize=thread")
    result.concurrency_command = ("memory orders under ThreadSanitizer: qsbr-conformance "
                                  f"torture --tsan --seconds 60 --library {tsan_library}")
    try:
        run = cabi_torture.run(library, rounds=rounds, seed=seed or 1, history=True,
                               history_rounds=2, stop_on_error=True)
    except cabi_torture.TortureSetupError as exc:
        result.concurrency = f"no concurrent check ran: {exc}"
        return
    contract = run.contract
    oracle = (f"; contract oracle judged {contract.safety_checked} true and "
              f"{contract.liveness_checked} false polls" if contract is not None else "")
    result.concurrency = (f"C ABI torture, {rounds} rounds, plain build: memory-order "
                          f"bugs need the TSan mode{oracle}")
    if run.status == 0:
        ledger.passed(*cabi_torture.CHECKED_FACTS, source="concurrent", count=rounds)
        return
    facts = tuple(run.failed_facts) or ("S-SAFE-2",)
    for fact in facts:
        details = run.errors.get(fact, [run.verdict()])
        ledger.failed((fact,), details[0], source="concurrent")
    result.failures.append(failure_type("concurrent torture", facts, run.verdict()))


def _python_threads(result: Any, plan: Plan, target: Target, failure_type: Any) -> None:
    from ..drivers.patience import run_watched

    ledger = result.ledger
    updates = plan.concurrency_rounds * UPDATES_PER_ROUND
    result.concurrency_command = ("a long run on a free-threaded build: qsbr-conformance "
                                  f"torture --impl {target.spec} --python-threads --seconds 60")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "torture.json")
        request = os.path.join(tmp, "request.json")
        # The driver-level worker (conformance.checks.concurrent_worker) in a child process
        # of its own, whether the run is isolated or not: the torture's threads must not
        # share the harness's process (a crash is a failure, not the end).  It gets the plan
        # and the target as every child of a run does (their JSON), kwargs included.
        with open(request, "w", encoding="utf-8") as handle:
            json.dump({"plan": plan.to_json(), "target": target.to_json(), "updates": updates,
                       "readers": 3, "writers": 2, "out": out}, handle)
        command = python_command("conformance.checks.concurrent_worker", request)
        # A hang is 300 s charged without an update or a free (its progress lines, on
        # stderr): time its threads spent waiting for a CPU is not charged, so a busy machine
        # only makes it slower (conformance.drivers.patience).
        proc = run_watched(command, budget=300, progress=torture_progress,
                           env=child_environment(), what="the Python-threads torture")
        if proc.hung is not None or not os.path.exists(out):
            detail = (proc.hung if proc.hung is not None else
                      f"the Python-threads torture exited with {proc.returncode}: "
                      f"{(proc.stdout + proc.stderr).strip().splitlines()[-1:]}")
            ledger.failed(("S-SAFE-2",), detail, source="concurrent")
            result.failures.append(failure_type("concurrent torture", ("S-SAFE-2",), detail))
            result.concurrency = "Python-threads torture: " + detail
            return
        with open(out, encoding="utf-8") as handle:
            data = json.load(handle)
    stats = data["stats"]
    judged: dict = stats.get("contract") or {}
    gil = "on" if getattr(sys, "_is_gil_enabled", lambda: True)() else "off"
    result.concurrency = (f"Python-threads torture in a child process, {updates} updates, "
                          f"GIL {gil}; contract oracle judged "
                          f"{judged.get('safety_checked', 0)} true and "
                          f"{judged.get('liveness_checked', 0)} false polls"
                          + (_race_line(stats["races"]) if stats.get("races") else "")
                          + (f"; evidence: {stats['evidence']}" if stats.get("evidence")
                             else ""))
    failures: dict[str, list[str]] = dict(judged.get("errors", {}))
    if stats.get("errors_reclaimed"):
        failures.setdefault("S-SAFE-1", []).append(
            f"a reader saw a reclaimed object {stats['errors_reclaimed']} time(s)")
    if stats.get("resources"):
        failures.setdefault("S-RES-1", []).append(stats["resources"])
    if stats.get("harness_errors"):
        failures.setdefault("S-SAFE-2", []).append("; ".join(stats["harness_errors"][:2]))
    if data["status"] == 2 and not failures:
        failures["S-SAFE-2"] = ["nothing was reclaimed"]
    if not failures:
        facts = PYTHON_THREAD_FACTS + (RACE_PROBE_FACTS if stats.get("races") else ())
        ledger.passed(*facts, source="concurrent", count=plan.concurrency_rounds)
        return
    for fact, details in failures.items():
        ledger.failed((fact,), details[0], source="concurrent")
    failure = failure_type("concurrent torture", tuple(sorted(failures)),
                           "; ".join(f"{f}: {d[0]}" for f, d in failures.items()))
    replays = (stats.get("races") or {}).get("replay") or {}
    if replays and hasattr(failure, "replay"):
        failure.replay = next(iter(replays.values()))   # the race probe that failed
    result.failures.append(failure)


def _race_line(races: dict) -> str:
    """The race probes on the concurrency line: rounds, the protocol's pairs covered (and
    those not), and the pauses that waited out their limit."""
    line = (f"; {races['rounds']} race-probe rounds covering {races.get('pairs_covered', 0)} "
            f"of {races.get('pairs', 0)} operation pairs the protocol allows")
    if races.get("pairs_not_covered"):
        line += f" (not covered: {', '.join(races['pairs_not_covered'])})"
    if races.get("escapes"):
        line += (f"; {races['escapes']} stepped round(s) waited out their "
                 f"{races.get('escape_seconds', 2):g} s limit: a lock the probes did not find "
                 "(declare it with race_locks(), docs/adapter-protocol.md), so those rounds "
                 "ran another interleaving and the run was slower")
    return line
