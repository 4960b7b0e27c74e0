"""The hazards QSBR's callers depend on, shown on hardware and under the model checker.

``qsbr-conformance hazards [SOURCE]`` (front end: conformance/frontends/hazards_cli.py) builds
the litmus harness reference_c/litmus/litmus.c against a qsbr.c -- the port's own src/qsbr.c
for each release profile, or a CPython release's own Python/qsbr.c and pycore_qsbr.h against
the port's stand-ins, prepared by ``upstream.prepare`` exactly as ``qsbr-conformance
upstream`` builds them -- optionally with a fix from reference_c/fixes/ applied to a copy
(GNU patch), and runs each shape: two threads pinned to two CPUs, meeting at a spin barrier
before and after each iteration, each side starting its racing part after a random offset
(reference_c/litmus/litmus_core.h).  How long each shape runs, and what its count says, is
:mod:`conformance.checks.decide`'s rule: a calibration sweep of offset ranges, the unfixed stale
goal run until it has shown 30 forbidden outcomes, and every row that should show none run until
it is *conclusively* below a tenth of that rate or *inconclusive on this machine*.  Beside each
shape it puts the Relacy model checker's verdict on the same shape (reference_c/relacy/, run.py's
own ``build`` and ``run_one``) and the trace of its first failing execution.

A count of zero means *not observed* in that many iterations on that machine, never that the
outcome is impossible; the interval (Wilson score, 95%) bounds the rate the run is consistent
with.  Each shape has a control that must count 0: the writer's part runs to its end before
the reader's starts, so the forbidden outcome is impossible under any memory model and a
non-zero count means the harness itself is broken.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..model.profiles import RELEASE_PROFILES, ReleaseProfile, UnknownRelease, for_version
from . import decide, upstream
from .decide import BELOW, CONTROL, EXPECT, REFERENCE, Budget, Tally

#: What a zero means, said in every report.
ZERO_MEANS = ("a count of 0 means the outcome was not observed in that many iterations on "
              "this machine; it does not prove the outcome impossible")
INTERVAL_METHOD = decide.INTERVAL_METHOD
CONTROL_MEANS = ("control: the writer's part runs to its end before the reader's part starts "
                 "(a spin barrier between them), where the forbidden outcome is impossible "
                 "under any memory model; a non-zero control is a broken harness")
LITMUS_CFLAGS = ("-std=c11", "-Wall", "-Wextra", "-D_GNU_SOURCE", "-O2", "-g", "-DNDEBUG")
RELACY_ITERATIONS = 20000        # run.py's RANDOM_ITERATIONS: seeded, the same every run


class HazardsError(Exception):
    """A usage error: a missing source, an unknown fix, a release outside the matrix."""


@dataclass(frozen=True)
class Shape:
    name: str                   # stale-goal, retire-before-unlink, read-seqcst, read-acquire
    goal: str                   # "non-advancing" or "advancing"
    fence: bool                 # a seq_cst fence between the unlink and the goal
    control: bool
    role: str = BELOW           # decide.REFERENCE / BELOW / EXPECT / CONTROL

    @property
    def relacy_scenario(self) -> str | None:
        """The model checker's twin of this shape (reference_c/relacy/qsbr_relacy.cpp)."""
        if self.control:
            return None
        return {("stale-goal", "non-advancing", False): "stale-goal",
                ("stale-goal", "non-advancing", True): "stale-goal-fence",
                ("stale-goal", "advancing", False): "stale-goal-advancing",
                ("retire-before-unlink", "non-advancing", False): "retire-before-unlink",
                ("read-seqcst", "advancing", False): "read-seqcst",
                ("read-acquire", "advancing", False): "read-acquire",
                }.get((self.name, self.goal, self.fence))


