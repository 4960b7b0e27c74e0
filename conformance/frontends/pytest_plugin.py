"""pytest plugin: run the conformance suite inside a project's own test run.

    pytest --qsbr-impl mypackage.adapter:make [--qsbr-profile 3.14] [--qsbr-examples 200]

adds one test per fact (``qsbr[S-FREE-3]``, ...) plus ``qsbr[MISUSE]`` and ``qsbr[verdict]``,
so a failing fact shows up by name (and in ``--junitxml`` reports, class ``qsbr_conformance``).

The plugin is a front end like the command line: its options become the same frozen plan and
resolved target (conformance.checks.plan, conformance.drivers.target), and the same runner
(conformance.checks.runner.run) runs every phase: layout, comparisons, scenario, exhaustive,
random, model check, live, concurrent.  For the same plan and target every fact's status and
the verdict are the command line's (its ``--json`` report is written with ``--qsbr-json``).

How statuses are shown (docs/adapter-protocol.md, "The pytest plugin"):

- ``pass``: the test passes;
- ``pass (sequential only)`` (an ordering fact no concurrent or model-checking check of this
  implementation exercised): the test is SKIPPED, with a reason that starts with
  "pass (sequential only)" and says what would check it, so CI tools show it as not verified;
  the verdict still passes when the run conforms, as the command line's exit status is 0;
- ``FAIL`` and ``UNCHECKED``: the test fails (an UNCHECKED fact of a run that stopped at a
  failure says it was not reached, and why);
- ``n/a``: skipped with the reason.

Every fact's test carries JUnit properties ``qsbr_status`` (the status, exactly as the
command line's report has it), ``qsbr_checks``, ``qsbr_checked_by`` and ``qsbr_seed``, and
the terminal summary lists the facts passed only sequentially.

The suite runs once per session, and once in total under pytest-xdist: bad options are one
usage error raised in ``pytest_configure`` of the main process; the run happens at collection
time (the first worker to take an exclusive lock on a file named after the run's
``testrunuid`` runs it and writes the per-fact outcomes there as JSON; the others wait on the
lock, then read that file).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from ..model import status as fact_statuses
from ..model.facts import FACTS, MISUSE

_OUTCOMES = pytest.StashKey[dict[str, Any]]()
CLASSNAME = "qsbr_conformance"


def _number(kind: str):  # noqa: ANN202 - an argparse type
    def convert(text: str) -> Any:
        from . import common
        return getattr(common, kind)(text)
    convert.__name__ = kind
    return convert


def pytest_addoption(parser: pytest.Parser) -> None:
    from ..checks import plan as plans
    from ..model.profiles import CHOICES

    group = parser.getgroup("qsbr-conformance", "QSBR conformance of an implementation")
    group.addoption("--qsbr-impl", metavar="MODULE:FACTORY",
                    help="check this QSBR implementation (adapter protocol factory)")
    group.addoption("--qsbr-profile", choices=CHOICES, default=None,
                    help="CPython release range to check against (default: the factory's)")
    group.addoption("--qsbr-examples", type=_number("positive_int"),
                    default=plans.DEFAULT_EXAMPLES, metavar="N",
                    help=f"Hypothesis examples (default: {plans.DEFAULT_EXAMPLES})")
    group.addoption("--qsbr-steps", type=_number("positive_int"),
                    default=plans.DEFAULT_STEPS, metavar="N",
                    help=f"maximum steps per example (default: {plans.DEFAULT_STEPS})")
    group.addoption("--qsbr-seed", type=_number("nonnegative_int"), default=None, metavar="N",
                    help="seed of the run (default: a random one, shown in the summary)")
    group.addoption("--qsbr-explore-states", type=_number("nonnegative_int"),
                    default=plans.DEFAULT_EXPLORE_STATES, metavar="N",
                    help="distinct-states bound of the exhaustive exploration (0: none)")
    group.addoption("--qsbr-explore-seconds", type=float,
                    default=plans.DEFAULT_EXPLORE_SECONDS, metavar="SECONDS",
                    help="an added time bound of the exhaustive exploration (0: off)")
    group.addoption("--qsbr-explore-depth", type=_number("nonnegative_int"),
                    default=plans.DEFAULT_EXPLORE_DEPTH, metavar="N",
                    help="depth bound of the exhaustive exploration")
    group.addoption("--qsbr-live-examples", type=_number("nonnegative_int"),
                    default=plans.DEFAULT_LIVE_EXAMPLES, metavar="N",
                    help="live-interpreter sequences on a free-threaded build (0: skip)")
    group.addoption("--qsbr-concurrency-rounds", type=_number("nonnegative_int"),
                    default=plans.DEFAULT_CONCURRENCY_ROUNDS, metavar="N",
                    help="rounds of the concurrent torture (0: skip)")
    group.addoption("--qsbr-db", metavar="DIR_OR_URL", default=None,
                    help="Hypothesis example database shared with campaigns")
    group.addoption("--qsbr-json", metavar="PATH", default=None,
                    help="also write the run's JSON report (the command line's --json)")
    group.addoption("--qsbr-step-timeout", type=_number("positive_float"), default=10.0,
                    metavar="SECONDS",
                    help="with isolation: a call that runs longer is a hang (default: 10)")
    group.addoption("--qsbr-no-isolate", action="store_true",
                    help="run the implementation in the test process itself")


def plan_and_target(config: pytest.Config, seed: int | None = None) -> tuple[Any, Any]:
    """The plugin's options as the runner's plan and target (UsageError if bad)."""
    from ..checks.plan import Plan, PlanError, new_seed
    from ..drivers import target as targets

    option = config.getoption
    seed = option("--qsbr-seed") if seed is None else seed
    try:
        plan = Plan(seed=new_seed() if seed is None else seed,
                    examples=option("--qsbr-examples"), steps=option("--qsbr-steps"),
                    explore_seconds=option("--qsbr-explore-seconds"),
                    explore_states=option("--qsbr-explore-states"),
                    explore_depth=option("--qsbr-explore-depth"),
                    live_examples=option("--qsbr-live-examples"),
                    concurrency_rounds=option("--qsbr-concurrency-rounds"),
                    database=option("--qsbr-db"), json=option("--qsbr-json"))
        target = targets.resolve(option("--qsbr-impl"), option("--qsbr-profile"),
                                 isolate=not option("--qsbr-no-isolate"),
                                 step_timeout=option("--qsbr-step-timeout"))
    except (PlanError, targets.TargetError) as exc:
        raise pytest.UsageError(f"--qsbr-impl {option('--qsbr-impl')}: {exc}") from None
    return plan, target


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--qsbr-impl") or hasattr(config, "workerinput"):
        return
    # In the main process only: one usage error for options or an implementation that
    # cannot be loaded, before any test.
    from ..drivers.target import TargetError
    from ..drivers.target import close as close_target

    plan, target = plan_and_target(config, seed=0)
    if plan.database is not None:
        from ..checks.database import DatabaseError, open_database
        try:
            open_database(plan.database)
        except DatabaseError as exc:
            raise pytest.UsageError(str(exc)) from None
    if config.getoption("--qsbr-json"):
        from .common import UsageError, check_output_path
        try:
            check_output_path(config.getoption("--qsbr-json"), "--qsbr-json")
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
    try:
        impl = target.open()
    except TargetError as exc:
        raise pytest.UsageError(f"--qsbr-impl {target.spec}: {exc}") from None
    if target.isolate:
        close_target(impl)


def outcomes_of(result: Any) -> dict[str, Any]:
    """What each fact's test reports: {"facts": {id: {outcome, message, status, ...}}}."""
    from . import report

    rows = {row["id"]: row for row in report.rows(result)}
    failing = sorted({f for failure in result.failures for f in failure.facts}
                     | {fid for fid, row in rows.items() if row["result"] == fact_statuses.FAIL})
    replay = result.replay
    facts: dict[str, dict[str, Any]] = {}
    for fact_id in [fact.id for fact in FACTS] + [MISUSE]:
        row = rows[fact_id]
        status = row["result"]
        if status == fact_statuses.NOT_APPLICABLE:
            outcome, message = "skip", f"{fact_id}: n/a: {row['note']}"
        elif status == fact_statuses.PASS_SEQUENTIAL:
            outcome = "skip"
            message = (f"{fact_id}: pass (sequential only): no concurrent or model-checking "
                       f"check of this implementation exercised it"
                       + (f" ({result.concurrency})" if result.concurrency else "")
                       + (f"; to check it: {result.concurrency_command}"
                          if result.concurrency_command else ""))
        elif status == fact_statuses.UNCHECKED:
            outcome = "fail"
            if result.interrupted:
                message = f"{fact_id} was not reached: the run was interrupted"
            elif failing:
                message = (f"{fact_id} was not reached: the run stopped at its first failure "
                           f"({', '.join(failing)}); fix that first")
            else:
                message = f"{fact_id} was never exercised (raise --qsbr-examples)"
        elif status == fact_statuses.FAIL:
            details = list(row["failures"])
            details += [f.message + "".join(f"\n    {step}" for step in f.steps)
                        for f in result.failures if fact_id in f.facts]
            outcome = "fail"
            message = (f"{fact_id} failed:\n" + "\n".join(dict.fromkeys(details))
                       + f"\nreplay: {replay}")
        else:
            outcome, message = "pass", ""
        facts[fact_id] = {"outcome": outcome, "message": message, "status": status,
                          "checks": row["checks"], "checked_by": row["checked_by"]}
    verdict = report.verdict(result)
    facts["verdict"] = {"outcome": "pass" if result.conforms else "fail",
                        "message": "" if result.conforms
                        else report.to_text(result) + f"\nreplay: {replay}",
                        "status": verdict, "checks": sum(result.ledger.checks.values()),
                        "checked_by": []}
    sequential = [fid for fid in rows if rows[fid]["result"] == fact_statuses.PASS_SEQUENTIAL]
    return {"facts": facts, "seed": result.seed, "seconds": round(result.seconds, 3),
            "replay": replay, "verdict": verdict, "sequential_only": sequential,
            "concurrency": result.concurrency}


