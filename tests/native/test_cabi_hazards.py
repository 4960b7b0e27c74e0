"""The hazards litmus through the C ABI (conformance/checks/cabi_hazards.py, driver
reference_c/harness/cabi_litmus.c): the decide rule, and on hardware an attach whose store is a
release store (mutants/ATTACH_RELEASE_ORDER.patch) observed, the unmodified library never.
Runs are bounded by iteration counts, never by a clock; a rate is never asserted.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conformance.checks import cabi_hazards
from conformance.checks.cabi_hazards import decide

REFERENCE_C = Path(__file__).resolve().parents[2] / "reference_c"


def test_decide():
    assert decide(1, 10, 0.5) == "observed"
    assert decide(0, 10, 0.5) == "inconclusive"              # too few iterations
    assert decide(0, 100_000, 0.01) == "conclusive"          # upper ~3.8e-5 < 1e-4
    assert decide(0, 100_000, 0.0) == "inconclusive"         # no reference: never clean
    assert decide(0, 10_000, 0.01) == "inconclusive"         # upper ~3.8e-4 > 1e-4


def _build(tmp: Path, mutant: str | None) -> str:
    out = tmp / (mutant or "reference")
    target = (["mutant", f"MUTANT={mutant}", "TARGET=lib", f"MUTANT_BUILD={out}"] if mutant
              else ["lib", f"BUILD={out}"])
    proc = subprocess.run(["make", "-C", str(REFERENCE_C), "--no-print-directory", *target,
                           "PROFILE=313", "EXTRA_CFLAGS=-DNDEBUG"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(out / "313" / "libqsbr.so")


@pytest.mark.requires("toolchain")
def test_a_release_store_attach_is_observed_and_the_reference_is_not(tmp_path):
    bad = cabi_hazards.run_library(_build(tmp_path, "ATTACH_RELEASE_ORDER"), hazards=False,
                                   max_iterations=400_000)
    assert bad.controls_ok
    assert bad.verdict == "observed", cabi_hazards.render(bad)
    assert set(bad.failed_facts) >= {"S-ATTACH-1", "S-SAFE-1"}
    good = cabi_hazards.run_library(_build(tmp_path, None), hazards=False,
                                    max_iterations=48_000)
    assert good.controls_ok and good.verdict != "observed", cabi_hazards.render(good)
    assert not good.failed_facts
    # x86-64 cannot show detach's release order: never credited, always named unchecked
    if good.machine in cabi_hazards.TSO_MACHINES:
        assert "S-DETACH-1" in good.unchecked and "S-DETACH-1" not in good.credited_facts


@pytest.mark.requires("toolchain")
def test_main_writes_json_and_names_usage_errors(tmp_path, capsys):
    assert cabi_hazards.main(["--library", str(tmp_path / "missing.so")]) == 2
    assert "no library" in capsys.readouterr().err
    out = tmp_path / "h.json"
    status = cabi_hazards.main(["--library", _build(tmp_path, None), "--max-iterations",
                                "16000", "-q", "--json", str(out)])
    data = json.loads(out.read_text())
    assert status == 0 and data["verdict"] in ("conclusive", "inconclusive")
    assert data["seed"] == 1 and data["shapes"][0]["commands"]
