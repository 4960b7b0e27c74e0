"""Child side of the runner's concurrent phase for a thread-safe Python adapter.

    python -P -m conformance.checks.concurrent_worker REQUEST.json

The request is what every child process of a run receives: the serialised plan and target
(``Plan.to_json()``, ``Target.to_json()``), plus the phase's own bounds (``updates``,
``readers``, ``writers``) and where to write the result (``out``).  The child opens the target
in its own process (its threads must not share the harness's process: a crash is a failure of
the phase, not the end of the run), runs the Python-threads torture
(conformance.checks.pytorture) on it, prints a progress line with its update and free counts
on stderr every second (the parent's hang bound, conformance.drivers.patience, watches them)
and writes ``{"status": ..., "stats": ...}`` as JSON to ``out``.

Exit status: the torture's (0 ok, 1 errors, 2 nothing reclaimed); 3 when the target cannot be
opened or does not declare thread_safe (the message on stderr).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..drivers.target import Target, TargetError
from .plan import Plan

#: Exit status when the target cannot be tortured at all.
CANNOT_RUN = 3


def progress_line(stats: dict[str, Any]) -> str:
    """The line the parent reads (conformance.checks.concurrent.torture_progress)."""
    return (f"progress {stats['elapsed']:6.1f}s updates={stats['updates']} "
            f"frees={stats['frees']}"
            + (f" race_rounds={stats['race_rounds']}" if "race_rounds" in stats else ""))


def main(argv: list[str]) -> int:
    from .pytorture import python_torture

    with open(argv[0], encoding="utf-8") as handle:
        request = json.load(handle)
    plan = Plan.from_json(request["plan"])
    target = Target.from_json(dict(request["target"], isolate=False))
    try:
        implementation = target.open()
    except TargetError as exc:
        print(f"concurrent worker: {exc}", file=sys.stderr)
        return CANNOT_RUN
    if getattr(implementation, "thread_safe", False) is not True:
        print(f"concurrent worker: {target.spec} does not declare thread_safe = True",
              file=sys.stderr)
        return CANNOT_RUN
    status, stats = python_torture(
        implementation, readers=request["readers"], writers=request["writers"],
        seconds=0.0, updates=request["updates"], seed=plan.seed % (1 << 31),
        progress=lambda stats: print(progress_line(stats), file=sys.stderr, flush=True))
    with open(request["out"], "w", encoding="utf-8") as handle:
        json.dump({"status": status, "stats": stats}, handle, default=str)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
