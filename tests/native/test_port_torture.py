"""The port's own C torture (reference_c/harness/torture.c) against the port with a bug put
back (the torture mutants and the regression replays): C only, independent of the interpreter."""

import re
from pathlib import Path

import pytest
import watched

from conformance.checks import mutants

REFERENCE_C = Path(__file__).resolve().parents[2] / "reference_c"


@pytest.mark.requires("toolchain")
def test_torture_catches_every_buggy_variant():
    # Builds the port with each bug re-introduced (scan misses a slot, advance returns the old
    # value, detach is a no-op, poll skips the scan) and requires the torture to fail on each
    # within the Makefile's bound, a count of updates (TORTURE_MUTANT_UPDATES), not of seconds;
    # gh-115103 is caught by its ASan replay.
    proc = watched.run(["make", "-C", str(REFERENCE_C), "--no-print-directory",
                        "check-torture-mutants", "check-regressions"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    caught = re.findall(r"PASS mutant (\w+) (?:is )?caught", proc.stdout)
    assert re.search(r"PASS mutant DETACH_NOOP caught in \d+ updates", proc.stdout), proc.stdout
    assert set(caught) >= {"SCAN_SKIPS_LAST_SLOT", "ADVANCE_RETURNS_OLD", "DETACH_NOOP",
                           "POLL_NO_SCAN", "GH115103", "GROWTH_NO_REPOINT"}, proc.stdout
    # Exactly the mutants the patches name: every Killer: torture and every Replay: line.
    named = {m.name for m in mutants.catalog() if "torture" in m.methods or m.replay_filter}
    assert set(caught) == named, (sorted(named), proc.stdout)
