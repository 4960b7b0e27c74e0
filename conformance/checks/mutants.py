"""``qsbr-conformance mutants``: the suite proves its power on realistic bugs of the port.

Each mutant is a patch file, reference_c/mutants/NAME.patch (format: reference_c/mutants/
README.md): the catalog is those files, read by :func:`catalog`.  A mutant is built from a copy
of reference_c/ with its patch applied (``make mutant``), as a release build (``NDEBUG``, like
CPython's), then attacked by the checks its ``Killer:`` line names, in order, until one kills it:

- ``conformance run``: the differential run against the oracle, through the C ABI in a child
  process (a crash counts as a kill);
- ``torture``: the port's concurrency torture, stopping at its first error;
- ``replay``: the C regression replay of an upstream bug under ASan;
- ``model checker``: the Relacy model checker (reference_c/relacy/run.py --mutant NAME): the
  patched qsbr.c run in the scenarios listed for it, under C++11 memory-model semantics (needs
  g++ or clang++ and relacy-dev; without them the row says so and the mutant is not killed).

A mutant no check kills must be argued in its patch (``Killer: equivalence note`` and an
``Equivalent:`` line); the run fails otherwise.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import sources

#: The checks a ``Killer:`` line may name, by the words that name them.
KILLERS = (("conformance", "conformance"), ("torture", "torture"), ("replay", "replay"),
           ("model", "modelcheck"), ("relacy", "modelcheck"), ("equivalen", "equivalent"),
           ("state check", "statecheck"))
REQUIRED = ("Mutant", "Facts", "Kind", "Killer", "Summary")


class CatalogError(ValueError):
    """A patch file of reference_c/mutants/ whose header is incomplete or inconsistent."""


@dataclass(frozen=True)
class Mutant:
    name: str
    facts: str              # the facts it breaks
    kind: str               # logic, concurrency, memory order, resource, upstream bug gh-N
    summary: str
    methods: tuple[str, ...] = ("conformance",)     # the checks to try, in order
    profile: str = "313"
    equivalent: str = ""    # if it may survive: why (equivalent, or out of reach of every check)
    torture_args: tuple[str, ...] = ("-r", "1", "-c", "0")
    replay_filter: str = ""
    scenarios: tuple[str, ...] = ()                 # Relacy scenarios (empty: the default set)
    note: str = ""
    path: Path = field(default=Path(), compare=False)

    @property
    def breaks(self) -> str:
        return self.facts if self.kind in ("logic", "") else f"{self.facts} ({self.kind})"

    @property
    def description(self) -> str:
        return self.summary


def read_header(path: Path) -> dict[str, str]:
    """The ``Field: value`` lines before the first ``---`` of a patch file (a line starting with
    white space continues the previous field)."""
    fields: dict[str, str] = {}
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("---"):
            break
        match = re.match(r"^([A-Za-z][\w-]*):\s*(.*?)\s*$", line)
        if match:
            last = match.group(1).title()
            fields[last] = match.group(2)
        elif line[:1].isspace() and line.strip() and last is not None:
            fields[last] += " " + line.strip()
    return fields


def _methods(path: Path, killer: str) -> tuple[tuple[str, ...], bool]:
    methods: list[str] = []
    equivalent = False
    for word in re.split(r",|;|\bthen\b", killer.lower()):
        word = re.sub(r"\(.*?\)", "", word).strip()
        if not word:
            continue
        method = next((m for key, m in KILLERS if key in word), None)
        if method is None:
            raise CatalogError(f"{path.name}: Killer: {word!r} is not one of conformance run, "
                               "torture, replay, model checker, state check, equivalence note")
        if method == "equivalent":
            equivalent = True
        elif method not in methods:
            methods.append(method)
    return tuple(methods), equivalent


def parse(path: Path) -> Mutant:
    """One mutant from its patch file's header."""
    fields = read_header(path)
    missing = [name for name in REQUIRED if not fields.get(name)]
    if missing:
        raise CatalogError(f"{path.name}: no {', '.join(name + ':' for name in missing)} line "
                           "in the header (see reference_c/mutants/README.md)")
    if fields["Mutant"] != path.stem:
        raise CatalogError(f"{path.name}: Mutant: {fields['Mutant']} is not the file's name")
    methods, equivalent = _methods(path, fields["Killer"])
    argument = fields.get("Equivalent", "")
    if equivalent and not argument:
        raise CatalogError(f"{path.name}: Killer: equivalence note needs an Equivalent: line")
    if "replay" in methods and not fields.get("Replay"):
        raise CatalogError(f"{path.name}: Killer: replay needs a Replay: FILTER line")
    return Mutant(
        name=path.stem, facts=fields["Facts"], kind=fields["Kind"], summary=fields["Summary"],
        methods=methods, profile=fields.get("Profile", "313"),
        equivalent=argument if equivalent else "",
        torture_args=tuple(fields.get("Torture", "-r 1 -c 0").split()),
        replay_filter=fields.get("Replay", ""),
        scenarios=tuple(fields.get("Scenarios", "").split()), note=fields.get("Note", ""),
        path=path)