#: What each shape is, and which outcome is forbidden (the same text as litmus --list).
SHAPE_TEXT = {
    "stale-goal": "writer: release-store the new pointer (the unlink), [seq_cst fence], take "
                  "the goal; reader: _Py_qsbr_advance, quiescent state, load the pointer.  "
                  "Forbidden: the reader's quiescent state reaches the goal while the reader "
                  "loaded the old pointer (store buffering: forbidden under sequential "
                  "consistency, allowed by x86-TSO and C11 unless something orders the "
                  "unlink before the goal's load)",
    "retire-before-unlink": "writer: take the goal, then release-store the new pointer "
                            "(dict_merge's clone path: dictkeys_decref before set_keys); "
                            "reader as in stale-goal.  Forbidden as in stale-goal, and "
                            "reachable even under sequential consistency",
    "read-seqcst": "reader: _Py_qsbr_attach, then a seq_cst load of the pointer (its first "
                   "protected load); writer: release-store the new pointer, _Py_qsbr_advance, "
                   "quiescent state, _Py_qsbr_poll.  Forbidden: the poll reached the goal "
                   "while the reader loaded the old pointer",
    "read-acquire": "the same with an acquire first load (S-READ-1: allowed by C11; on "
                    "hardware it needs an acquire load that may pass a release store, e.g. "
                    "ARM64 LDAPR; x86-64's seq_cst store in attach is a full barrier)",
}

#: The shapes run on each build: every shape with its goal kinds and the fence, and a control.
#: The first row is the reference (the unfixed stale goal) that every BELOW and CONTROL row of
#: the same build is compared with; EXPECT rows are allowed even under sequential consistency.
PLAN: tuple[Shape, ...] = (
    Shape("stale-goal", "non-advancing", False, False, REFERENCE),
    Shape("stale-goal", "non-advancing", True, False, BELOW),
    Shape("stale-goal", "advancing", False, False, BELOW),
    Shape("stale-goal", "non-advancing", False, True, CONTROL),
    Shape("retire-before-unlink", "non-advancing", False, False, EXPECT),
    Shape("retire-before-unlink", "advancing", False, False, EXPECT),
    Shape("retire-before-unlink", "non-advancing", False, True, CONTROL),
    Shape("read-seqcst", "advancing", False, False, BELOW),
    Shape("read-seqcst", "advancing", False, True, CONTROL),
    Shape("read-acquire", "advancing", False, False, BELOW),
    Shape("read-acquire", "advancing", False, True, CONTROL),
)
#: On a build with a fix: what the fix is for (the unfenced non-advancing stale goal, compared
#: with the unfixed build's reference), its control, and the retire-before-unlink shape, which a
#: fix inside qsbr.c cannot cure.
FIX_PLAN: tuple[Shape, ...] = (
    Shape("stale-goal", "non-advancing", False, False, BELOW),
    Shape("stale-goal", "non-advancing", False, True, CONTROL),
    Shape("retire-before-unlink", "non-advancing", False, False, EXPECT),
)

#: Shapes this architecture cannot show at all, whatever the harness: what the report says
#: instead of a pass.
X86 = ("x86_64", "amd64", "i386", "i686")
UNSHOWABLE = {
    "read-acquire": "x86-64 cannot show this shape: attach's seq_cst store is a locked xchg (a "
                    "full barrier) and TSO never lets a load pass it; the order C11 leaves "
                    "open here (an acquire first load after a seq_cst store) is unchecked on "
                    "this machine: see the Relacy scenario read-acquire, and ARM64's LDAPR in "
                    "docs/findings.md's architecture table",
}


wilson = decide.wilson


# --- locating and building ---------------------------------------------------------------------

def fixes(port: Path) -> dict[str, Path]:
    """The fixes in reference_c/fixes/: name -> patch file."""
    folder = port / "fixes"
    return {p.stem: p for p in sorted(folder.glob("*.patch"))} if folder.is_dir() else {}


@dataclass
class Target:
    """One qsbr.c to build the litmus against."""
    label: str                  # "port 3.13.3-3.13.5" or "CPython 3.14.7"
    release: str                # "port:31303" or "3.14.7"
    profile: ReleaseProfile
    upstream: upstream.Release | None = None    # None: the port's own src/qsbr.c
    fix: str | None = None


def port_targets(profiles: list[ReleaseProfile] | None = None) -> list[Target]:
    return [Target(f"port {p.name}", f"port:{p.c_profile}", p)
            for p in (profiles or list(RELEASE_PROFILES))]


def release_target(source: str, profile: ReleaseProfile | None = None) -> Target:
    try:
        release = upstream.read_release(source)
    except upstream.UpstreamError as exc:
        raise HazardsError(str(exc)) from None
    version = ".".join(map(str, release.version))
    if profile is None:
        try:
            profile = for_version(release.version)
        except UnknownRelease as exc:
            raise HazardsError(f"{exc} (give --profile)") from None
    return Target(f"CPython {version}", version, profile, release)


