"""Build and run the C benchmark (reference_c/bench/bench.c) for one profile; add ratios."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

PROFILE_DIRS = {"3.13": "313", "3.14": "314"}


class BenchError(RuntimeError):
    """The C benchmark could not be built or run (the message says why, in one line)."""


def build(source: Path, profile: str, build_dir: Path | None = None,
          extra_cflags: str = "") -> tuple[Path, str]:
    """``make bench-bin`` for one profile; returns the binary and make's notes (stderr).

    ``source`` may be a mutant's patched copy (conformance.checks.mutants.patched_source);
    ``extra_cflags`` is passed as EXTRA_CFLAGS."""
    args = ["make", "-s", "-C", str(source), "bench-bin", f"PROFILE={PROFILE_DIRS[profile]}"]
    if build_dir is not None:
        args.append(f"BUILD={build_dir.resolve()}")
    if extra_cflags:
        args.append(f"EXTRA_CFLAGS={extra_cflags}")
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as exc:
        raise BenchError(f"cannot run make: {exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchError(f"building the bench for {profile} failed: {last}")
    binary = (build_dir.resolve() if build_dir is not None else source / "build")
    return binary / PROFILE_DIRS[profile] / "qsbr-bench", proc.stderr.strip()


def run(binary: Path, *, quick: bool = False, args: list[str] | None = None,
        timeout: float = 900) -> dict[str, Any]:
    """Run the bench with ``-j`` and return its JSON, with the ratios added."""
    command = [str(binary), "-j", *(["-q"] if quick else []), *(args or [])]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise BenchError(f"{binary.name} failed: {last}")
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise BenchError(f"{binary.name} printed no valid JSON: {exc}") from None
    add_ratios(data)
    return data


def _ratio(a: dict[str, float] | None, b: dict[str, float] | None) -> dict[str, float] | None:
    if not a or not b:
        return None
    out = {}
    for key in ("best", "median"):
        if b[key] > 0 and math.isfinite(a[key]) and math.isfinite(b[key]):
            out[key] = round(a[key] / b[key], 4)
    return out or None


def add_ratios(data: dict[str, Any]) -> None:
    """port/limit and port/urcu for each operation; port/urcu for each threaded row."""
    for op in data["operations"]:
        op["ratios"] = {"port/limit": _ratio(op["port"], op["limit"]),
                        "port/urcu": _ratio(op["port"], op["urcu"])}
    for row in data["threads"]["rows"]:
        port, urcu = row["port"], row.get("urcu")
        row["ratios"] = {
            "gp_latency port/urcu": _ratio(port["gp_latency_ns"],
                                           urcu["gp_latency_ns"] if urcu else None),
            "reclaim_per_s port/urcu": _ratio(port["reclaim_per_s"],
                                              urcu["reclaim_per_s"] if urcu else None),
        }