def catalog(source: Path | None = None) -> list[Mutant]:
    """The mutant catalog: one :class:`Mutant` per reference_c/mutants/*.patch, by name.
    Empty when the port's sources are not found."""
    if source is None:
        try:
            source = sources.reference_c()
        except sources.SourcesNotFound:
            return []
    return [parse(path) for path in sorted((source / "mutants").glob("*.patch"))]


@dataclass
class Outcome:
    mutant: Mutant
    killed: bool
    by: str = ""
    detail: str = ""
    seconds: float = 0.0


def make_mutant(source: Path, mutant: str, target: str, build: Path, profile: str = "313",
                extra_cflags: str = "-DNDEBUG", sanitize: str = "") -> None:
    """``make TARGET`` in a copy of ``source`` with the mutant's patch applied (the Makefile's
    ``mutant`` target); the outputs go to ``build`` (e.g. build/PROFILE/libqsbr.so)."""
    subprocess.run(["make", "-s", "-C", str(source), "mutant", f"MUTANT={mutant}",
                    f"TARGET={target}", f"MUTANT_BUILD={build.resolve()}",
                    f"PROFILE={profile}", f"EXTRA_CFLAGS={extra_cflags}",
                    f"SANITIZE={sanitize}"],
                   check=True, capture_output=True, text=True, timeout=600)


def patched_source(source: Path, mutant: str, build: Path) -> Path:
    """A copy of ``source`` with the mutant's patch applied (``make mutant-src``): its path."""
    subprocess.run(["make", "-s", "-C", str(source), "mutant-src", f"MUTANT={mutant}",
                    f"MUTANT_BUILD={build.resolve()}"],
                   check=True, capture_output=True, text=True, timeout=600)
    return build.resolve() / "reference_c"


def _make(source: Path, target: str, mutant: Mutant, build: Path) -> None:
    make_mutant(source, mutant.name, target, build, mutant.profile)


def _by_conformance(source: Path, mutant: Mutant, build: Path, examples: int) -> tuple[bool, str]:
    """The conformance run of the mutant's C ABI library, isolated, through the one runner
    (conformance.checks.runner.run) with the plan of a default run (sequential phases; the
    torture and the model checker are the catalog's other killers)."""
    from ..drivers import target as targets
    from . import runner
    from .plan import Plan

    _make(source, "lib", mutant, build)
    target = targets.resolve("conformance.cabi:load", isolate=True, step_timeout=5.0,
                             library=str(build / mutant.profile / "libqsbr.so"))
    plan = Plan(seed=1, examples=examples, stop_at_first_failure=True, live_examples=0,
                concurrency_rounds=0, model_check=False)
    result = runner.run(plan, target)
    if result.conforms:
        return False, ""
    if result.failures:
        first = result.failures[0]
        return True, f"{', '.join(first.facts)}: {first.message.splitlines()[0][:110]}"
    return True, "facts left unchecked"


