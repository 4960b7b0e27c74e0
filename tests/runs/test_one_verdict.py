"""One verdict on every path: the command line and the pytest plugin build the same plan and
target and call the same runner, so every fact's status and the verdict agree; isolation
carries every declared capability; failures carry their own step sequence.

Every run is bounded by counts (examples, rounds, a depth-bounded exploration), never by a
clock.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from requires import requires

from conformance.checks import plan as plans
from conformance.checks import runner
from conformance.drivers import target as targets
from conformance.drivers.isolation import IsolatedImplementation
from conformance.frontends import cli
from conformance.model import status as statuses
from conformance.model.facts import FACTS

TESTS = Path(__file__).resolve().parents[1]
REFERENCE_C = TESTS.parent / "reference_c"
ORDERING = [fact.id for fact in FACTS if fact.ordering and fact.id != "S-READ-1"]

pytest_plugins = ["pytester"]

#: A small, deterministic plan: the exploration bounded by depth alone (a huge time bound and
#: depth 3 is always complete), so both front ends check the same scope.
OPTIONS = ["--examples", "12", "--seed", "5", "--explore-seconds", "1000", "--explore-depth",
           "2", "--live-examples", "0", "--concurrency-rounds", "2"]


@pytest.fixture(autouse=True)
def _adapters_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]))


def _facts(path: Path) -> dict[str, dict]:
    return {row["id"]: row for row in json.loads(path.read_text())["facts"]}


def test_isolation_carries_the_declared_capabilities():
    impl = IsolatedImplementation("verdict_adapters:locked_oracle")
    try:
        assert impl.thread_safe is True
        assert impl.live_allocations() == 0
    finally:
        impl.close()
    plain = IsolatedImplementation("conformance.oracle:oracle")
    try:
        assert plain.thread_safe is False
        assert not hasattr(plain, "live_allocations")
    finally:
        plain.close()


def test_an_isolated_thread_safe_adapter_gets_concurrent_checks(tmp_path):
    out = tmp_path / "r.json"
    assert cli.main(["--impl", "verdict_adapters:locked_oracle", *OPTIONS, "-q",
                     "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["target"]["isolate"] is True
    assert "concurrent" in data["phases"]
    rows = _facts(out)
    for fact in ("S-ATTACH-1", "S-DETACH-1", "S-QS-1", "S-ADV-1", "S-POLL-1", "S-SAFE-1",
                 "S-SAFE-2"):
        assert "concurrent" in rows[fact]["checked_by"], fact
        assert rows[fact]["result"] == statuses.PASS, fact


def test_a_race_only_concurrency_reveals_fails_the_default_isolated_run(tmp_path):
    out = tmp_path / "r.json"
    assert cli.main(["--impl", "verdict_adapters:racy_advance", *OPTIONS, "-q",
                     "--json", str(out)]) == 1
    data = json.loads(out.read_text())
    failing = {row["id"] for row in data["facts"] if row["result"] == statuses.FAIL}
    # Only facts a concurrent check can break: the ordering facts, and S-DEF-1 where a race
    # probe ran deferred_advance beside the racy advance (the lost update cannot say which
    # of the two lost it).
    assert "S-ADV-1" in failing and failing <= {*ORDERING, "S-DEF-1"}, failing
    assert all("concurrent" in _facts(out)[fact]["checked_by"] for fact in failing)
    assert [f["check"] for f in data["failures"]] == ["concurrent torture"]


def test_the_same_adapter_without_the_declaration_is_sequential_only(tmp_path):
    out = tmp_path / "r.json"
    assert cli.main(["--impl", "conformance.oracle:oracle", *OPTIONS, "-q",
                     "--json", str(out)]) == 0
    rows = _facts(out)
    assert rows["S-ADV-1"]["result"] == statuses.PASS_SEQUENTIAL
    assert "thread_safe" in json.loads(out.read_text())["concurrency"]


def test_a_wrap_only_failure_carries_its_own_sequence(tmp_path):
    out = tmp_path / "r.json"
    assert cli.main(["--impl", "verdict_adapters:scan_plain_minimum", *OPTIONS, "-q",
                     "--json", str(out)]) == 1
    failure = next(f for f in json.loads(out.read_text())["failures"]
                   if f["check"] == "coverage scenario")
    near_wrap = (1 << 64) - 3
    first, last = failure["step_records"][0], failure["step_records"][-1]
    assert first["operation"] == "set_sequences" and first["args"][0] == near_wrap
    assert last["operation"] == "poll" and last["result"] is True
    assert failure["steps"][-1] == last["text"]
    assert "set_sequences" in failure["steps"][0]


def test_factory_written_to_the_docs_accepts_every_release_profile(monkeypatch):
    # minimal_adapter.make(profile="3.13") knows only the lines "3.13"/"3.14"; a release range
    # asked for reaches it as its line: the factory is called with profile="3.13", not with
    # the range (it would refuse it) nor with nothing (its default would hide the mistake).
    monkeypatch.syspath_prepend(str(TESTS.parent / "docs" / "examples"))
    import minimal_adapter
    calls = []
    real = minimal_adapter.make

    @functools.wraps(real)          # the loader reads the factory's signature
    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(minimal_adapter, "make", recording)
    target = targets.resolve("minimal_adapter:make", "3.13.3-3.13.5", isolate=False)
    impl = target.open()
    assert impl.profile == "3.13"
    assert calls == [((), {"profile": "3.13"})], calls


def _needs_cc() -> None:
    requires("toolchain")


@pytest.fixture(scope="module")
def cabi_library(tmp_path_factory) -> str:
    _needs_cc()
    build = tmp_path_factory.mktemp("cabi")
    subprocess.run(["make", "-C", str(REFERENCE_C), "--no-print-directory", "lib",
                    f"BUILD={build}", "PROFILE=313"], check=True, capture_output=True)
    return str(build / "313" / "libqsbr.so")


@pytest.mark.parametrize("impl", ["conformance.reference:reference_port",
                                  "conformance.cabi:from_env",
                                  "verdict_adapters:locked_oracle"])
@pytest.mark.slow
def test_command_line_json_and_plugin_junit_agree_fact_by_fact(impl, pytester, tmp_path,
                                                               monkeypatch, request):
    # Implementations whose answers are deterministic for a plan: a racy port's torture
    # outcome depends on the scheduler, so two runs of it (by any front end) may name other
    # facts; its failure on every path is test_a_race_only_concurrency_reveals_... above.
    options = list(OPTIONS)
    if impl == "conformance.cabi:from_env":
        monkeypatch.setenv("QSBR_LIBRARY", request.getfixturevalue("cabi_library"))
        # A C ABI library's hardware phase decides by statistics on the machine's behaviour
        # in that run (conclusive or inconclusive): two runs may credit S-ATTACH-1 differently.
        # The agreement of the front ends is checked without it (no concurrency rounds).
        options[options.index("--concurrency-rounds") + 1] = "0"
    out = tmp_path / "cli.json"
    status = cli.main(["--impl", impl, *options, "-q", "--json", str(out)])
    cli_rows = _facts(out)
    cli_verdict = json.loads(out.read_text())["conforms"]

    plugin_options = [option.replace("--", "--qsbr-", 1) if option.startswith("--") else option
                      for option in options]
    pytester.makepyfile(test_own="def test_own_project():\n    assert True\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--qsbr-impl", impl, *plugin_options,
        *(["--qsbr-no-isolate"] if impl == "conformance.reference:reference_port" else []),
        "--junitxml", "junit.xml")
    cases = {case.get("name"): case for case in
             ET.parse(pytester.path / "junit.xml").iter("testcase")}
    for fact_id, row in cli_rows.items():
        case = cases[f"qsbr[{fact_id}]"]
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert properties["qsbr_status"] == row["result"], fact_id
        assert properties["qsbr_checked_by"] == ",".join(row["checked_by"]), fact_id
        shown = ("failed" if case.find("failure") is not None
                 else "skipped" if case.find("skipped") is not None else "passed")
        expected = {statuses.PASS: "passed", statuses.PASS_SEQUENTIAL: "skipped",
                    statuses.NOT_APPLICABLE: "skipped", statuses.FAIL: "failed",
                    statuses.UNCHECKED: "failed"}[row["result"]]
        assert shown == expected, (fact_id, row["result"], shown)
    verdict = cases["qsbr[verdict]"]
    assert (verdict.find("failure") is None) == cli_verdict == (status == 0)
    assert result.ret == (0 if cli_verdict else 1)


def test_plugin_says_what_sequential_only_means(pytester):
    pytester.makepyfile(test_own="def test_own_project():\n    assert True\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--qsbr-impl", "conformance.oracle:oracle", "--qsbr-examples",
        "10", "--qsbr-seed", "1", "--qsbr-explore-depth", "1", "-rs")
    result.stdout.fnmatch_lines(["*passed from sequential checks only (shown as skipped)*",
                                 "*S-ADV-1: pass (sequential only)*thread_safe*"])
    assert result.ret == 0


def test_unreached_facts_of_a_stopped_run_say_so():
    from conformance.frontends import pytest_plugin

    plan = plans.Plan(seed=1, examples=5, explore_seconds=0, live_examples=0,
                      concurrency_rounds=0, stop_at_first_failure=True)
    target = targets.resolve("mutant_adapters:advance_returns_old", isolate=False)
    result = runner.run(plan, target)
    outcomes = pytest_plugin.outcomes_of(result)["facts"]
    unreached = [entry for entry in outcomes.values() if entry["status"] == statuses.UNCHECKED]
    assert unreached, outcomes          # the run stopped at S-ADV-1: some facts were never reached
    for entry in unreached:
        assert "not reached: the run stopped at its first failure (" in entry["message"]
        assert "raise --qsbr-examples" not in entry["message"]


def test_every_front_end_uses_the_same_defaults():
    """Every entry point's default budget is the Plan's: the command line, the pytest plugin,
    the library call (run_conformance), the bench's default run, the mutant table's
    conformance attack and the upstream differential run, read from their real parsers and
    signatures."""
    import inspect

    from _pytest.config.argparsing import Parser

    from conformance.bench import suite
    from conformance.frontends import mutants_cli, pytest_plugin, upstream_cli

    args = cli.parser().parse_args([])
    assert (args.examples, args.steps, args.live_examples, args.concurrency_rounds,
            args.explore_states, args.explore_seconds, args.explore_depth) == (
        plans.DEFAULT_EXAMPLES, plans.DEFAULT_STEPS, plans.DEFAULT_LIVE_EXAMPLES,
        plans.DEFAULT_CONCURRENCY_ROUNDS, plans.DEFAULT_EXPLORE_STATES,
        plans.DEFAULT_EXPLORE_SECONDS, plans.DEFAULT_EXPLORE_DEPTH)
    parser = Parser()
    pytest_plugin.pytest_addoption(parser)
    options = parser.parse([])
    assert (options.qsbr_examples, options.qsbr_steps, options.qsbr_live_examples,
            options.qsbr_concurrency_rounds, options.qsbr_explore_states,
            options.qsbr_explore_seconds, options.qsbr_explore_depth) == (
        plans.DEFAULT_EXAMPLES, plans.DEFAULT_STEPS, plans.DEFAULT_LIVE_EXAMPLES,
        plans.DEFAULT_CONCURRENCY_ROUNDS, plans.DEFAULT_EXPLORE_STATES,
        plans.DEFAULT_EXPLORE_SECONDS, plans.DEFAULT_EXPLORE_DEPTH)
    library = inspect.signature(runner.run_conformance).parameters
    assert (library["examples"].default, library["steps"].default,
            library["explore_states"].default) == (
        plans.DEFAULT_EXAMPLES, plans.DEFAULT_STEPS, plans.DEFAULT_EXPLORE_STATES)
    assert suite.DEFAULT_EXAMPLES == plans.DEFAULT_EXAMPLES
    assert mutants_cli.parser().parse_args([]).examples == plans.DEFAULT_EXAMPLES
    assert upstream_cli.parser().parse_args(["x"]).examples == plans.DEFAULT_EXAMPLES
