"""``qsbr-conformance upstream SOURCE``: CPython's own QSBR as the referee.

SOURCE is a CPython source tree or release tarball.  The command

1. reads the release's ``Python/qsbr.c``, ``Include/internal/pycore_qsbr.h`` and version;
2. compares both, line for line, with the port (reference_c/) as each release profile compiles
   it, after removing the port's documented differences (its preamble comment, the
   ``#include`` lines, the profile's conditionals resolved for that profile, runs of blank
   lines; the port's variants, mutants and fixes, are patch files outside it) and, on the
   upstream side, the one edit the build needs (the
   ``holds_gil`` assert in ``_Py_qsbr_unregister``; the stand-in has no GIL): a release matches
   a profile when nothing else differs, and every other difference is printed;
3. builds the release's own qsbr.c and pycore_qsbr.h against the port's stand-ins (locks,
   thread states with stop-the-world, allocator) into the C tests, the torture and a C ABI
   library, and runs the C tests, the torture and the differential run (through
   ``conformance.cabi``) on them;
4. model-checks the release's qsbr.c under Relacy with the port's harness and scenarios
   (``reference_c/relacy/run.py --source``), where a C++ compiler and Relacy are installed (the
   output says when it was not run, and why).

Exit status: 0 when the release matches the profile its version has in the release matrix with
zero differences and every run passes; 1 otherwise; 2 for a usage error.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import sources
from ..model.profiles import RELEASE_PROFILES, ReleaseProfile

QSBR_C = "Python/qsbr.c"
QSBR_H = "Include/internal/pycore_qsbr.h"
PATCHLEVEL = "Include/patchlevel.h"

#: The one edit allowed on upstream's code: the GIL assert (3.13: ``tstate->_status.holds_gil``,
#: 3.14: ``tstate->holds_gil``), which the port's GIL-less stand-in cannot satisfy.
GIL_ASSERT = re.compile(r"^\s*assert\(!tstate->(_status\.)?holds_gil\);\s*$")
INCLUDE = re.compile(r"^\s*#\s*include\b")
DIRECTIVE = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b\s*(.*?)\s*$")


class UpstreamError(Exception):
    """A usage error: the source is missing or is not a CPython tree."""


def port_sources(explicit: str | None = None) -> Path:
    """The port's sources (only read): --source, else where conformance.sources finds them."""
    try:
        port = Path(explicit) if explicit else sources.reference_c()
    except sources.SourcesNotFound as exc:
        raise UpstreamError(f"{exc} (or give --source PATH/reference_c)") from None
    if not (port / "src" / "qsbr.c").is_file():
        raise UpstreamError(f"the port's sources are not at {port} (no src/qsbr.c; give "
                            "--source PATH/reference_c)")
    return port


# --- reading a release -------------------------------------------------------------------------

@dataclass
class Release:
    source: str
    version: tuple[int, int, int]
    qsbr_c: str
    qsbr_h: str


def _version(patchlevel: str) -> tuple[int, int, int]:
    parts = []
    for name in ("PY_MAJOR_VERSION", "PY_MINOR_VERSION", "PY_MICRO_VERSION"):
        match = re.search(rf"#define\s+{name}\s+(\d+)", patchlevel)
        if match is None:
            raise UpstreamError(f"{PATCHLEVEL} has no {name}")
        parts.append(int(match.group(1)))
    return parts[0], parts[1], parts[2]


def read_release(source: str) -> Release:
    path = Path(source)
    if path.is_dir():
        files = {}
        for name in (QSBR_C, QSBR_H, PATCHLEVEL):
            if not (path / name).is_file():
                raise UpstreamError(f"{source}: no {name} (not a CPython 3.13+ source tree)")
            files[name] = (path / name).read_text(encoding="utf-8")
    elif path.is_file():
        try:
            archive = tarfile.open(path)
        except (tarfile.TarError, OSError) as exc:
            raise UpstreamError(f"{source}: not a readable tarball ({exc})") from None
        files = {}
        with archive:
            for member in archive.getmembers():
                parts = member.name.split("/", 1)
                if len(parts) == 2 and parts[1] in (QSBR_C, QSBR_H, PATCHLEVEL) and member.isfile():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        files[parts[1]] = handle.read().decode("utf-8")
        missing = [name for name in (QSBR_C, QSBR_H, PATCHLEVEL) if name not in files]
        if missing:
            raise UpstreamError(f"{source}: the tarball has no {', '.join(missing)} "
                                "(not a CPython 3.13+ source release)")
    else:
        raise UpstreamError(f"{source}: no such file or directory")
    return Release(source, _version(files[PATCHLEVEL]), files[QSBR_C], files[QSBR_H])


