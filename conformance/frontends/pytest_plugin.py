"""pytest plugin: run the conformance suite inside a project's own test run.

    pytest --qsbr-impl mypackage.adapter:make [--qsbr-profile 3.14] [--qsbr-examples 200]

adds one test per fact (``qsbr[S-FREE-3]``, ...) plus ``qsbr[MISUSE]`` and ``qsbr[verdict]``,
so a failing fact shows up by name (and in ``--junitxml`` reports, class ``qsbr_conformance``).

The plugin is a front end like the command line: its options are the command line's with the
prefix ``--qsbr-``, generated from the same table (conformance.frontends.options, so no default
can differ), and become the same frozen plan and resolved target (conformance.checks.plan,
conformance.drivers.target); the same runner (conformance.checks.runner.run) runs every phase:
layout, comparisons, scenario, exhaustive, random, model check, live, concurrent.  For the same
plan and target every fact's status and the verdict are the command line's (its ``--json``
report is written with ``--qsbr-json``, and records the target for ``qsbr-conformance replay``).

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
usage error raised in ``pytest_configure`` of the main process; the run happens lazily, when the
first fact's item runs (a session-scoped holder, :class:`_Outcomes`; ``--collect-only`` runs
nothing).  Under xdist the controller runs it once, in ``pytest_configure_node`` before its
first worker starts, and hands the per-fact outcomes to every worker in ``workerinput``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from ..model import status as fact_statuses
from ..model.facts import FACTS, MISUSE

_OUTCOMES = pytest.StashKey["_Outcomes"]()
CLASSNAME = "qsbr_conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    from . import options

    group = parser.getgroup("qsbr-conformance", "QSBR conformance of an implementation")
    options.add_to_pytest(group)


def plan_and_target(config: pytest.Config, seed: int | None = None) -> tuple[Any, Any]:
    """The plugin's options as the runner's plan and target: the command line's, generated
    from the same table (conformance.frontends.options); pytest.UsageError if bad."""
    from ..checks.plan import new_seed
    from . import options
    from .common import UsageError

    values = {option.dest: config.getoption(f"qsbr_{option.dest}")
              for option in options.RUN_OPTIONS if "plugin" in option.fronts}
    if seed is None:
        seed = values["seed"] if values["seed"] is not None else new_seed()
    try:
        return options.plan_and_target(values, seed)
    except UsageError as exc:
        raise pytest.UsageError(f"--qsbr-impl {values['impl']}: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("qsbr_impl"):
        return
    config.stash[_OUTCOMES] = _Outcomes(config)
    if hasattr(config, "workerinput"):
        return
    if config.pluginmanager.hasplugin("xdist") and getattr(config.option, "numprocesses",
                                                           None):
        config.pluginmanager.register(_XdistHooks(config.stash[_OUTCOMES]),
                                      "qsbr-conformance-xdist")
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
    from .common import UsageError, check_output_path
    try:
        check_output_path(plan.json, "--qsbr-json")
        check_output_path(plan.markdown, "--qsbr-markdown")
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
    from . import common, options, report

    plan, target = plan_and_target(config)
    common.keep_hypothesis_out_of_cwd()
    replay = options.replay_command(plan, target)
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
    if plan.markdown:
        common.write_text(plan.markdown, report.to_markdown(result))
    return outcomes_of(result)


class _Outcomes:
    """The run's per-fact outcomes, made once per session, when an item first asks
    (:meth:`get`), not at collection; under pytest-xdist the controller makes them (in
    ``pytest_configure_node``, before its first worker starts) and hands them to every worker
    in its ``workerinput``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._outcomes: dict[str, Any] | None = None
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None and WORKER_KEY in workerinput:
            self._outcomes = workerinput[WORKER_KEY]

    @property
    def ready(self) -> bool:
        return self._outcomes is not None

    def get(self) -> dict[str, Any]:
        if self._outcomes is None:
            started = time.monotonic()
            outcomes = _run(self.config)
            outcomes["wall"] = time.monotonic() - started
            self._outcomes = outcomes
        return self._outcomes


#: The key of the outcomes in an xdist worker's ``workerinput``.
WORKER_KEY = "qsbr_conformance_outcomes"


class _XdistHooks:
    """Registered on the xdist controller only: the run happens there, once."""

    def __init__(self, outcomes: _Outcomes) -> None:
        self.outcomes = outcomes

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKER_KEY] = self.outcomes.get()


def _item_ids() -> list[str]:
    return [fact.id for fact in FACTS] + [MISUSE, "verdict"]


class QsbrCheckFailed(Exception):
    pass


class QsbrItem(pytest.Item):
    def __init__(self, *, fact: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fact = fact

    def runtest(self) -> None:
        outcomes = self.config.stash[_OUTCOMES].get()
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
    """Adds one item per fact; the run itself happens when the first of them runs."""
    if not config.getoption("qsbr_impl"):
        return
    for fact_id in _item_ids():
        # The node id's first part becomes the JUnit classname.
        items.append(QsbrItem.from_parent(session, name=f"qsbr[{fact_id}]", fact=fact_id,
                                          nodeid=f"{CLASSNAME}::qsbr[{fact_id}]"))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    holder = config.stash.get(_OUTCOMES, None)
    if holder is None or not holder.ready:
        return
    outcomes = holder.get()
    write = terminalreporter.write_line
    terminalreporter.section("qsbr-conformance")
    write(f"the suite ran once ({outcomes['seconds']:.1f} s, seed {outcomes['seed']}); "
          f"replay: {outcomes['replay']}")
    if outcomes.get("sequential_only"):
        write("passed from sequential checks only (shown as skipped): "
              + ", ".join(outcomes["sequential_only"])
              + (f" ({outcomes['concurrency']})" if outcomes.get("concurrency") else ""))
    write(outcomes.get("verdict", ""))
