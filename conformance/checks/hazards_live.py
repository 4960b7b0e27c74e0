"""Hardware litmus of QSBR's ordering shapes through the running interpreter's OWN code.

The free-threaded interpreter that runs this module is the subject: its compiled
``_Py_qsbr_advance``, ``_Py_qsbr_poll`` and non-advancing goal function
(``_Py_qsbr_shared_next`` on 3.13.6+ and 3.14, ``_Py_qsbr_deferred_advance`` on 3.13.0-3.13.5)
are called at the addresses :mod:`conformance.checks.symbols` finds in its ELF symbol table,
and the header inlines (``_Py_qsbr_quiescent_state``, ``_Py_qbsr_goal_reached``'s test) come
from its own installed ``pycore_qsbr.h``.  The loop runs in C (``_hazard_probe``): two real,
attached thread states of this interpreter, pinned to two CPUs, synchronised per iteration
by spin barriers (no sleeps).  See the C file for the exact per-iteration protocol.

Shapes (each counts the same forbidden outcome: the reader's quiescent state reached the
writer's goal while the reader loaded the old pointer after that quiescent state):

* ``stale-goal``, non-advancing goal: unlink (release store), then the non-advancing goal.
  Impossible under sequential consistency; store buffering (x86-TSO, ARM) allows it.
* ``stale-goal``, advancing goal (``_Py_qsbr_advance``, a full-barrier RMW): control, must be 0.
* ``stale-goal``, non-advancing goal with a seq_cst fence before the goal load: control, must
  be 0.
* ``retire-before-unlink``: the goal taken before the unlink (``dict_merge``'s clone path).
  Allowed even under sequential consistency: a plain bug.
* ``read-after-attach`` (S-READ-1): the reader attaches (``PyEval_RestoreThread``, the
  interpreter's own attach: ``_Py_qsbr_attach``'s seq_cst store) and loads the pointer; the
  writer unlinks, takes the advancing goal and polls.  Forbidden: the poll reclaimed while the
  reader loaded the old pointer.  With a seq_cst first load C11 forbids it (control, must be 0);
  with an acquire first load C11 allows it, but only hardware whose acquire loads may pass a
  store (ARM64 ``LDAPR``) can show it, not x86 (the seq_cst store is an ``xchg``).

A zero count means "not observed in that many iterations", never "impossible".  A non-zero
control means the harness is broken (the caller must fail); :func:`main` exits 1 then.

``python -m conformance.checks.hazards_live --iterations N --json PATH`` runs every shape in
this interpreter (for ``qsbr-conformance hazards --binary PYTHON``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import sys
import sysconfig
from collections.abc import Callable
from typing import Any, NamedTuple


class Shape(NamedTuple):
    name: str
    goal: str           # the writer's goal: "non-advancing" or "advancing"
    fence: bool         # a seq_cst fence between the unlink and the goal load
    control: bool       # must read 0 (a non-zero count is a broken harness)
    load: str = "seq_cst"   # the reader's (first) load of the pointer: "seq_cst" or "acquire"


#: The shapes run, in order.
SHAPES: tuple[Shape, ...] = (
    Shape("stale-goal", "non-advancing", False, False),
    Shape("stale-goal", "advancing", False, True),
    Shape("stale-goal", "non-advancing", True, True),
    Shape("retire-before-unlink", "non-advancing", False, False),
    Shape("read-after-attach", "advancing", False, True, "seq_cst"),
    Shape("read-after-attach", "advancing", False, False, "acquire"),
)

#: Iterations per call into C: the progress callback is called between chunks.
CHUNK = 200_000

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


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of the proportion k/n (0..1)."""
    if n == 0:
        return 0.0, 1.0
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


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


def _merge(total: dict[str, int], part: dict[str, int]) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0) + value


def live_shapes(iterations: int, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run every shape ``iterations`` times in this interpreter; one dict per shape.

    ``progress(label, done, total)`` is called after each chunk of iterations.  Raises
    :class:`Unavailable` when the litmus cannot run here.  Stops on iteration counts only.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise Unavailable(reason)
    probe, where, pinned = _probe(), addresses(), cpus()
    release = platform.python_version()
    model = cpu_model()
    shapes = []
    for shape in SHAPES:
        counts: dict[str, int] = {}
        done = 0
        while done < iterations:
            step = min(CHUNK, iterations - done)
            _merge(counts, probe.run(shape.name, shape.goal, shape.fence, step, pinned,
                                     where["advance"], where["poll"], where["batch"],
                                     acquire=shape.load == "acquire"))
            done += step
            if progress is not None:
                progress(label(shape), done, iterations)
        n, k = counts.get("iterations", 0), counts.get("forbidden", 0)
        low, high = wilson(k, n)
        function = "_Py_qsbr_advance" if shape.goal == "advancing" else probe.BATCH
        shapes.append({
            "name": shape.name, "release": release, "binary": sys.executable,
            "goal": shape.goal, "fence": shape.fence, "load": shape.load, "fix": None,
            "control": shape.control,
            "source": "binary", "goal_function": function,
            "iterations": n, "forbidden": k,
            "per_million": k * 1e6 / n if n else 0.0,
            "interval": [low * 1e6, high * 1e6], "confidence": CONFIDENCE,
            "observed": k > 0,
            "control_failed": shape.control and k > 0,
            "cpus": list(pinned), "cpu_model": model,
            "counts": counts,
        })
    return shapes


def render(shapes: list[dict[str, Any]]) -> str:
    lines = []
    for s in shapes:
        low, high = s["interval"]
        verdict = ("CONTROL FAILED (broken harness)" if s["control_failed"]
                   else "observed" if s["observed"]
                   else "not observed (zero is not proof)")
        lines.append(f"{s['release']}t {label(s):40} {s['forbidden']:>9} / {s['iterations']:<9}"
                     f" {s['per_million']:>10.1f} per million  [{low:.1f}, {high:.1f}]"
                     f"{'  control' if s['control'] else ''}  {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.checks.hazards_live",
        description="Hardware litmus of QSBR shapes through this interpreter's own QSBR "
                    "functions. Exit status: 0 ran (controls zero), 1 a control was non-zero "
                    "(broken harness), 2 cannot run here (reason on stderr and in the JSON as "
                    "'unavailable'), 3 the harness failed (in the JSON as 'error'). The JSON "
                    "is written in each of these cases.")
    parser.add_argument("--iterations", type=int, default=1_000_000,
                        help="iterations per shape (default 1,000,000)")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)

    def progress(what: str, done: int, total: int) -> None:
        print(f"{what}: {done}/{total}", file=sys.stderr, flush=True)

    report: dict[str, Any] = {"binary": sys.executable, "release": platform.python_version(),
                              "cpu_model": cpu_model(), "shapes": []}
    try:
        report["shapes"] = live_shapes(args.iterations, None if args.quiet else progress)
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
    return 1 if any(s["control_failed"] for s in report["shapes"]) else 0


if __name__ == "__main__":
    sys.exit(main())