# --- normalising ------------------------------------------------------------------------------

def _macros(profile: ReleaseProfile) -> dict[str, int]:
    """The values of reference_c/include/qsbr_profile.h's switches for one profile."""
    return {"QSBR_PROFILE": profile.c_profile,
            "QSBR_DEFERRALS": int(profile.line == "3.13"),
            "QSBR_RESERVE_INDEX_AFTER_UNLOCK": int(profile.index_after_unlock),
            "QSBR_ALIGNED_ARRAY": int(profile.aligned_array)}


def _evaluate(kind: str, expr: str, macros: dict[str, int]) -> bool | None:
    """The value of a conditional on the profile's switches (qsbr_profile.h), or None if it
    tests anything else (then it is kept, and compared, as it is)."""
    if kind in ("ifdef", "ifndef"):
        return None if expr not in macros else kind == "ifdef"
    expr = re.sub(r"//.*|/\*.*?\*/", "", expr).strip()
    expr = re.sub(r"defined\s*\(\s*(\w+)\s*\)|defined\s+(\w+)",
                  lambda m: "1" if (m.group(1) or m.group(2)) in macros else m.group(0), expr)
    names = re.findall(r"[A-Za-z_]\w*", expr)
    if any(name not in macros for name in names):
        return None
    python = re.sub(r"[A-Za-z_]\w*", lambda m: str(macros.get(m.group(0), 0)), expr)
    python = python.replace("&&", " and ").replace("||", " or ")
    python = re.sub(r"!(?!=)", " not ", python)
    return bool(eval(python, {"__builtins__": {}}, {}))  # noqa: S307 (digits and operators)


def unifdef(text: str, macros: dict[str, int]) -> list[str]:
    """The lines of ``text`` with every conditional on the port's switches resolved."""
    out: list[str] = []
    # One frame per open conditional: (resolved?, emitting now?, a branch already taken?)
    stack: list[list[bool]] = []

    def emitting() -> bool:
        return all(frame[1] for frame in stack)

    for number, line in enumerate(text.splitlines(), 1):
        match = DIRECTIVE.match(line)
        if match is None:
            if emitting():
                out.append(line)
            continue
        kind, expr = match.groups()
        if kind in ("if", "ifdef", "ifndef"):
            value = _evaluate(kind, expr, macros)
            if value is None:
                stack.append([False, True, False])
                if emitting():
                    out.append(line)
            else:
                stack.append([True, value, value])
            continue
        if not stack:
            raise ValueError(f"line {number}: #{kind} without #if")
        frame = stack[-1]
        if not frame[0]:
            if kind == "elif":
                raise ValueError(f"line {number}: #elif on a condition that is not the port's")
            if kind == "endif":
                stack.pop()
            if emitting() or (kind == "endif" and all(f[1] for f in stack)):
                out.append(line)
            continue
        if kind == "elif":
            value = _evaluate("if", expr, macros)
            if value is None:
                raise ValueError(f"line {number}: #elif mixes the port's switches with others")
            frame[1] = value and not frame[2]
            frame[2] = frame[2] or value
        elif kind == "else":
            frame[1] = not frame[2]
            frame[2] = True
        else:
            stack.pop()
    if stack:
        raise ValueError("unterminated #if")
    return out


def _tidy(lines: list[str]) -> list[str]:
    """Drop #include lines, strip trailing blanks, collapse runs of blank lines."""
    out: list[str] = []
    for line in lines:
        if INCLUDE.match(line):
            continue
        line = line.rstrip()
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def normalise_port(text: str, profile: ReleaseProfile) -> list[str]:
    """The port's file as this profile compiles it, without its documented differences."""
    lines = text.splitlines()
    blank = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    return _tidy(unifdef("\n".join(lines[blank + 1:]), _macros(profile)))


def normalise_upstream(text: str, name: str) -> tuple[list[str], list[str]]:
    """Upstream's file without its includes and the GIL assert; the edits made, as notes."""
    kept, edits = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if name == QSBR_C and GIL_ASSERT.match(line):
            edits.append(f"{name}:{number}: removed `{line.strip()}` (the port's thread-state "
                         "stand-in has no GIL; the only edit made to upstream's code)")
            continue
        kept.append(line)
    return _tidy(kept), edits


@dataclass
class Comparison:
    profile: ReleaseProfile
    diffs: dict[str, list[str]]        # file -> unified diff lines (empty: identical)

    @property
    def identical(self) -> bool:
        return not any(self.diffs.values())

    def count(self) -> int:
        return sum(1 for lines in self.diffs.values() for line in lines
                   if line[:1] in "+-" and not line.startswith(("+++", "---")))


