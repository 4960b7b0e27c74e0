"""The one option table of a conformance run: every option once, with its default and help.

From :data:`RUN_OPTIONS` come the command line's options (:func:`add_to_argparse`: ``--impl``,
``--examples``, ...), the pytest plugin's (:func:`add_to_pytest`: ``--qsbr-impl``,
``--qsbr-examples``, ...), the keyword arguments of the frozen plan and the resolved target
(:func:`plan_and_target`) and the command line that replays a run (:func:`replay_command`), so
that no default can differ between them: a default is the Plan's or the Target's own
(conformance.checks.plan, conformance.drivers.target), read from there.

An option belongs to the plan (``plan``: a keyword of :class:`conformance.checks.plan.Plan`),
to the target (``target``: a keyword of :func:`conformance.drivers.target.resolve`) or to the
front end alone (``front``: ``--quiet``).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..checks import plan as plans
from ..drivers import target as targets
from ..model import profiles
from . import common

#: The plugin's options are the command line's with this prefix (``--qsbr-examples``).
PLUGIN_PREFIX = "qsbr-"


@dataclass(frozen=True)
class Option:
    """One option of a run."""

    #: the command line's name without dashes (``explore-seconds``)
    name: str
    #: plan, target or front
    owner: str
    #: the Plan's field or resolve()'s keyword (``explore_seconds``)
    keyword: str
    help: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    #: "store_true", or "bool" for --X/--no-X (argparse.BooleanOptionalAction)
    action: str | None = None
    #: the front ends it belongs to ("cli", "plugin")
    fronts: tuple[str, ...] = ("cli", "plugin")

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


def _nonnegative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0") from None
    if value != value or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0 (0 turns the "
                                         "exploration off)")
    return value


_nonnegative_seconds.__name__ = "a number >= 0"

_IMPL = targets.REFERENCE_IMPL
_FALLBACK = plans.FALLBACK_EXPLORE_SECONDS

#: Every option of a run, in --help order.
RUN_OPTIONS: tuple[Option, ...] = (
    Option("impl", "target", "spec", f"implementation to check (default: {_IMPL}, the "
           "reference C port through the Cython bridge)", _IMPL, metavar="MODULE:FACTORY"),
    Option("profile", "target", "release", "CPython release range to check against (see the "
           "release matrix): 3.13 = 3.13.3-3.13.5, 3.14 = 3.14.4+, auto = the running "
           "interpreter's; the factory gets its API line (default: the factory's own)",
           None, choices=profiles.CHOICES),
    Option("examples", "plan", "examples", "Hypothesis examples (step sequences) to run "
           f"(default: {plans.DEFAULT_EXAMPLES})", plans.DEFAULT_EXAMPLES,
           common.positive_int, "N"),
    Option("steps", "plan", "steps", f"maximum steps per example (default: "
           f"{plans.DEFAULT_STEPS})", plans.DEFAULT_STEPS, common.positive_int, "N"),
    Option("explore-seconds", "plan", "explore_seconds", "a time bound on the bounded-"
           "exhaustive exploration as well (not reproducible: a replay may reach another "
           f"scope; default: none, or {_FALLBACK:g} with --explore-states 0; 0 turns the "
           "exploration off)", plans.DEFAULT_EXPLORE_SECONDS, _nonnegative_seconds, "SECONDS"),
    Option("explore-depth", "plan", "explore_depth", "depth bound of the exploration, in "
           f"actions from each start point (default: {plans.DEFAULT_EXPLORE_DEPTH})",
           plans.DEFAULT_EXPLORE_DEPTH, common.nonnegative_int, "N"),
    Option("explore-states", "plan", "explore_states", "bound of the exploration in distinct "
           "states, so that a replay with the same seed reaches the same scope (default: "
           f"{plans.DEFAULT_EXPLORE_STATES}; 0: no states bound, only the time bound, which is "
           "not reproducible)", plans.DEFAULT_EXPLORE_STATES, common.nonnegative_int, "N"),
    Option("seed", "plan", "seed", "seed of the run (default: a random one, printed and saved "
           "in the reports, so that every run can be replayed)", None,
           common.nonnegative_int, "N"),
    Option("db", "plan", "database", "Hypothesis example database to replay first and save "
           "to: a directory, or redis://HOST:PORT/N (shared with `qsbr-conformance campaign`; "
           "default: none)", None, metavar="DIR_OR_URL"),
    Option("json", "plan", "json", "also write the report as JSON", None, metavar="PATH"),
    Option("markdown", "plan", "markdown", "also write the report as Markdown", None,
           metavar="PATH"),
    Option("isolate", "target", "isolate", "run the implementation in a child process, so a "
           "crash or hang is reported as a failure (default: on for every implementation but "
           "the built-in reference port)", None, action="bool"),
    Option("step-timeout", "target", "step_timeout", "with isolation: a call that runs longer "
           f"is a hang (default: {targets.STEP_TIMEOUT:g}; time spent waiting for a CPU on a "
           "busy machine is not counted)", targets.STEP_TIMEOUT, common.positive_float,
           "SECONDS"),
    Option("startup-timeout", "target", "startup_timeout", "with isolation: bound on the "
           "child's start-up (imports, the factory call) (default: "
           f"{targets.STARTUP_TIMEOUT:g})", targets.STARTUP_TIMEOUT, common.positive_float,
           "SECONDS"),
    Option("live-examples", "plan", "live_examples", "on a free-threaded build: generated "
           "action sequences to run against the live interpreter (default: "
           f"{plans.DEFAULT_LIVE_EXAMPLES}; 0 skips the live check)",
           plans.DEFAULT_LIVE_EXAMPLES, common.nonnegative_int, "N"),
    Option("concurrency-rounds", "plan", "concurrency_rounds", "rounds of the bounded "
           "concurrent torture that gives the ordering facts concurrent evidence (C ABI "
           "libraries and the reference port: the C driver; thread-safe Python adapters: "
           f"Python threads, N * 250 updates); 0 skips it (default: "
           f"{plans.DEFAULT_CONCURRENCY_ROUNDS}, a few seconds)",
           plans.DEFAULT_CONCURRENCY_ROUNDS, common.nonnegative_int, "N"),
    Option("quiet", "front", "quiet", "no progress output", False, action="store_true",
           fronts=("cli",)),
)

BY_NAME = {option.name: option for option in RUN_OPTIONS}


def _arguments(option: Option) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"help": option.help, "dest": option.dest}
    if option.action == "store_true":
        kwargs.update(action="store_true", default=option.default)
    elif option.action == "bool":
        kwargs.update(action=argparse.BooleanOptionalAction, default=option.default)
    else:
        kwargs.update(default=option.default)
        for field in ("type", "metavar", "choices"):
            if getattr(option, field) is not None:
                kwargs[field] = getattr(option, field)
    return kwargs


def add_to_argparse(parser: argparse.ArgumentParser) -> None:
    """The command line's options (``--examples``, ..., ``-q/--quiet``)."""
    for option in RUN_OPTIONS:
        if "cli" in option.fronts:
            flags = (["-q"] if option.name == "quiet" else []) + [f"--{option.name}"]
            parser.add_argument(*flags, **_arguments(option))


