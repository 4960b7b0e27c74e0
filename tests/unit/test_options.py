"""One option table (conformance.frontends.options) makes the command line's options, the
pytest plugin's, the plan and the target, and the replay command: they cannot drift."""

from __future__ import annotations

import argparse
import shlex

import pytest
from _pytest.config.argparsing import Parser

from conformance.checks.plan import Plan
from conformance.drivers import target as targets
from conformance.frontends import cli, options, pytest_plugin


def _cli_actions() -> dict[str, argparse.Action]:
    return {flag: action for action in cli.parser()._actions for flag in action.option_strings}


def _plugin_namespace(argv: list[str]) -> argparse.Namespace:
    parser = Parser(_ispytest=True)
    pytest_plugin.pytest_addoption(parser)
    return parser.parse(argv)


def _plugin_values(namespace: argparse.Namespace) -> dict:
    return {o.dest: getattr(namespace, f"qsbr_{o.dest}") for o in options.RUN_OPTIONS
            if "plugin" in o.fronts}


def test_both_option_sets_come_from_the_table_and_agree():
    actions = _cli_actions()
    plugin = _plugin_namespace([])
    for option in options.RUN_OPTIONS:
        assert f"--{option.name}" in actions, option.name
        cli_action = actions[f"--{option.name}"]
        assert cli_action.default == option.default, option.name
        if "plugin" not in option.fronts:
            continue
        plugin_default = getattr(plugin, f"qsbr_{option.dest}")
        expected = None if option.name == "impl" else option.default
        assert plugin_default == expected, option.name
    # what used to differ: the plugin had no --qsbr-startup-timeout
    assert _plugin_namespace(["--qsbr-startup-timeout", "7"]).qsbr_startup_timeout == 7.0
    assert _plugin_namespace(["--qsbr-no-isolate"]).qsbr_isolate is False
    assert _plugin_namespace(["--qsbr-isolate"]).qsbr_isolate is True


def test_the_defaults_of_both_front_ends_are_the_plans_and_the_targets():
    from_cli = options.plan_and_target(vars(cli.parser().parse_args([])), seed=5)
    values = _plugin_values(_plugin_namespace([]))
    values["impl"] = targets.REFERENCE_IMPL
    from_plugin = options.plan_and_target(values, seed=5)
    assert from_cli == from_plugin == (Plan(seed=5), targets.resolve())
    # the plugin does not isolate the reference port where the command line does not
    assert not from_plugin[1].isolate


@pytest.mark.parametrize("argv", [
    [],
    ["--impl", "mutant_adapters:fifo_freelist", "--profile", "3.13.3-3.13.5",
     "--examples", "7", "--steps", "9", "--explore-seconds", "2.5", "--explore-depth", "3",
     "--explore-states", "0", "--db", "/tmp/x y", "--no-isolate", "--step-timeout", "3",
     "--startup-timeout", "4", "--live-examples", "0", "--concurrency-rounds", "1"],
])
def test_the_replay_command_gives_back_the_same_plan_and_target(argv):
    plan, target = options.plan_and_target(vars(cli.parser().parse_args(argv)), seed=11)
    words = shlex.split(options.replay_command(plan, target))
    assert words[0] == "qsbr-conformance"
    args = cli.parser().parse_args(words[1:])
    again = options.plan_and_target(vars(args), seed=args.seed)
    assert again == (plan, target)


def test_a_c_abi_replay_command_names_its_library(monkeypatch):
    monkeypatch.setenv("QSBR_LIBRARY", "/some where/libqsbr.so")
    plan, target = options.plan_and_target(
        vars(cli.parser().parse_args(["--impl", "conformance.cabi:from_env"])), seed=1)
    line = options.replay_command(plan, target)
    assert line.startswith("QSBR_LIBRARY='/some where/libqsbr.so' qsbr-conformance "), line