def compare(release: Release, port: Path) -> tuple[list[Comparison], list[str]]:
    upstream_c, edits = normalise_upstream(release.qsbr_c, QSBR_C)
    upstream_h, _ = normalise_upstream(release.qsbr_h, QSBR_H)
    port_c = (port / "src" / "qsbr.c").read_text(encoding="utf-8")
    port_h = (port / "include" / "pycore_qsbr.h").read_text(encoding="utf-8")
    results = []
    for profile in RELEASE_PROFILES:
        diffs = {}
        for name, ours, theirs in ((QSBR_C, normalise_port(port_c, profile), upstream_c),
                                   (QSBR_H, normalise_port(port_h, profile), upstream_h)):
            diffs[name] = list(difflib.unified_diff(
                ours, theirs, f"port ({profile.name}) {name}", f"{release.source} {name}",
                lineterm="", n=2))
        results.append(Comparison(profile, diffs))
    return results, edits


# --- building and running upstream's code against the port's stand-ins --------------------------

#: Upstream's includes that the port has no file for; each becomes a shim of the stand-ins.
_SHIMS = ("Python.h", "pycore_initconfig.h", "pycore_interp.h", "pycore_pystate.h")
_PRELUDE = """\
// Included first in every file of the upstream build (gcc -include): the stand-ins for what
// CPython's Python.h provides before pycore_qsbr.h (3.14's header no longer includes
// pycore_lock.h itself).
#include <assert.h>
#include <stdbool.h>
#include <string.h>
#include "qsbr_pyport.h"
#include "pyatomic.h"
#include "pycore_lock.h"
#include "pycore_pymem.h"
"""
_PORT_SOURCES = ("src/lock.c", "src/pymem.c", "src/pystate.c", "src/qsbr_api.c",
                 "src/qsbr_layout.c", "harness/torture.c")
_TESTS = ("test_unit.c", "test_threads.c", "test_fork.c", "main.c")
_CFLAGS = ("-std=c11", "-Wall", "-Wextra", "-D_GNU_SOURCE", "-O1", "-g")


@dataclass
class Run:
    name: str
    ok: bool
    summary: str
    output: str = ""


@dataclass
class Build:
    directory: Path
    profile: ReleaseProfile
    tests: Path | None = None
    torture: Path | None = None
    library: Path | None = None
    errors: list[str] = field(default_factory=list)


def prepare(release: Release, workdir: Path) -> Path:
    """Write the release's pycore_qsbr.h, the shims and its qsbr.c (less the GIL assert) into
    ``workdir``: ``workdir/qsbr.c`` and the include folder, which is returned."""
    shim = workdir / "include"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "pycore_qsbr.h").write_text(release.qsbr_h, encoding="utf-8")
    for name in _SHIMS:
        # Python.h brings <assert.h>, as upstream's does: under Relacy, which redefines
        # assert, that restores the NDEBUG meaning for qsbr.c (run_model_checker)
        (shim / name).write_text(f"// shim for upstream's {name}: see qsbr_upstream_prelude.h\n"
                                 + ("#include <assert.h>\n" if name == "Python.h" else "")
                                 + '#include "pycore_tstate.h"\n', encoding="utf-8")
    (shim / "qsbr_upstream_prelude.h").write_text(_PRELUDE, encoding="utf-8")
    kept = [line for line in release.qsbr_c.splitlines() if not GIL_ASSERT.match(line)]
    (workdir / "qsbr.c").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return shim


def compile_command(shim: Path, port: Path, profile: ReleaseProfile,
                    cflags: tuple[str, ...] = _CFLAGS) -> list[str]:
    """The compiler and flags that build a prepared release (``prepare``) against the port's
    stand-ins; the caller adds ``workdir/qsbr.c``, the stand-ins' sources and its own."""
    return [os.environ.get("CC", "cc"), *cflags, f"-I{shim}", f"-I{port / 'include'}",
            f"-I{port / 'harness'}", "-include", "qsbr_upstream_prelude.h",
            f"-DQSBR_PROFILE={profile.c_profile}"]


