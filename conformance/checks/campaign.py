"""Campaigns: the differential state machine fuzzed by HypoFuzz on N worker processes.

:func:`run_campaign` writes a test module for the implementation
(conformance.checks.campaign_target), starts ``hypothesis fuzz -n N`` on it (HypoFuzz:
Hypothesis' coverage-guided, multi-process fuzzer) with a shared example database, and stops
it on the budget: a number of examples (counted by the workers themselves), a time, or the
first failure once HypoFuzz has shrunk it and stored it in the database.  The shrunk failure
is then replayed from the database by the run's own random phase (Hypothesis' reuse phase),
which is what a normal run with ``--db`` of the same database does first.

HypoFuzz itself runs until every test has failed or it is stopped: the budget is kept here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..drivers.target import close
from ..model import errors
from ..model.ledger import FactLedger
from .database import open_database, set_machine_key
from .plan import DEFAULT_STEPS

#: Seconds between two looks at the workers' counts.
_POLL = 0.25


def database_key(impl: Any, identity: str | None = None) -> bytes:
    """The key under which Hypothesis (and HypoFuzz) store the machine's examples for the
    target of this ``identity`` (conformance.drivers.target.Target.identity; default: the
    implementation's own, conformance.checks.database.identity_of)."""
    from hypothesis.internal.reflection import function_digest
    from hypothesis.stateful import get_state_machine_test

    from .campaign_target import machine_settings
    from .differential import make_machine

    machine = make_machine(impl, FactLedger())
    set_machine_key(machine, identity or impl)
    test = get_state_machine_test(machine, settings=machine_settings(60, None))
    return function_digest(test.hypothesis.inner_test)


@dataclass
class CampaignResult:
    implementation: str
    spec: str
    profile: str
    workers: int
    db: str
    steps: int
    hypofuzz: str
    seconds: float = 0.0
    examples: int = 0
    checked_steps: int = 0
    #: why it stopped: "examples", "seconds", "failure", "interrupted" or "exited"
    stopped_by: str = ""
    #: per worker: pid, examples, steps, seconds fuzzing, examples per second
    per_worker: list[dict[str, Any]] = field(default_factory=list)
    #: the first failure a worker reported (facts, message, its examples and seconds)
    first_found: dict[str, Any] | None = None
    #: total examples (all workers) when the first failure was reported
    examples_at_find: int | None = None
    #: the failure replayed from the database (conformance.checks.runner.Failure) or None
    failure: Any = None
    #: what went wrong around the fuzzer (it exited by itself, with this output)
    problem: str = ""
    command: list[str] = field(default_factory=list)
    #: the target fuzzed (conformance.drivers.target.Target)
    target: Any = None

    @property
    def examples_per_second(self) -> float:
        return sum(w["examples_per_second"] for w in self.per_worker)

    @property
    def examples_per_second_per_worker(self) -> float:
        return self.examples_per_second / len(self.per_worker) if self.per_worker else 0.0

    def to_json(self) -> dict[str, Any]:
        failure = self.failure
        return {
            "implementation": self.implementation, "impl": self.spec, "profile": self.profile,
            "workers": self.workers, "db": self.db, "steps_per_example": self.steps,
            "hypofuzz": self.hypofuzz, "seconds": round(self.seconds, 3),
            "examples": self.examples, "checked_steps": self.checked_steps,
            "stopped_by": self.stopped_by,
            "examples_per_second": round(self.examples_per_second, 2),
            "examples_per_second_per_worker": round(self.examples_per_second_per_worker, 2),
            "per_worker": self.per_worker, "first_found": self.first_found,
            "examples_at_find": self.examples_at_find, "problem": self.problem,
            "found": None if failure is None else {
                "check": failure.check, "from_database": self.db,
                "facts": list(failure.facts), "message": failure.message,
                "steps": list(failure.steps), "diff": list(failure.diff),
                "step_records": [r.to_json() for r in failure.records]},
            "command": self.command,
            "target": self.target.to_json() if self.target is not None else None,
        }


def _read_workers(state_dir: Path) -> list[dict[str, Any]]:
    workers = []
    for path in sorted(state_dir.glob("worker-*.json")):
        try:
            workers.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue        # being replaced right now: read it next time
    return workers


def _summarise(result: CampaignResult, workers: list[dict[str, Any]]) -> None:
    result.examples = sum(w["examples"] for w in workers)
    result.checked_steps = sum(w["steps"] for w in workers)
    result.per_worker = []
    for w in workers:
        # From the end of its first example to its last count: start-up (imports, pytest's
        # collection, HypoFuzz's set-up) is left out.
        seconds = w["updated"] - (w.get("first_example") or w["updated"])
        rate = (w["examples"] - 1) / seconds if seconds > 0 else 0.0
        result.per_worker.append({
            "pid": w["pid"], "examples": w["examples"], "steps": w["steps"],
            "failed_examples": w["failed_examples"], "seconds": round(seconds, 3),
            "examples_per_second": round(rate, 2)})


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT to HypoFuzz's process group (hub, manager and workers), then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    try:                    # workers that outlived the hub
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_campaign(target: Any, *, workers: int, db: str, seconds: float | None = None,
                 examples: int | None = None, steps: int = DEFAULT_STEPS,
                 dashboard: bool = False, port: int = 9999,
                 progress: Callable[[CampaignResult], None] | None = None,
                 workdir: str | None = None) -> CampaignResult:
    """Fuzz ``target`` (conformance.drivers.target.Target) with ``workers`` HypoFuzz processes
    until the budget is spent (``examples`` in all, or ``seconds``; neither: until a failure or
    Ctrl-C) or a failure is found and stored; then replay what the database holds for it.
    The workers open the same target (its JSON, conformance.checks.campaign_target)."""
    from importlib import metadata

    import hypofuzz  # noqa: F401 - fail here, not in the child, when it is not installed

    database = open_database(db)
    impl = target.open()
    identity = target.identity(impl.profile, getattr(impl, "release", None))
    try:
        key = database_key(impl, identity)
        config = {"target": target.to_json(), "identity": identity, "line": impl.profile,
                  "release": getattr(impl, "release", None), "name": impl.name,
                  "steps": steps, "db": db, "workers": workers}
        result = CampaignResult(impl.name, target.spec, impl.profile, workers, db, steps,
                                metadata.version("hypofuzz"))
        result.target = target
    finally:
        close(impl)

    folder = Path(workdir or tempfile.mkdtemp(prefix="qsbr-campaign-"))
    try:
        return _fuzz(folder, config, result, database, key, seconds, examples, workers,
                     dashboard, port, progress, target, steps)
    finally:
        if workdir is None:
            shutil.rmtree(folder, ignore_errors=True)


def _fuzz(folder: Path, config: dict[str, Any], result: CampaignResult, database: Any,
          key: bytes, seconds: float | None, examples: int | None, workers: int,
          dashboard: bool, port: int, progress: Callable[[CampaignResult], None] | None,
          target: Any, steps: int) -> CampaignResult:
    stored_before = set(database.fetch(key))
    state_dir = folder / "workers"
    state_dir.mkdir(parents=True, exist_ok=True)
    config["state_dir"] = str(state_dir)
    (folder / "campaign.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    from .campaign_target import TEST_MODULE
    test_file = folder / "test_qsbr_campaign.py"
    test_file.write_text(TEST_MODULE.format(config=str(folder / "campaign.json")),
                         encoding="utf-8")

    # -P: the working folder (a checkout) must not shadow what this process imports.
    command = [sys.executable, "-P", "-c",
               "import sys, hypofuzz.entrypoint; from hypothesis.extra.cli import main; "
               "sys.exit(main())",
               "fuzz", "-n", str(workers)]
    command += ["--dashboard", "--port", str(port)] if dashboard else ["--no-dashboard"]
    command += ["--", str(test_file), "-p", "no:cacheprovider", "-q"]
    result.command = command
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.pop("PYTHONNODEBUGRANGES", None)
    log = tempfile.TemporaryFile()
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=folder, env=env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, process_group=0)

    def confirm() -> Any:
        """What a run would replay from the database now (None: nothing that fails yet)."""
        impl = target.open()
        try:
            return replay_from_database(impl, database, steps, config["identity"])
        finally:
            close(impl)

    try:
        result.stopped_by = _watch(proc, result, state_dir, database, key, stored_before,
                                   started, seconds, examples, progress, confirm)
    except KeyboardInterrupt:
        result.stopped_by = "interrupted"
    finally:
        _stop(proc)
        result.seconds = time.monotonic() - started
        _summarise(result, _read_workers(state_dir))
        log.seek(0)
        output = log.read().decode(errors="replace")
        log.close()
    if result.stopped_by == "exited" and result.first_found is None:
        found = [w for w in _read_workers(state_dir) if w.get("first_failure")]
        if found:           # it found and exited between two looks of the watch
            first = min(found, key=lambda w: w["first_failure"]["seconds"])
            result.first_found = dict(first["first_failure"], pid=first["pid"])
            result.examples_at_find = result.examples
    if result.stopped_by == "exited" and result.first_found is not None:
        # HypoFuzz stops by itself once every test it fuzzes has failed ("Found a failing
        # input for every test!"), which may come before the failure was seen stored: a find.
        result.stopped_by = "failure"
    if result.stopped_by == "exited":
        result.problem = (f"HypoFuzz exited with status {proc.returncode}: "
                          + " | ".join(output.strip().splitlines()[-30:]))
    if result.failure is None and (result.first_found is not None
                                   or result.stopped_by == "failure"):
        result.failure = confirm()
    if result.failure is not None:
        result.failure.from_database = result.db
    return result


def _watch(proc: subprocess.Popen[bytes], result: CampaignResult, state_dir: Path,
           database: Any, key: bytes, stored_before: set[bytes], started: float,
           seconds: float | None, examples: int | None,
           progress: Callable[[CampaignResult], None] | None,
           confirm: Callable[[], Any] | None = None) -> str:
    checked: set[bytes] = set()
    while True:
        time.sleep(_POLL)
        workers = _read_workers(state_dir)
        _summarise(result, workers)
        result.seconds = time.monotonic() - started
        if result.first_found is None:
            found = [w for w in workers if w.get("first_failure")]
            if found:
                first = min(found, key=lambda w: w["first_failure"]["seconds"])
                result.first_found = dict(first["first_failure"], pid=first["pid"])
                result.examples_at_find = result.examples
        if progress is not None:
            progress(result)
        if proc.poll() is not None:
            return "exited"
        if result.first_found is not None:
            # Stop once the failure is in the database where a run replays it: an entry that
            # a replay of the database fails on (HypoFuzz also stores examples that do not
            # fail, and replaces a failure by smaller ones while it shrinks).
            stored = set(database.fetch(key)) - stored_before
            if stored and stored != checked:
                checked = stored
                if confirm is None:
                    return "failure"
                result.failure = confirm()
                if result.failure is not None:
                    return "failure"
        if examples is not None and result.examples >= examples:
            return "examples"
        if seconds is not None and result.seconds >= seconds:
            return "seconds"


def replay_from_database(impl: Any, database: Any, steps: int,
                         identity: str | None = None) -> Any:
    """What a run's random phase replays first from ``database`` for ``impl`` under the key of
    ``identity`` (a target's; default: the implementation's own) (Hypothesis' reuse phase,
    then shrinking): a runner.Failure with the step records, or None."""
    from hypothesis import Phase
    from hypothesis.stateful import run_state_machine_as_test

    from .campaign_target import machine_settings
    from .differential import ConformanceFailure, make_machine
    from .runner import _random_failure

    key = database_key(impl, identity)
    if not any(True for _ in database.fetch(key)) and \
            not any(True for _ in database.fetch(key + b".secondary")):
        return None     # nothing stored (Hypothesis would call a run of nothing a skip)
    ledger = FactLedger()
    machine = make_machine(impl, ledger)
    set_machine_key(machine, identity or impl)
    settings = machine_settings(steps, database)
    from hypothesis import settings as settings_class
    settings = settings_class(settings, phases=[Phase.reuse, Phase.shrink], max_examples=1)
    try:
        run_state_machine_as_test(machine, settings=settings)
    except unittest.SkipTest:
        # Entries were stored for this implementation but none could be replayed (Hypothesis
        # drops one that no longer parses as a run of this machine): nothing to replay.  Left
        # alone, the skip would escape into the caller and skip a test that called the run.
        return None
    except ConformanceFailure as exc:
        return _random_failure(machine, exc.facts, str(exc), exc)
    except errors.QsbrError as exc:
        from ..model.facts import MISUSE
        return _random_failure(machine, (MISUSE,), f"{type(exc).__name__}: {exc}", exc)
    return None
