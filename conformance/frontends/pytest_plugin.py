"""pytest plugin: run the conformance suite inside a project's own test run.

    pytest --qsbr-impl mypackage.adapter:make [--qsbr-profile 3.14] [--qsbr-examples 200]

adds one test per fact (``qsbr[S-FREE-3]``, ...) plus ``qsbr[verdict]``, so a failing fact
shows up by name (and in ``--junitxml`` reports, class ``qsbr_conformance``).  The
implementation runs isolated in a child process unless ``--qsbr-no-isolate`` is given.

The suite runs once per session, and once in total under pytest-xdist:

- bad options (``--qsbr-examples 0``, ``--qsbr-impl nosuch:f``, a factory that returns None)
  are one usage error, raised in ``pytest_configure`` of the main process, before any test;
- the run itself happens at collection time, so no test's time includes it: each fact's test
  only reads the result, and reports its own (tiny) time.  Without xdist the process runs it.
  Under xdist every worker collects; the first to take an exclusive lock on a file named after
  the run's ``testrunuid`` (shared by all workers of one run) runs the suite and writes the
  per-fact outcomes there as JSON; the others wait on the lock, then read that file.
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
from ..model.adapter import PROFILES
from ..model.facts import FACTS, MISUSE

_OUTCOMES = pytest.StashKey[dict[str, Any]]()
CLASSNAME = "qsbr_conformance"


def _positive_int(text: str) -> int:
    from .common import positive_int
    return int(positive_int(text))


def _positive_float(text: str) -> float:
    from .common import positive_float
    return float(positive_float(text))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qsbr-conformance", "QSBR conformance of an implementation")
    group.addoption("--qsbr-impl", metavar="MODULE:FACTORY",
                    help="check this QSBR implementation (adapter protocol factory)")
    group.addoption("--qsbr-profile", choices=PROFILES, default=None,
                    help="CPython revision to check against (default: the factory's)")
    group.addoption("--qsbr-examples", type=_positive_int, default=100, metavar="N",
                    help="Hypothesis examples for the differential run (default: 100)")
    group.addoption("--qsbr-seed", type=int, default=None, metavar="N",
                    help="seed of the run (default: a random one, shown in each fact's "
                         "report)")
    group.addoption("--qsbr-step-timeout", type=_positive_float, default=10.0,
                    metavar="SECONDS",
                    help="with isolation: a call that runs longer is a hang (default: 10)")
    group.addoption("--qsbr-no-isolate", action="store_true",
                    help="run the implementation in the test process itself")


def _kwargs(config: pytest.Config) -> dict[str, Any]:
    profile = config.getoption("--qsbr-profile")
    return {"profile": profile} if profile else {}


def _load(config: pytest.Config) -> Any:
    from ..drivers.isolation import IsolatedImplementation
    from ..model.adapter import load_implementation

    spec = config.getoption("--qsbr-impl")
    if config.getoption("--qsbr-no-isolate"):
        return load_implementation(spec, **_kwargs(config))
    return IsolatedImplementation(spec, config.getoption("--qsbr-step-timeout"),
                                  **_kwargs(config))


def _close(impl: Any) -> None:
    if hasattr(impl, "close"):
        impl.close()


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--qsbr-impl") or hasattr(config, "workerinput"):
        return
    # In the main process only: one usage error for an implementation that cannot be loaded.
    from ..model.adapter import AdapterError
    from ..model.errors import QsbrError

    spec = config.getoption("--qsbr-impl")
    try:
        impl = _load(config)
    except (AdapterError, QsbrError) as exc:
        raise pytest.UsageError(f"--qsbr-impl {spec}: cannot load it: {exc}") from None
    _close(impl)


def _outcomes_of(result: Any, replay: str) -> dict[str, Any]:
    """What each fact's test reports: {"facts": {id: [outcome, message]}, ...}."""
    from . import report

    facts: dict[str, list[str]] = {}
    for fact_id in [fact.id for fact in FACTS] + [MISUSE]:
        if fact_id != MISUSE and result.profile not in _fact_profiles(fact_id):
            facts[fact_id] = ["skip", f"{fact_id} is not part of the {result.profile} profile"]
            continue
        status = result.fact_status(fact_id)
        if status == "n/a":
            reason = fact_statuses.not_applicable_reason(
                fact_id, result.ledger, profile=result.profile,
                layout_checked=result.layout_checked)
            facts[fact_id] = ["skip", f"{fact_id}: {reason}"]
        elif status == "UNCHECKED":
            facts[fact_id] = ["fail", f"{fact_id} was never exercised (raise --qsbr-examples)"]
        elif status == "FAIL":
            details = list(result.ledger.failures.get(fact_id, []))
            details += [f.message + "".join(f"\n    {step}" for step in f.steps)
                        for f in result.failures if fact_id in f.facts]
            facts[fact_id] = ["fail", f"{fact_id} failed:\n" + "\n".join(dict.fromkeys(details))
                              + f"\nreplay: {replay}"]
        else:
            facts[fact_id] = ["pass", ""]
    facts["verdict"] = (["pass", ""] if result.conforms
                        else ["fail", report.to_text(result) + f"\nreplay: {replay}"])
    return {"facts": facts, "seed": result.seed, "seconds": round(result.seconds, 3),
            "replay": replay}


def _run(config: pytest.Config) -> dict[str, Any]:
    """Runs the suite in this process; per-fact outcomes (or one error for every fact)."""
    import shlex

    from ..checks.runner import new_seed, run_conformance
    from ..model.adapter import AdapterError
    from ..model.errors import QsbrError

    spec = config.getoption("--qsbr-impl")
    seed = config.getoption("--qsbr-seed")
    seed = new_seed() if seed is None else seed
    examples = config.getoption("--qsbr-examples")
    replay = shlex.join(["qsbr-conformance", "--impl", spec, "--examples", str(examples),
                         "--seed", str(seed)]
                        + (["--profile", config.getoption("--qsbr-profile")]
                           if config.getoption("--qsbr-profile") else [])
                        + (["--no-isolate"] if config.getoption("--qsbr-no-isolate")
                           else ["--isolate"]))
    try:
        impl = _load(config)
    except (AdapterError, QsbrError) as exc:
        message = f"cannot load {spec}: {exc}"
        return {"facts": {fact_id: ["fail", message] for fact_id in _item_ids()},
                "seed": seed, "seconds": 0.0, "replay": replay}
    try:
        result = run_conformance(impl, examples=examples, seed=seed)
    finally:
        _close(impl)
    return _outcomes_of(result, replay)


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


def _fact_profiles(fact_id: str) -> tuple[str, ...]:
    return next((f.profiles for f in FACTS if f.id == fact_id), PROFILES)


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
        self.user_properties.append(("qsbr_seed", outcomes["seed"]))
        outcome, message = outcomes["facts"][self.fact]
        if outcome == "skip":
            pytest.skip(message)
        if outcome == "fail":
            raise QsbrCheckFailed(message)

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
    if outcomes is not None:
        terminalreporter.write_line(
            f"qsbr-conformance: the suite ran once ({outcomes['seconds']:.1f} s, seed "
            f"{outcomes['seed']}); replay: {outcomes['replay']}")