def build(release: Release, profile: ReleaseProfile, port: Path, workdir: Path) -> Build:
    shim = prepare(release, workdir)
    qsbr_c = workdir / "qsbr.c"
    cc = os.environ.get("CC", "cc")
    common = compile_command(shim, port, profile)
    sources = [str(qsbr_c), *(str(port / name) for name in _PORT_SOURCES)]
    result = Build(workdir, profile)
    targets = {
        "tests": [*sources, *(str(port / "tests" / name) for name in _TESTS)],
        "torture": [*sources, str(port / "tests" / "torture_main.c")],
    }
    for target, files in targets.items():
        out = workdir / f"upstream-{target}"
        proc = subprocess.run([*common, *files, "-o", str(out), "-lpthread"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            result.errors.append(f"{target}: {cc} failed:\n{proc.stderr[-3000:]}")
        else:
            setattr(result, target, out)
    library = workdir / "libqsbr-upstream.so"
    proc = subprocess.run([*common, "-fPIC", "-shared", *sources, "-o", str(library),
                           "-lpthread"], capture_output=True, text=True)
    if proc.returncode != 0:
        result.errors.append(f"library: {cc} failed:\n{proc.stderr[-3000:]}")
    else:
        result.library = library
    return result


def run_tests(binary: Path) -> Run:
    proc = subprocess.run([str(binary)], capture_output=True, text=True, timeout=600)
    last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    ok = proc.returncode == 0 and last.endswith(" 0 failed")
    return Run("C tests", ok, last if proc.returncode >= 0 else
               f"killed by signal {-proc.returncode}", proc.stdout[-3000:] + proc.stderr[-3000:])


def run_torture(binary: Path, seconds: float) -> Run:
    proc = subprocess.run([str(binary), "-q", "-s", str(seconds)], capture_output=True,
                          text=True, timeout=seconds + 300)
    lines = proc.stdout.strip().splitlines()
    final = next((line for line in lines if line.startswith("final")), "(no final line)")
    return Run(f"torture ({seconds:g} s)", proc.returncode == 0,
               f"{'PASS' if proc.returncode == 0 else 'FAIL'}: {final}",
               proc.stdout[-3000:] + proc.stderr[-3000:])


def run_differential(library: Path, profile: ReleaseProfile, examples: int) -> Run:
    """The conformance run of the release's own qsbr.c (built as a C ABI library), through the
    one runner (conformance.checks.runner.run), isolated, with seed 1 and no live phase."""
    from ..drivers import target as targets
    from . import runner
    from .plan import Plan

    plan = Plan(seed=1, examples=examples, live_examples=0)
    target = targets.resolve("conformance.cabi:load", profile.name, library=str(library))
    try:
        result = runner.run(plan, target)
    except targets.TargetError as exc:
        return Run("differential", False, f"cannot load the library: {exc}")
    failing = sorted({fact for failure in result.failures for fact in failure.facts})
    unchecked = [fact for fact in result.fact_ids if result.fact_status(fact) == "UNCHECKED"]
    if result.conforms:
        summary = (f"CONFORMS: {result.implementation} ({result.profile_label}); "
                   f"{result.ledger.steps} steps in {result.ledger.examples} examples, "
                   f"{result.seconds:.1f} s (seed {plan.seed})")
    else:
        summary = (f"DOES NOT CONFORM: {result.implementation} ({result.profile_label})"
                   + (f" fails {', '.join(failing)}" if failing else "")
                   + (f"; never checked: {', '.join(unchecked)}" if unchecked else "")
                   + (" (interrupted)" if result.interrupted else ""))
    output = "\n\n".join(f"{failure.check} [{', '.join(failure.facts)}]: {failure.message}\n"
                          + "\n".join(f"    {step}" for step in failure.steps)
                          for failure in result.failures)
    return Run("differential", result.conforms, summary, output[-6000:])


def run_model_checker(workdir: Path, profile: ReleaseProfile, port: Path) -> Run | str:
    """Relacy over upstream's qsbr.c (the build's workdir: the edited qsbr.c, include/), with
    the port's Relacy harness and plan for the correct port (reference_c/relacy/run.py
    --source).  A string says why it could not run."""
    runner = port / "relacy" / "run.py"
    if not runner.is_file():
        return f"no {runner}"
    proc = subprocess.run([sys.executable, str(runner), "--source", str(workdir),
                           "--profile", str(profile.c_profile), "--build",
                           str(workdir / "relacy"), "--no-mutants"],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode == 2:    # run.py's own verdict: no C++ compiler, or no Relacy headers
        return (proc.stderr.strip().splitlines() or ["exit 2"])[-1].removeprefix(
            "check-relacy: ")
    last = next((line for line in reversed(proc.stdout.splitlines())
                 if line.startswith("check-relacy:")), f"exit {proc.returncode}")
    return Run("model checker (Relacy)", proc.returncode == 0, last.removeprefix("check-relacy: "),
               proc.stdout[-6000:] + proc.stderr[-3000:])
