"""pytest plugin: run the conformance suite inside a project's own test run.

    pytest --qsbr-impl mypackage.adapter:make [--qsbr-profile 3.14] [--qsbr-examples 200]

adds one test per fact (``qsbr[S-FREE-3]``, ...) plus ``qsbr[verdict]``, so a failing fact
shows up by name (and in ``--junitxml`` reports).  The suite runs once per session, with the
implementation isolated in a child process unless ``--qsbr-no-isolate`` is given.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..model.adapter import PROFILES
from ..model.facts import FACTS, MISUSE, MODEL_CHECKED_ONLY

_RESULT = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qsbr-conformance", "QSBR conformance of an implementation")
    group.addoption("--qsbr-impl", metavar="MODULE:FACTORY",
                    help="check this QSBR implementation (adapter protocol factory)")
    group.addoption("--qsbr-profile", choices=PROFILES, default=None,
                    help="CPython revision to check against (default: the factory's)")
    group.addoption("--qsbr-examples", type=int, default=100, metavar="N",
                    help="Hypothesis examples for the differential run (default: 100)")
    group.addoption("--qsbr-seed", type=int, default=None, metavar="N")
    group.addoption("--qsbr-step-timeout", type=float, default=10.0, metavar="SECONDS")
    group.addoption("--qsbr-no-isolate", action="store_true",
                    help="run the implementation in the test process itself")


class QsbrCheckFailed(Exception):
    pass


class QsbrItem(pytest.Item):
    def __init__(self, *, fact: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fact = fact

    def _result(self) -> Any:
        stash = self.config.stash
        if _RESULT not in stash:
            stash[_RESULT] = _run(self.config)
        return stash[_RESULT]

    def runtest(self) -> None:
        from . import report

        result = self._result()
        if isinstance(result, str):
            raise QsbrCheckFailed(result)
        if self.fact == "verdict":
            if not result.conforms:
                raise QsbrCheckFailed(report.to_text(result))
            return
        if self.fact != MISUSE and result.profile not in _fact_profiles(self.fact):
            pytest.skip(f"{self.fact} is not part of the {result.profile} profile")
        status = result.fact_status(self.fact)
        if status == "n/a" and self.fact in MODEL_CHECKED_ONLY:
            pytest.skip(f"{self.fact}: only the model checker (make -C reference_c "
                        "check-relacy, reference port only) exercises it")
        if status == "n/a":
            pytest.skip(f"{self.fact}: the implementation exposes no layout()")
        if status == "UNCHECKED":
            raise QsbrCheckFailed(f"{self.fact} was never exercised (raise --qsbr-examples)")
        if status == "FAIL":
            details = result.ledger.failures.get(self.fact, [])
            details += [f.message for f in result.failures if self.fact in f.facts]
            raise QsbrCheckFailed(f"{self.fact} failed:\n" + "\n".join(dict.fromkeys(details)))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        if isinstance(excinfo.value, QsbrCheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "qsbr-conformance", None, self.name


def _fact_profiles(fact_id: str) -> tuple[str, ...]:
    return next((f.profiles for f in FACTS if f.id == fact_id), PROFILES)


def _run(config: pytest.Config) -> Any:
    """The RunResult, or a message when the implementation could not be loaded."""
    from ..checks.runner import run_conformance
    from ..drivers.isolation import IsolatedImplementation
    from ..model.adapter import AdapterError, load_implementation
    from ..model.errors import QsbrError

    spec = config.getoption("--qsbr-impl")
    kwargs = {}
    if config.getoption("--qsbr-profile"):
        kwargs["profile"] = config.getoption("--qsbr-profile")
    isolate = not config.getoption("--qsbr-no-isolate")
    try:
        impl: Any = (IsolatedImplementation(spec, config.getoption("--qsbr-step-timeout"),
                                            **kwargs)
                     if isolate else load_implementation(spec, **kwargs))
    except (AdapterError, QsbrError, TypeError, ValueError) as exc:
        return f"cannot load {spec}: {exc}"
    try:
        return run_conformance(impl, examples=config.getoption("--qsbr-examples"),
                               seed=config.getoption("--qsbr-seed"))
    finally:
        if isolate:
            impl.close()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if not config.getoption("--qsbr-impl"):
        return
    for fact_id in [fact.id for fact in FACTS] + [MISUSE, "verdict"]:
        items.append(QsbrItem.from_parent(session, name=f"qsbr[{fact_id}]", fact=fact_id))
