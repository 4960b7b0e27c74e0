"""Running a command from a test without a wall-clock timeout.

A test's guard against a hung command is charged time without progress
(conformance.drivers.patience), so the suite's own tests do not fail on a busy machine: time
the command and its children spent waiting for a CPU is not charged.
"""

from __future__ import annotations

import subprocess

import pytest

from conformance.drivers.patience import run_watched


def run(command: list[str], *, budget: float = 300.0, cwd=None, env=None,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    watched = run_watched([str(part) for part in command], budget=budget,
                          cwd=None if cwd is None else str(cwd), env=env,
                          input_text=input_text, what=" ".join(map(str, command[:4])))
    if watched.hung is not None:
        pytest.fail(f"{watched.hung}\n{watched.stdout[-2000:]}{watched.stderr[-2000:]}")
    assert watched.returncode is not None
    return subprocess.CompletedProcess(command, watched.returncode, watched.stdout,
                                       watched.stderr)