def add_to_pytest(group: Any) -> None:
    """The pytest plugin's options (``--qsbr-examples``, ...) into a pytest option group.
    ``--qsbr-impl`` has no default there: the plugin runs only when it is given."""
    for option in RUN_OPTIONS:
        if "plugin" not in option.fronts:
            continue
        kwargs = _arguments(option)
        kwargs["dest"] = f"qsbr_{option.dest}"
        if option.name == "impl":
            kwargs["default"] = None
            kwargs["help"] = "check this QSBR implementation (adapter protocol factory)"
        if option.action == "bool":
            # pytest registers one flag per option: --qsbr-X and --qsbr-no-X, one dest
            del kwargs["action"]
            group.addoption(f"--{PLUGIN_PREFIX}{option.name}", action="store_const",
                            const=True, **kwargs)
            group.addoption(f"--{PLUGIN_PREFIX}no-{option.name}", action="store_const",
                            const=False, dest=kwargs["dest"], default=option.default,
                            help=f"(the opposite of --{PLUGIN_PREFIX}{option.name})")
            continue
        group.addoption(f"--{PLUGIN_PREFIX}{option.name}", **kwargs)


def plan_and_target(values: Mapping[str, Any], seed: int) -> tuple[plans.Plan, targets.Target]:
    """The frozen plan and the resolved target of parsed option values (by dest; missing
    ones take the table's default); UsageError (one line) if they are bad."""
    plan_kwargs: dict[str, Any] = {}
    target_kwargs: dict[str, Any] = {}
    for option in RUN_OPTIONS:
        value = values.get(option.dest, option.default)
        if option.owner == "plan" and option.keyword != "seed":
            plan_kwargs[option.keyword] = value
        elif option.owner == "target":
            target_kwargs[option.keyword] = value
    try:
        plan = plans.Plan(seed=seed, **plan_kwargs)
        target = targets.resolve(**target_kwargs)
    except (plans.PlanError, targets.TargetError) as exc:
        raise common.UsageError(str(exc)) from None
    return plan, target


def _value(option: Option, plan: Any, target: Any) -> Any:
    source = plan if option.owner == "plan" else target
    return getattr(source, option.keyword)


#: Options a replay command leaves out: the reports' paths (a replay writes none unless
#: asked) and the front end's own.
_NOT_REPLAYED = ("json", "markdown", "quiet")


def replay_command(plan: Any, target: Any, *, seed: bool = True) -> str:
    """The command line that replays a run of ``plan`` against ``target`` (the same
    implementation, options and seed), whichever front end made the run; ``VAR=value`` in
    front where the target needs it (``QSBR_LIBRARY``), so that it can be pasted."""
    parts = ["qsbr-conformance"]
    for option in RUN_OPTIONS:
        if option.name in _NOT_REPLAYED or (option.name == "seed" and not seed):
            continue
        value = _value(option, plan, target)
        if option.name == "isolate":
            if value != (target.spec != targets.REFERENCE_IMPL):
                parts.append("--isolate" if value else "--no-isolate")
            continue
        always = option.name in ("impl", "examples", "steps", "seed")
        if value is None or (value == option.default and not always):
            continue
        parts += [f"--{option.name}", f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join([*target.command_prefix(), shlex.join(parts)])