def _by_state_check(source: Path, mutant: Mutant, build: Path) -> tuple[bool, str]:
    """The C ABI torture's churn and state check (conformance.checks.cabi_torture) on the
    mutant built as a library: up to 8 runs of 24 rounds (a race: a count, not a clock)."""
    from . import cabi_torture
    _make(source, "lib", mutant, build)
    library = str(build / mutant.profile / "libqsbr.so")
    for seed in range(1, 9):
        result = cabi_torture.run(library, rounds=24, seed=seed)
        if result.status != 0:
            return True, f"state check: {result.verdict()[:110]}"
    return False, ""


def _by_torture(source: Path, mutant: Mutant, build: Path, seconds: float) -> tuple[bool, str]:
    _make(source, "torture-bin", mutant, build)
    binary = build / mutant.profile / "qsbr-torture"
    proc = subprocess.run([str(binary), "-q", "-x", "-s", str(seconds), *mutant.torture_args],
                          capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode == 0:
        return False, ""
    lines = [line for line in proc.stdout.splitlines() if line.startswith("errors:")]
    return True, f"torture: {lines[0] if lines else f'exit status {proc.returncode}'}"


def _by_replay(source: Path, mutant: Mutant, build: Path) -> tuple[bool, str]:
    _make(source, "replay-bin", mutant, build)
    binary = build / mutant.profile / "qsbr-tests-asan"
    proc = subprocess.run([str(binary), mutant.replay_filter], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "ASAN_OPTIONS": "detect_leaks=0"})
    if proc.returncode == 0:
        return False, ""
    asan = [line for line in proc.stderr.splitlines() if "ERROR: AddressSanitizer" in line]
    why = asan[0].split("ERROR: ")[1][:60] if asan else "a CHECK failed"
    return True, f"replay '{mutant.replay_filter}' under ASan: {why}"


def _by_modelcheck(source: Path, mutant: Mutant, build: Path) -> tuple[bool, str]:
    runner = source / "relacy" / "run.py"
    if not runner.is_file():
        return False, "model checker not run: reference_c/relacy/run.py is missing"
    out = build / "relacy.json"
    proc = subprocess.run([sys.executable, str(runner), "--mutant", mutant.name,
                           "--build", str(build / "relacy"), "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode == 2 or not out.is_file():
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return False, f"model checker not run: {why}"
    row = json.loads(out.read_text(encoding="utf-8"))["mutants"][mutant.name]
    if not row["killed"]:
        return False, ""
    return True, f"relacy {row['by']}: {row['detail'][:90]}"


def run_mutant(source: Path, mutant: Mutant, work: Path, examples: int,
               torture_seconds: float) -> Outcome:
    build = work / mutant.name
    started = time.monotonic()
    notes: list[str] = []
    for method in mutant.methods:
        if method == "conformance":
            killed, detail = _by_conformance(source, mutant, build, examples)
        elif method == "torture":
            killed, detail = _by_torture(source, mutant, build, torture_seconds)
        elif method == "statecheck":
            killed, detail = _by_state_check(source, mutant, build)
        elif method == "modelcheck":
            killed, detail = _by_modelcheck(source, mutant, build)
            if not killed and detail:
                notes.append(detail)
        else:
            killed, detail = _by_replay(source, mutant, build)
        if killed:
            return Outcome(mutant, True, method, detail, time.monotonic() - started)
    return Outcome(mutant, False, "", "; ".join(notes), time.monotonic() - started)


def table(outcomes: list[Outcome]) -> str:
    lines = [f"{'mutant':<27} {'breaks':<34} {'result':<11} {'by':<12} {'time':>7}  detail",
             f"{'-' * 27} {'-' * 34} {'-' * 11} {'-' * 12} {'-' * 7}  {'-' * 6}"]
    for o in outcomes:
        result = "killed" if o.killed else ("argued" if o.mutant.equivalent else "SURVIVED")
        detail = o.detail if o.killed else (o.mutant.equivalent or o.detail
                                            or o.mutant.description)
        lines.append(f"{o.mutant.name:<27} {o.mutant.breaks:<34} {result:<11} {o.by:<12} "
                     f"{o.seconds:6.1f}s  {detail}")
    return "\n".join(lines)