def _run(config: pytest.Config) -> dict[str, Any]:
    """Runs the suite in this process; per-fact outcomes (or one error for every fact)."""
    from ..checks import runner
    from ..drivers.target import TargetError
    from . import common, report

    plan, target = plan_and_target(config)
    common.keep_hypothesis_out_of_cwd()
    replay = common.replay_command(plan, target)
    try:
        result = runner.run(plan, target)
    except TargetError as exc:
        message = f"cannot load {target.spec}: {exc}"
        return {"facts": {fact_id: {"outcome": "fail", "message": message, "status": "error",
                                    "checks": 0, "checked_by": []} for fact_id in _item_ids()},
                "seed": plan.seed, "seconds": 0.0, "replay": replay, "verdict": message,
                "sequential_only": [], "concurrency": None}
    result.replay = replay
    result.options = {"front end": "pytest plugin", **plan.as_dict(), **target.describe()}
    if plan.json:
        report.write_json(result, plan.json)
    return outcomes_of(result)


def _shared_run(config: pytest.Config) -> dict[str, Any]:
    """Under xdist: the first worker runs the suite; the others read its outcomes."""
    base = _shared_base(config.workerinput["testrunuid"])      # type: ignore[attr-defined]
    with open(f"{base}.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # released when the run's outcomes are there
        done = Path(f"{base}.json")
        if done.exists():
            return json.loads(done.read_text(encoding="utf-8"))
        outcomes = _run(config)
        partial = Path(f"{base}.json.part")
        partial.write_text(json.dumps(outcomes), encoding="utf-8")
        partial.replace(done)
        return outcomes


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under xdist every worker has read the shared outcomes before any test ran."""
    workerinput = getattr(session.config, "workerinput", None)
    if workerinput is not None and _OUTCOMES in session.config.stash:
        base = _shared_base(workerinput["testrunuid"])
        for suffix in (".json", ".lock"):
            Path(f"{base}{suffix}").unlink(missing_ok=True)


def _shared_base(uid: str) -> Path:
    return Path(tempfile.gettempdir()) / f"qsbr-conformance-pytest-{os.getuid()}-{uid}"


def _item_ids() -> list[str]:
    return [fact.id for fact in FACTS] + [MISUSE, "verdict"]


class QsbrCheckFailed(Exception):
    pass


class QsbrItem(pytest.Item):
    def __init__(self, *, fact: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fact = fact

    def runtest(self) -> None:
        outcomes = self.config.stash[_OUTCOMES]
        entry = outcomes["facts"][self.fact]
        self.user_properties += [("qsbr_status", entry["status"]),
                                 ("qsbr_checks", entry["checks"]),
                                 ("qsbr_checked_by", ",".join(entry["checked_by"])),
                                 ("qsbr_seed", outcomes["seed"])]
        if entry["outcome"] == "skip":
            pytest.skip(entry["message"])
        if entry["outcome"] == "fail":
            raise QsbrCheckFailed(entry["message"])

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        if isinstance(excinfo.value, QsbrCheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "qsbr-conformance", None, self.name


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if not config.getoption("--qsbr-impl"):
        return
    if not config.option.collectonly:
        started = time.monotonic()
        config.stash[_OUTCOMES] = (_shared_run(config) if hasattr(config, "workerinput")
                                   else _run(config))
        config.stash[_OUTCOMES]["wall"] = time.monotonic() - started
    for fact_id in _item_ids():
        # The node id's first part becomes the JUnit classname.
        items.append(QsbrItem.from_parent(session, name=f"qsbr[{fact_id}]", fact=fact_id,
                                          nodeid=f"{CLASSNAME}::qsbr[{fact_id}]"))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    outcomes = config.stash.get(_OUTCOMES, None)
    if outcomes is None:
        return
    write = terminalreporter.write_line
    terminalreporter.section("qsbr-conformance")
    write(f"the suite ran once ({outcomes['seconds']:.1f} s, seed {outcomes['seed']}); "
          f"replay: {outcomes['replay']}")
    if outcomes.get("sequential_only"):
        write("passed from sequential checks only (shown as skipped): "
              + ", ".join(outcomes["sequential_only"])
              + (f" ({outcomes['concurrency']})" if outcomes.get("concurrency") else ""))
    write(outcomes.get("verdict", ""))
