"""The hardware phase of a C ABI library's default run (conformance/checks/hw_phase.py): a
conclusive litmus credits S-ATTACH-1/S-SAFE-1 with kind hardware (H), an observed forbidden
outcome fails the run naming them, an inconclusive one credits nothing, and the orders x86-64
cannot show stay `pass (sequential only)` with the commands that check them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from conformance.checks import cabi_hazards, hw_phase
from conformance.frontends import cli
from conformance.model import status
from conformance.model.ledger import FactLedger

REFERENCE_C = Path(__file__).resolve().parents[2] / "reference_c"


def _result() -> SimpleNamespace:
    return SimpleNamespace(ledger=FactLedger(), failures=[], phases=[], concurrency="",
                           interrupted=False)


def _fake(verdict: str):
    def run_library(path, **kwargs):
        report = cabi_hazards.LibraryReport(path, "cpu", "x86_64", 1, verdict=verdict,
                                            detail=f"read-seqcst {verdict}")
        report.shapes.append(cabi_hazards.ShapeResult("read-seqcst", False, 48_000))
        report.unchecked = dict(cabi_hazards.UNCHECKED_ON_TSO)
        if verdict == "observed":
            report.failed_facts = cabi_hazards.READ_FACTS
        elif verdict == "conclusive":
            report.credited_facts = cabi_hazards.HARDWARE_FACTS
        return report
    return run_library


@pytest.mark.parametrize("verdict", ["conclusive", "inconclusive", "observed"])
def test_the_phase_credits_only_what_the_litmus_decided(monkeypatch, verdict):
    monkeypatch.setattr(cabi_hazards, "run_library", _fake(verdict))
    monkeypatch.delenv("QSBR_LIBRARY_TSAN", raising=False)
    result = _result()
    target = SimpleNamespace(kind="cabi", library="/x/lib.so")
    hw_phase.run_phase(result, target, SimpleNamespace(concurrency_rounds=12, seed=5))
    ledger = result.ledger

    def fact(fact_id):
        ledger.passed(fact_id, source="scenario")       # what the sequential phases did
        return status.fact_status(fact_id, ledger, profile="3.13", layout_checked=True)

    assert result.phases == ["hardware"]
    expected = {"conclusive": status.PASS, "inconclusive": status.PASS_SEQUENTIAL,
                "observed": status.FAIL}[verdict]
    assert fact("S-ATTACH-1") == expected
    # x86-64 cannot show detach's order: never credited by the hardware, named unchecked
    assert fact("S-DETACH-1") == status.PASS_SEQUENTIAL
    assert "S-DETACH-1" in result.concurrency and "--tsan" in result.concurrency
    assert bool(result.failures) == (verdict == "observed")
    if verdict == "conclusive":
        assert "hardware" in status.checked_by("S-ATTACH-1", ledger)


def test_the_phase_is_only_for_c_abi_libraries(monkeypatch):
    monkeypatch.setattr(cabi_hazards, "run_library", _fake("observed"))
    result = _result()
    hw_phase.run_phase(result, SimpleNamespace(kind="reference", library=None),
                       SimpleNamespace(concurrency_rounds=12, seed=5))
    assert result.phases == [] and not result.failures


@pytest.mark.requires("toolchain")
def test_a_default_run_of_a_release_store_attach_fails(tmp_path, monkeypatch):
    out = tmp_path / "m"
    proc = subprocess.run(["make", "-C", str(REFERENCE_C), "--no-print-directory", "mutant",
                           "MUTANT=ATTACH_RELEASE_ORDER", "TARGET=lib", f"MUTANT_BUILD={out}",
                           "PROFILE=313", "EXTRA_CFLAGS=-DNDEBUG"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    monkeypatch.setenv("QSBR_LIBRARY", str(out / "313" / "libqsbr.so"))
    report = tmp_path / "r.json"
    assert cli.main(["--impl", "conformance.cabi:from_env", "--examples", "5", "-q",
                     "--json", str(report)]) == 1
    data = json.loads(report.read_text())
    rows = {row["id"]: row for row in data["facts"]}
    assert rows["S-ATTACH-1"]["result"] == "FAIL"
    assert "hardware" in data["phases"]
    assert any(f["check"] == "hardware litmus" for f in data["failures"])


@pytest.mark.requires("toolchain")
def test_a_tsan_build_in_the_environment_joins_the_default_run(tmp_path, monkeypatch):
    # DETACH_RELAXED: a plain run on x86-64 cannot fail it (S-DETACH-1 sequential-only); its
    # TSan build named by QSBR_LIBRARY_TSAN makes the run's tsan phase fail it.
    libs = {}
    for name, sanitize in (("plain", ""), ("tsan", "thread")):
        out = tmp_path / name
        proc = subprocess.run(["make", "-C", str(REFERENCE_C), "--no-print-directory", "mutant",
                               "MUTANT=DETACH_RELAXED", "TARGET=lib", f"MUTANT_BUILD={out}",
                               "PROFILE=313", f"SANITIZE={sanitize}",
                               f"EXTRA_CFLAGS={'' if sanitize else '-DNDEBUG'}"],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        libs[name] = str(out / "313" / "libqsbr.so")
    monkeypatch.setenv("QSBR_LIBRARY", libs["plain"])
    monkeypatch.setenv("QSBR_LIBRARY_TSAN", libs["tsan"])
    report = tmp_path / "r.json"
    assert cli.main(["--impl", "conformance.cabi:from_env", "--examples", "5", "-q",
                     "--json", str(report)]) == 1
    data = json.loads(report.read_text())
    assert "tsan" in data["phases"]
    rows = {row["id"]: row for row in data["facts"]}
    assert rows["S-DETACH-1"]["result"] == "FAIL"
    assert any(f["check"] == "TSan torture" for f in data["failures"])
