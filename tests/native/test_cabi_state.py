"""The C ABI torture's state check (issue 32): after the churn, after the liveness check and
after every thread state was deleted, the library's snapshot must hold the freelist and
ownership invariants of docs/semantics.md, so a lost freelist update, a double allocation or a
leaked slot fails a round naming the fact it breaks.  Every run is bounded by rounds, never by a
clock.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conformance.checks import cabi_torture

REFERENCE_C = Path(__file__).resolve().parents[2] / "reference_c"
pytestmark = pytest.mark.requires("toolchain")
FREELIST_FACTS = {"S-UNREG-1", "S-FREE-1", "S-FREE-3"}


def build(tmp: Path, mutant: str | None) -> str:
    """The reference library, or a mutant of it (mutants/NAME.patch), as a release build."""
    out = tmp / (mutant or "reference")
    target = (["mutant", f"MUTANT={mutant}", "TARGET=lib", f"MUTANT_BUILD={out}"] if mutant
              else ["lib", f"BUILD={out}"])
    proc = subprocess.run(["make", "-C", str(REFERENCE_C), "--no-print-directory", *target,
                           "PROFILE=313", "EXTRA_CFLAGS=-DNDEBUG"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(out / "313" / "libqsbr.so")


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cabi-state")
    return {name: build(tmp, name) for name in
            (None, "UNREGISTER_NO_LOCK", "UNREGISTER_KEEPS_ALLOCATED")}


def test_the_state_check_passes_the_reference_library(libs):
    result = cabi_torture.run(libs[None], rounds=4, churn=500, stop_on_error=False)
    assert result.status == 0, result.output
    # three state checks per round: after the churn, after the liveness check, all free
    assert result.counter_values["final"]["state_checks"] == 12, result.counters


def test_a_leaked_slot_fails_the_state_check_naming_unregister(libs):
    # Deterministic: every unregister leaves its slot allocated, so the check after every
    # thread state was deleted finds allocated slots (and the churn runs out of slots).
    result = cabi_torture.run(libs["UNREGISTER_KEEPS_ALLOCATED"], rounds=1, churn=20)
    assert result.status == 1
    assert any("still allocated" in detail for detail in result.errors.get("S-UNREG-1", [])), \
        result.output


def test_a_lock_free_unregister_fails_naming_the_freelist(libs):
    # A race: each run of 24 rounds has a few thousand push/pop meetings per churning pair;
    # up to 12 runs (a count), each with its own seed, until one shows the broken freelist.
    seen: list[list[str]] = []
    for seed in range(1, 13):
        result = cabi_torture.run(libs["UNREGISTER_NO_LOCK"], rounds=24, seed=seed)
        seen.append(result.failed_facts)
        if FREELIST_FACTS & set(result.errors):
            assert result.status == 1
            return
    pytest.fail(f"no run named {sorted(FREELIST_FACTS)}: {seen}")


def test_the_reference_library_reports_its_version(libs):
    # qsbr_api_version (optional symbol): the report names the port's version, not "unknown"
    from conformance.drivers.cabi import CabiImplementation
    impl = CabiImplementation(libs[None])
    assert impl.version.startswith("qsbr-conformance reference port, QSBR_PROFILE 313"), \
        impl.version