@dataclass
class Built:
    target: Target
    litmus: Path | None = None
    relacy_source: Path | None = None      # run.py --source DIR (None: the port's own)
    errors: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


_HUNK = re.compile(r"^@@ [^@]* @@ ?(\w*)")


def _apply_fix(patch_file: Path, target: Target, directory: Path, qsbr_c: Path) -> str | None:
    """Apply a fix to the copy ``qsbr_c``; an error string, or None when it applied.  The port's
    copy takes every hunk exactly (-F0); a release's qsbr.c takes the hunk of its own goal
    function (-F2: the hunks' outer context lines may differ from the port's) and has no body
    for the other goal function, whose hunk must be the only one that fails."""
    if target.upstream is None:
        proc = subprocess.run(["patch", "-p1", "-F0", "--no-backup-if-mismatch", "-d",
                               str(directory), "-i", str(patch_file)],
                              capture_output=True, text=True)
        return None if proc.returncode == 0 else (
            f"patch {patch_file.name} does not apply to the port: {proc.stdout}{proc.stderr}")
    functions = [m.group(1) for m in map(_HUNK.match, patch_file.read_text().splitlines())
                 if m]
    proc = subprocess.run(["patch", "-F2", "--no-backup-if-mismatch", "-r", "-",
                           str(qsbr_c), "-i", str(patch_file)], capture_output=True, text=True)
    failed = {int(n) for n in re.findall(r"Hunk #(\d+) FAILED", proc.stdout)}
    text = target.upstream.qsbr_c
    for number, function in enumerate(functions, 1):
        present = re.search(rf"^{re.escape(function)}\(", text, re.M) is not None
        if present == (number in failed):
            return (f"patch {patch_file.name} hunk #{number} ({function}) "
                    f"{'failed on' if present else 'applied to'} {target.label}'s qsbr.c, "
                    f"which {'has' if present else 'lacks'} that function: {proc.stdout}")
    return None


