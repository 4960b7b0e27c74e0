"""Hardware litmus of QSBR's ordering shapes through the running interpreter's OWN code.

The free-threaded interpreter that runs this module is the subject: its compiled
``_Py_qsbr_advance``, ``_Py_qsbr_poll`` and non-advancing goal function
(``_Py_qsbr_shared_next`` on 3.13.6+ and 3.14, ``_Py_qsbr_deferred_advance`` on 3.13.0-3.13.5)
are called at the addresses :mod:`conformance.checks.symbols` finds in its ELF symbol table,
and the header inlines (``_Py_qsbr_quiescent_state``, ``_Py_qbsr_goal_reached``'s test) come
from its own installed ``pycore_qsbr.h``.  The loop runs in C (``_hazard_probe``): two real,
attached thread states of this interpreter, pinned to two CPUs, synchronised per iteration
by spin barriers (no sleeps), each side starting its racing part after a random offset
(reference_c/litmus/litmus_core.h, the port's litmus core).  See the C file for the exact
per-iteration protocol.  How long each shape runs and what its count says is
:mod:`conformance.checks.decide`'s rule, the same as the port's harness: a calibration sweep of
offset ranges, the unfixed stale goal (the reference) until 30 observations, every other row
until it is conclusively below a tenth of that rate or inconclusive on this machine.

Shapes (each counts the same forbidden outcome: the reader's quiescent state reached the
writer's goal while the reader loaded the old pointer after that quiescent state):

* ``stale-goal``, non-advancing goal: unlink (release store), then the non-advancing goal.
  Impossible under sequential consistency; store buffering (x86-TSO, ARM) allows it.
* ``stale-goal``, advancing goal (``_Py_qsbr_advance``, a full-barrier RMW): must be
  conclusively below the reference.
* ``stale-goal``, non-advancing goal with a seq_cst fence before the goal load: likewise.
* ``retire-before-unlink``: the goal taken before the unlink (``dict_merge``'s clone path).
  Allowed even under sequential consistency: a plain bug.
* ``read-after-attach`` (S-READ-1): the reader attaches (``PyEval_RestoreThread``, the
  interpreter's own attach: ``_Py_qsbr_attach``'s seq_cst store) and loads the pointer; the
  writer unlinks, takes the advancing goal and polls.  Forbidden: the poll reclaimed while the
  reader loaded the old pointer.  With a seq_cst first load C11 forbids it (must be below the
  reference); with an acquire first load C11 allows it, but only hardware whose acquire loads
  may pass a store (ARM64 ``LDAPR``) can show it, not x86 (the seq_cst store is an ``xchg``):
  there the row is reported as unchecked here, never as a pass.

A zero count means "not observed in that many iterations", never "impossible".  A row that
must be below the reference but is not (``wrong``) means the order it relies on failed on this
machine, or the harness is broken: :func:`main` exits 1 then.

``python -m conformance.checks.hazards_live --iterations N --json PATH`` runs every shape in
this interpreter (for ``qsbr-conformance hazards --binary PYTHON``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import sysconfig
from collections.abc import Callable
from typing import Any, NamedTuple

from . import decide
from .decide import BELOW, EXPECT, REFERENCE


class Shape(NamedTuple):
    name: str
    goal: str           # the writer's goal: "non-advancing" or "advancing"
    fence: bool         # a seq_cst fence between the unlink and the goal load
    role: str           # decide.REFERENCE / BELOW / EXPECT
    load: str = "seq_cst"   # the reader's (first) load of the pointer: "seq_cst" or "acquire"


#: The shapes run, in order: the first is the reference the BELOW rows are compared with.
SHAPES: tuple[Shape, ...] = (
    Shape("stale-goal", "non-advancing", False, REFERENCE),
    Shape("stale-goal", "advancing", False, BELOW),
    Shape("stale-goal", "non-advancing", True, BELOW),
    Shape("retire-before-unlink", "non-advancing", False, EXPECT),
    Shape("read-after-attach", "advancing", False, BELOW, "seq_cst"),
    Shape("read-after-attach", "advancing", False, BELOW, "acquire"),
)

#: Shapes x86-64 cannot show at all: (name, load) -> why.
UNSHOWABLE_ON_X86 = {
    ("read-after-attach", "acquire"):
        "x86-64 cannot show this shape: the interpreter's attach is a seq_cst store (a locked "
        "xchg, a full barrier) and TSO never lets a load pass it; the order C11 leaves open "
        "(an acquire first load after that store) is unchecked on this machine",
}

#: Two-sided confidence of the reported interval.
CONFIDENCE = 0.95

Progress = Callable[[str, int, int], None]


class Unavailable(Exception):
    """The litmus cannot run in this interpreter (the reason is the message)."""


def label(shape: dict[str, Any] | Shape) -> str:
    """``stale-goal/non-advancing``, ``stale-goal/non-advancing+fence``,
    ``read-after-attach/acquire``: unique per shape."""
    if isinstance(shape, Shape):
        shape = shape._asdict()
    if shape["name"] == "read-after-attach":
        return f"{shape['name']}/{shape['load']}"
    return f"{shape['name']}/{shape['goal']}" + ("+fence" if shape["fence"] else "")


def _probe():
    from . import _hazard_probe  # type: ignore[attr-defined]
    return _hazard_probe


def cpus() -> tuple[int, int]:
    """The two CPUs the threads are pinned to: the first two this process may run on."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise Unavailable(f"this process may run on {len(allowed)} CPU(s) only "
                          f"({allowed}): the litmus needs two threads running at once")
    return allowed[0], allowed[1]