def patched_copy(port: Path, fix: str, destination: Path) -> Path:
    """A copy of the port's reference_c/ (without build outputs) with the fix applied, for the
    bench (``qsbr-conformance bench --fix NAME``).  Raises HazardsError when the fix is unknown
    or does not apply."""
    available = fixes(port)
    if fix not in available:
        raise HazardsError(f"unknown fix {fix} (reference_c/fixes/ has "
                           f"{', '.join(available) or 'none'})")
    shutil.copytree(port, destination, ignore=shutil.ignore_patterns("build", "__pycache__"))
    proc = subprocess.run(["patch", "-p1", "-F0", "--no-backup-if-mismatch", "-d",
                           str(destination), "-i", str(available[fix])],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise HazardsError(f"patch {fix} does not apply to the port: {proc.stdout}{proc.stderr}")
    return destination


def build(target: Target, port: Path, workdir: Path, fix_file: Path | None = None) -> Built:
    """The litmus program for ``target``, and the folder for Relacy's --source."""
    workdir.mkdir(parents=True, exist_ok=True)
    built = Built(target)
    litmus_c = port / "litmus" / "litmus.c"
    stand_ins = [str(port / name) for name in upstream._PORT_SOURCES]
    if target.upstream is None:
        (workdir / "src").mkdir(exist_ok=True)
        qsbr_c = workdir / "src" / "qsbr.c"
        shutil.copyfile(port / "src" / "qsbr.c", qsbr_c)
        command = [os.environ.get("CC", "cc"), *LITMUS_CFLAGS, f"-I{port / 'include'}",
                   f"-I{port / 'harness'}", f"-I{port / 'litmus'}",
                   f"-DQSBR_PROFILE={target.profile.c_profile}"]
    else:
        shim = upstream.prepare(target.upstream, workdir)
        qsbr_c = workdir / "qsbr.c"
        command = [*upstream.compile_command(shim, port, target.profile, LITMUS_CFLAGS),
                   f"-I{port / 'litmus'}"]
    if fix_file is not None:
        error = _apply_fix(fix_file, target, workdir, qsbr_c)
        if error:
            built.errors.append(error)
            return built
    if target.upstream is not None:
        built.relacy_source = workdir
    elif fix_file is not None:
        # run.py --source DIR: DIR/qsbr.c and DIR/include/pycore_qsbr.h
        relacy = workdir / "relacy-source"
        (relacy / "include").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(qsbr_c, relacy / "qsbr.c")
        shutil.copyfile(port / "include" / "pycore_qsbr.h", relacy / "include" / "pycore_qsbr.h")
        built.relacy_source = relacy
    out = workdir / "qsbr-litmus"
    full = [*command, str(qsbr_c), *stand_ins, str(litmus_c), "-o", str(out), "-lpthread"]
    built.commands.append(" ".join(full))
    proc = subprocess.run(full, capture_output=True, text=True)
    if proc.returncode != 0:
        built.errors.append(f"{target.label}: the litmus build failed:\n{proc.stderr[-3000:]}")
    else:
        built.litmus = out
    return built


# --- running -----------------------------------------------------------------------------------

@dataclass
class Outcome:
    target: Target
    shape: Shape
    tally: Tally
    pinned: str
    command: str
    verdict: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None        # the row this one was compared with
    calibration: list[dict[str, Any]] = field(default_factory=list)
    unchecked_here: str | None = None   # why this machine cannot show the shape at all
    relacy: dict[str, Any] | None = None

    @property
    def iterations(self) -> int:
        return self.tally.iterations

    @property
    def forbidden(self) -> int:
        return self.tally.forbidden

    def count(self, name: str) -> int:
        return self.tally.counts.get(name, 0)

    @property
    def per_million(self) -> float:
        return self.tally.per_million

    @property
    def interval(self) -> tuple[float, float]:
        return self.tally.interval

    @property
    def control_ok(self) -> bool:
        return not self.shape.control or (self.forbidden == 0
                                          and self.count("poisoned_reads") == 0)

    @property
    def wrong(self) -> bool:
        """An order the hardware and C11 both guarantee was violated here: a fix or a goal
        that does not order, or a broken harness (exit status 1)."""
        return (self.shape.role == BELOW and self.unchecked_here is None
                and self.verdict.get("verdict") == decide.NOT_BELOW)


class LitmusError(Exception):
    """The litmus program did not produce its RESULT line."""


RESULT_FIELDS = ("iterations", "forbidden", "reached", "old_seen", "freed_while_held",
                 "poisoned_reads")


def run_shape(built: Built, shape: Shape, iterations: int, offsets: int = 64,
              seed: int = 1) -> dict[str, Any]:
    """One call of the litmus program: its counts, ``bands`` and ``pinned``."""
    assert built.litmus is not None
    args = [str(built.litmus), shape.name, shape.goal, str(int(shape.fence)),
            str(int(shape.control)), str(iterations), str(offsets), str(seed)]
    proc = subprocess.run(args, capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    line = next((x for x in lines if x.startswith("RESULT\t")), None)
    if proc.returncode != 0 or line is None:
        raise LitmusError(f"{' '.join(args)}: exit {proc.returncode}: "
                          f"{proc.stderr.strip()[-500:]}")
    fields = line.split("\t")
    counts: dict[str, Any] = dict(zip(RESULT_FIELDS, map(int, fields[5:11]), strict=True))
    counts["pinned"] = fields[11]
    counts["bands"] = [list(map(int, x.split("\t")[1:5])) for x in lines
                       if x.startswith("BAND\t")]
    return counts


def litmus_command(built: Built, shape: Shape, tally: Tally) -> str:
    return " ".join(["qsbr-litmus", shape.name, shape.goal, str(int(shape.fence)),
                     str(int(shape.control)), str(tally.iterations), str(tally.offsets),
                     str(tally.seed)])


# --- Relacy ------------------------------------------------------------------------------------

def relacy_runner(port: Path) -> ModuleType | str:
    """reference_c/relacy/run.py as a module, or why Relacy cannot run here."""
    path = port / "relacy" / "run.py"
    if not path.is_file():
        return f"no {path}"
    spec = importlib.util.spec_from_file_location("qsbr_relacy_run", path)
    if spec is None or spec.loader is None:
        return f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if module.compiler() is None:
        return "no C++ compiler (g++ or clang++; set CXX)"
    if not module.relacy_present():
        return "Relacy headers not found (/usr/include/relacy/relacy.hpp; apt-get install " \
               "relacy-dev)"
    return module


_PATH = re.compile(r"(?<=, )/\S*/(?=[^/\s]+\(\d+\)$)")


def first_failure(trace: str) -> str:
    """The part of a Relacy trace that shows the failing execution: its header and the
    threads' steps after the setup (before()), up to the error."""
    lines = trace.splitlines()
    head = [line for line in lines[:4] if line.strip()]
    try:
        start = next(i for i, line in enumerate(lines) if "[BEFORE END]" in line) + 1
    except StopIteration:
        start = 4
    steps = []
    for line in lines[start:]:
        if not line.strip() or line.startswith("thread "):
            break
        steps.append(_PATH.sub("", line))
    return "\n".join(head + steps)


def model_check(runner: ModuleType, built: Built, scenarios: list[str], workdir: Path,
                profile: ReleaseProfile) -> dict[str, dict[str, Any]]:
    """Relacy's verdict on each scenario for this build (seeded random scheduler)."""
    out = workdir / "relacy"
    (out / "traces").mkdir(parents=True, exist_ok=True)
    cxx = runner.compiler()
    try:
        binary = runner.build(cxx, out, str(profile.c_profile), None, built.relacy_source)
    except subprocess.CalledProcessError as exc:
        errors = [line for line in exc.stderr.splitlines() if "error" in line]
        detail = (errors or exc.stderr.splitlines() or ["(no output)"])[0]
        return {s: {"scenario": s, "verdict": "error", "detail": f"{cxx} failed: {detail}"}
                for s in scenarios}
    results = {}
    for scenario in scenarios:
        log = out / "traces" / f"{scenario}.trace"
        row = runner.run_one(binary, scenario, "random", log)
        trace = log.read_text() if row.get("trace") else ""
        results[scenario] = {
            "scenario": scenario, "verdict": row["verdict"], "detail": row["detail"],
            "iterations": row["iterations"], "scheduler": "random (seeded)",
            "first_failure": first_failure(trace) if trace else "",
            "trace": trace,
        }
    return results


# --- the caller audit --------------------------------------------------------------------------

def caller_audit(source: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """conformance.checks.audit.audit_source(SOURCE) (a CPython tree or release tarball) when
    SOURCE is given and that module is installed; else ([], why not)."""
    if source is None:
        return [], "no CPython source given: the default run builds the port, not a CPython tree"
    try:
        from . import audit  # type: ignore[attr-defined,unused-ignore]
    except ImportError as exc:
        return [], (f"the caller audit was not run: conformance.checks.audit is not importable "
                    f"({exc})")
    try:
        sites = audit.audit_source(source)
    except Exception as exc:  # noqa: BLE001 (the audit's own failure is reported, not fatal)
        return [], f"the caller audit failed: {type(exc).__name__}: {exc}"
    return list(sites), None


# --- the whole run -----------------------------------------------------------------------------

@dataclass
class Report:
    source: str | None
    budget: Budget
    cpu: str
    seed: int = 1
    machine: str = ""
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    builds: list[str] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    audit_note: str | None = None
    relacy_note: str | None = None
    #: shapes run through a free-threaded interpreter's own compiled functions (--binary;
    #: conformance.checks.hazards_live), as that module's dicts
    binary: list[dict[str, Any]] = field(default_factory=list)

    @property
    def controls_ok(self) -> bool:
        return (all(o.control_ok for o in self.outcomes)
                and not any(shape.get("control_failed") for shape in self.binary))

    @property
    def wrong(self) -> list[str]:
        """Rows where an order that must hold was violated (see Outcome.wrong)."""
        rows = [f"{o.target.label}{' + ' + o.target.fix if o.target.fix else ''}: "
                f"{o.shape.name} {o.shape.goal}{' +fence' if o.shape.fence else ''}"
                for o in self.outcomes if o.wrong]
        rows += [f"{s.get('binary')}: {s.get('name')} {s.get('goal')}" for s in self.binary
                 if s.get("wrong") or s.get("compared_verdict") == decide.NOT_BELOW]
        return rows

    @property
    def exit_status(self) -> int:
        return 0 if self.controls_ok and not self.errors and not self.wrong else 1

    def comparisons(self) -> dict[str, int]:
        """How many BELOW rows were conclusive, inconclusive or not below."""
        found: dict[str, int] = {}
        for verdict in [o.verdict.get("verdict") for o in self.outcomes
                        if o.shape.role == BELOW] + [s.get("verdict") for s in self.binary
                                                      if s.get("role") == BELOW] + [
                s["compared_verdict"] for s in self.binary if s.get("compared_verdict")]:
            found[str(verdict)] = found.get(str(verdict), 0) + 1
        return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "cpu model", "processor\t: arm")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine() or "unknown"


def machine() -> str:
    import platform
    return platform.machine().lower()


def _describe(target: Target, shape: Shape) -> str:
    return (f"{target.label}{' + ' + target.fix if target.fix else ''}: {shape.name}, "
            f"{shape.goal} goal{', fence' if shape.fence else ''}"
            f"{', control' if shape.control else ''}")


def run_plan(plan: tuple[Shape, ...], runner: Callable[[Shape], decide.Runner],
             budget: Budget, seed: int, reference: tuple[Tally, str] | None,
             progress: Callable[[str], None], describe: Callable[[Shape], str],
             arch: str) -> tuple[list[tuple[Shape, Tally, dict[str, Any], str | None,
                                            list[dict[str, Any]]]],
                                 tuple[Tally, str] | None]:
    """The decide rule over one build's plan: (shape, tally, verdict, reference label,
    calibration) per row, and the build's reference (given, for a fix's build, or measured
    here from the plan's REFERENCE row)."""
    rows = []
    offsets = reference[0].offsets if reference else None
    for number, shape in enumerate(plan):
        run = runner(shape)
        row_seed = seed + 10_000 * number
        calibration: list[dict[str, Any]] = []
        if shape.role == REFERENCE:
            progress(f"{describe(shape)}: calibrating the offsets "
                     f"({', '.join(map(str, budget.ranges))})" if budget.offsets is None
                     else f"{describe(shape)}: offsets 0..{budget.offsets - 1}")
            offsets, calibration = decide.calibrate(run, budget, row_seed)
            progress(f"{describe(shape)}: offsets 0..{offsets - 1}; running until "
                     f"{budget.observations} observations or {budget.maximum:,} iterations")
            tally = decide.measure_reference(run, budget, offsets, row_seed)
            reference = (tally, describe(shape))
        elif shape.role == EXPECT:
            progress(f"{describe(shape)}")
            tally = decide.measure_reference(run, budget, offsets or budget.ranges[-1],
                                             row_seed)
        else:
            limit = decide.bound(reference[0], budget) if reference else None
            progress(f"{describe(shape)}" + (f": until below {limit:,.2f} per million"
                                             if limit is not None else ""))
            tally = decide.measure_below(run, budget, offsets or budget.ranges[-1], row_seed,
                                         limit)
        verdict = decide.judge(shape.role, tally, reference[0] if reference else None, budget)
        rows.append((shape, tally, verdict,
                     None if shape.role in (REFERENCE, EXPECT) or reference is None
                     else reference[1], calibration))
    return rows, reference


def run(targets: list[Target], port: Path, budget: Budget, fix_names: list[str],
        source: str | None, relacy: bool = True, seed: int = 1,
        progress: Callable[[str], None] = lambda _: None) -> Report:
    """Build and run every shape of the plan on each target (and FIX_PLAN on each target with
    each fix), under the decide rule, with Relacy beside it."""
    available = fixes(port)
    unknown = [name for name in fix_names if name not in available]
    if unknown:
        raise HazardsError(f"unknown fix {', '.join(unknown)} (reference_c/fixes/ has "
                           f"{', '.join(available) or 'none'})")
    report = Report(source, budget, cpu_model(), seed, machine())
    runner: ModuleType | str = relacy_runner(port) if relacy else "not asked (--no-relacy)"
    if isinstance(runner, str):
        report.relacy_note = runner
    jobs = [(t, None) for t in targets] + [
        (Target(t.label, t.release, t.profile, t.upstream, name), available[name])
        for name in fix_names for t in targets]
    references: dict[str, tuple[Tally, str]] = {}
    with tempfile.TemporaryDirectory(prefix="qsbr-hazards-") as scratch:
        scratch_dir = Path(scratch)
        report.audit, report.audit_note = caller_audit(source)
        for number, (target, fix_file) in enumerate(jobs):
            workdir = scratch_dir / f"build-{number}"
            name = target.label + (f" + {target.fix}" if target.fix else "")
            progress(f"[{number + 1}/{len(jobs)}] building the litmus for {name} "
                     f"(QSBR_PROFILE={target.profile.c_profile})")
            built = build(target, port, workdir, fix_file)
            report.builds += built.commands
            if built.errors:
                report.errors += built.errors
                continue
            plan = PLAN if fix_file is None else FIX_PLAN
            checked: dict[str, dict[str, Any]] = {}
            if not isinstance(runner, str):
                scenarios = [s.relacy_scenario for s in plan if s.relacy_scenario]
                progress(f"model-checking {name} under Relacy: {', '.join(scenarios)}")
                checked = model_check(runner, built, scenarios, workdir, target.profile)
                report.errors += [f"{name}: Relacy {r['scenario']}: {r['detail']}"
                                  for r in checked.values() if r["verdict"] == "error"]
            pins: dict[Shape, str] = {}

            def runner_for(shape: Shape, built: Built = built,
                           pins: dict[Shape, str] = pins) -> decide.Runner:
                def run_chunk(n: int, offsets: int, chunk_seed: int) -> dict[str, Any]:
                    counts = run_shape(built, shape, n, offsets, chunk_seed)
                    pins[shape] = counts.pop("pinned")
                    return counts
                return run_chunk

            try:
                rows, reference = run_plan(
                    plan, runner_for, budget, seed + 100_000 * number,
                    references.get(target.label) if fix_file is not None else None,
                    progress, functools.partial(_describe, target), report.machine)
            except LitmusError as exc:
                report.errors.append(str(exc))
                continue
            if fix_file is None and reference is not None:
                references[target.label] = reference
            for shape, tally, verdict, ref, calibration in rows:
                outcome = Outcome(target, shape, tally, pins.get(shape, "none:not run"),
                                  "", verdict, ref, calibration)
                outcome.command = litmus_command(built, shape, tally)
                if report.machine in X86:
                    outcome.unchecked_here = UNSHOWABLE.get(shape.name)
                if shape.relacy_scenario:
                    outcome.relacy = checked.get(shape.relacy_scenario)
                report.outcomes.append(outcome)
    pins_seen = sorted({o.pinned for o in report.outcomes})
    if any(p.startswith("none:") for p in pins_seen):
        report.notes.append("threads NOT pinned: " + "; ".join(
            p.removeprefix("none:") for p in pins_seen if p.startswith("none:")))
    return report


def to_json(report: Report, argv: list[str]) -> dict[str, Any]:
    pins = sorted({o.pinned for o in report.outcomes})
    b = report.budget
    return {
        "command": ["qsbr-conformance", "hazards", *argv],
        "source": report.source,
        "cpu": report.cpu,
        "machine": report.machine,
        "cpus_online": os.cpu_count(),
        "cpus_pinned": pins[0] if len(pins) == 1 else pins,
        "seed": report.seed,
        "budget": {"minimum": b.minimum, "maximum": b.maximum, "observations": b.observations,
                   "margin": b.margin, "chunk": b.chunk, "ranges": list(b.ranges),
                   "calibration": b.calibration, "offsets": b.offsets},
        "decide_rule": b.describe(),
        "zero_means": ZERO_MEANS,
        "control_means": CONTROL_MEANS,
        "interval_method": INTERVAL_METHOD,
        "shape_text": SHAPE_TEXT,
        "shapes": [{
            "name": o.shape.name,
            "release": o.target.release,
            "target": o.target.label,
            "profile": o.target.profile.name,
            "qsbr_profile": o.target.profile.c_profile,
            "goal": o.shape.goal,
            "fence": o.shape.fence,
            "fix": o.target.fix,
            "control": o.shape.control,
            "role": o.shape.role,
            "iterations": o.iterations,
            "forbidden": o.forbidden,
            "observed": o.forbidden > 0,
            "per_million": o.per_million,
            "interval": list(o.interval),
            "interval_method": INTERVAL_METHOD,
            "verdict": o.verdict.get("verdict"),
            "why": o.verdict.get("why"),
            "reference": o.reference,
            "unchecked_here": o.unchecked_here,
            "wrong": o.wrong,
            "offsets": o.tally.offsets,
            "seed": o.tally.seed,
            "chunks": o.tally.chunks,
            "bands": o.tally.band_rows(),
            "calibration": o.calibration,
            "reached": o.count("reached"),
            "old_seen": o.count("old_seen"),
            "freed_while_held": o.count("freed_while_held"),
            "poisoned_reads": o.count("poisoned_reads"),
            "control_ok": o.control_ok if o.shape.control else None,
            "pinned": o.pinned,
            "litmus_command": o.command,
            "relacy": o.relacy,
        } for o in report.outcomes] + [dict(shape, source="binary") for shape in report.binary],
        "comparisons": report.comparisons(),
        "relacy_note": report.relacy_note,
        "audit": report.audit,
        "audit_note": report.audit_note,
        "notes": report.notes,
        "errors": report.errors,
        "builds": report.builds,
        "controls_ok": report.controls_ok,
        "wrong": report.wrong,
        "exit_status": report.exit_status,
    }


def run_binary(report: Report, python: str, budget: Budget,
               progress: Callable[[str], None] | None = None) -> None:
    """The litmus through the interpreter ``python``'s own compiled ``_Py_qsbr_*`` functions
    (``python -m conformance.checks.hazards_live``, which needs this package installed in that
    free-threaded interpreter); its shapes go to ``report.binary``, a failure to ``errors``."""
    import subprocess
    import tempfile

    from ..drivers.isolation import python_command

    if progress is not None:
        progress(f"the interpreter binary {python}: {budget.describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "binary.json"
        try:
            # That interpreter's own installed package, not a checkout in the working
            # folder (-P, and a scratch working folder).
            proc = subprocess.run(python_command("conformance.checks.hazards_live",
                                                 *decide.budget_arguments(budget), "--json",
                                                 str(out), "--quiet", python=python),
                                  capture_output=True, text=True, cwd=tmp)
        except OSError as exc:
            report.errors.append(f"--binary {python}: {exc}")
            return
        if not out.exists():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:]
            report.errors.append(f"--binary {python}: exited {proc.returncode} without a "
                                 f"report (is qsbr-conformance installed there?) {tail}")
            return
        data = json.loads(out.read_text(encoding="utf-8"))
    if data.get("unavailable") or data.get("error"):
        report.errors.append(f"--binary {python}: "
                             f"{data.get('unavailable') or data.get('error')}")
        return
    report.binary.extend(data.get("shapes", []))



def compare_binaries(report: Report) -> None:
    """A binary whose own unfixed stale goal was not observed often enough (a patched build:
    its "reference" row is the fixed code) is compared with the first binary of the same
    release whose reference was observed (its unpatched build, run first and at the same
    offsets): the row gets ``compared_with``, ``compared_verdict`` and ``compared_why`` (the
    decide rule's, as for a fix's row of the port)."""
    budget = report.budget
    observed = [s for s in report.binary if s.get("role") == REFERENCE
                and s.get("verdict") == decide.OBSERVED]
    for row in report.binary:
        if row.get("role") != REFERENCE or row.get("verdict") == decide.OBSERVED:
            continue
        other = next((s for s in observed if s.get("release") == row.get("release")
                      and s.get("binary") != row.get("binary")), None)
        if other is None:
            continue
        reference, tally = Tally(int(other["offsets"]), 0), Tally(int(row["offsets"]), 0)
        reference.add({"iterations": other["iterations"], "forbidden": other["forbidden"]})
        tally.add({"iterations": row["iterations"], "forbidden": row["forbidden"]})
        verdict = decide.judge(BELOW, tally, reference, budget)
        if row["offsets"] != other["offsets"]:
            verdict["verdict"] = decide.INCONCLUSIVE
            verdict["why"] += (f"; but at other offsets (0..{row['offsets'] - 1} against "
                               f"0..{other['offsets'] - 1}): not comparable")
        row.update(compared_with=other["binary"], compared_verdict=verdict["verdict"],
                   compared_why=verdict["why"])