@functools.lru_cache(maxsize=1)
def addresses() -> dict[str, int]:
    """Run-time addresses of the interpreter's advance, poll and non-advancing goal functions
    (keys: "advance", "poll", "batch"); read once per process (pyelftools is slow to import
    and to scan on 3.13t)."""
    from .symbols import SymbolsUnavailable, find_functions
    batch = _probe().BATCH
    names = {"advance": "_Py_qsbr_advance", "poll": "_Py_qsbr_poll", "batch": batch}
    try:
        found = find_functions(tuple(names.values()))
    except SymbolsUnavailable as exc:
        raise Unavailable(f"the interpreter's QSBR functions cannot be located: {exc}") from None
    return {key: found[name] for key, name in names.items()}


def unavailable_reason() -> str | None:
    """Why the litmus cannot run here, or None when it can."""
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return f"{sys.executable} is not a free-threaded build (Py_GIL_DISABLED unset)"
    if getattr(sys, "_is_gil_enabled", lambda: True)():
        return ("the GIL is enabled at run time (PYTHON_GIL=1, or an extension module that "
                "needs it): the litmus needs two threads attached at once")
    try:
        _probe()
    except ImportError as exc:
        return f"conformance.checks._hazard_probe is not built for this interpreter ({exc})"
    try:
        cpus()
        addresses()
    except Unavailable as exc:
        return str(exc)
    return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def live_shapes(budget: decide.Budget, progress: Progress | None = None,
                seed: int = 1) -> list[dict[str, Any]]:
    """Run every shape in this interpreter under the decide rule; one dict per shape.

    ``progress(label, done, maximum)`` is called after each chunk of iterations.  Raises
    :class:`Unavailable` when the litmus cannot run here.  Stops on iteration counts only.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise Unavailable(reason)
    probe, where, pinned = _probe(), addresses(), cpus()
    release = platform.python_version()
    model = cpu_model()
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")

    def runner(shape: Shape) -> decide.Runner:
        done = [0]

        def run(n: int, offsets: int, chunk_seed: int) -> dict[str, Any]:
            counts = dict(probe.run(shape.name, shape.goal, shape.fence, n, pinned,
                                    where["advance"], where["poll"], where["batch"],
                                    acquire=shape.load == "acquire", offsets=offsets,
                                    seed=chunk_seed))
            done[0] += n
            if progress is not None:
                progress(label(shape), done[0], budget.maximum)
            return counts
        return run

    shapes = []
    reference: decide.Tally | None = None
    for number, shape in enumerate(SHAPES):
        run = runner(shape)
        row_seed = seed + 10_000 * number
        calibration: list[dict[str, Any]] = []
        if shape.role == REFERENCE:
            offsets, calibration = decide.calibrate(run, budget, row_seed)
            tally = decide.measure_reference(run, budget, offsets, row_seed)
            reference = tally
        elif shape.role == EXPECT:
            tally = decide.measure_reference(run, budget, reference.offsets if reference
                                             else budget.ranges[-1], row_seed)
        else:
            limit = decide.bound(reference, budget) if reference else None
            tally = decide.measure_below(run, budget, reference.offsets if reference
                                         else budget.ranges[-1], row_seed, limit)
        verdict = decide.judge(shape.role, tally, reference, budget)
        unchecked = UNSHOWABLE_ON_X86.get((shape.name, shape.load)) if x86 else None
        n, k = tally.iterations, tally.forbidden
        low, high = tally.interval
        function = "_Py_qsbr_advance" if shape.goal == "advancing" else probe.BATCH
        shapes.append({
            "name": shape.name, "release": release, "binary": sys.executable,
            "goal": shape.goal, "fence": shape.fence, "load": shape.load, "fix": None,
            "control": False, "role": shape.role,
            "source": "binary", "goal_function": function,
            "iterations": n, "forbidden": k,
            "per_million": tally.per_million,
            "interval": [low, high], "confidence": CONFIDENCE,
            "observed": k > 0,
            "verdict": verdict["verdict"], "why": verdict["why"],
            "reference": None if shape.role in (REFERENCE, EXPECT) else label(SHAPES[0]),
            "unchecked_here": unchecked,
            "wrong": (shape.role == BELOW and unchecked is None
                      and verdict["verdict"] == decide.NOT_BELOW),
            "control_failed": False,
            "offsets": tally.offsets, "seed": tally.seed, "chunks": tally.chunks,
            "bands": tally.band_rows(), "calibration": calibration,
            "cpus": list(pinned), "cpu_model": model,
            "counts": tally.counts,
        })
    return shapes


def render(shapes: list[dict[str, Any]]) -> str:
    lines = []
    for s in shapes:
        low, high = s["interval"]
        verdict = ("NOT BELOW THE UNFIXED RATE (the order failed, or a broken harness)"
                   if s["wrong"] else "unchecked here" if s["unchecked_here"]
                   else s["verdict"])
        lines.append(f"{s['release']}t {label(s):40} {s['forbidden']:>9} / {s['iterations']:<9}"
                     f" {s['per_million']:>10.1f} per million  [{low:.1f}, {high:.1f}]"
                     f"  offsets 0..{s['offsets'] - 1}  {s['role']}: {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.checks.hazards_live",
        description="Hardware litmus of QSBR shapes through this interpreter's own QSBR "
                    "functions. Exit status: 0 ran (no row that must be below the unfixed rate "
                    "was above it), 1 such a row was not below (the order failed, or a broken "
                    "harness), 2 cannot run here (reason on stderr and in the JSON as "
                    "'unavailable'), 3 the harness failed (in the JSON as 'error'). The JSON "
                    "is written in each of these cases.")
    decide.add_budget_options(parser)
    parser.add_argument("--seed", type=int, default=1, help="seed of the offsets (default 1)")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)

    def progress(what: str, done: int, total: int) -> None:
        print(f"{what}: {done}/{total}", file=sys.stderr, flush=True)

    try:
        budget = decide.budget_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    report: dict[str, Any] = {"binary": sys.executable, "release": platform.python_version(),
                              "cpu_model": cpu_model(), "decide_rule": budget.describe(),
                              "shapes": []}
    try:
        report["shapes"] = live_shapes(budget, None if args.quiet else progress, args.seed)
    except Unavailable as exc:
        report["unavailable"] = str(exc)
        print(f"hazards_live: cannot run: {exc}", file=sys.stderr)
    except (RuntimeError, OSError) as exc:     # the probe could not start or pin its threads
        report["error"] = f"{type(exc).__name__}: {exc}"
        print(f"hazards_live: the harness failed: {report['error']}", file=sys.stderr)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
    if "unavailable" in report:
        return 2
    if "error" in report:
        return 3
    print(render(report["shapes"]))
    return 1 if any(s["wrong"] for s in report["shapes"]) else 0


if __name__ == "__main__":
    sys.exit(main())
