"""The C ABI torture driver (reference_c/harness/cabi_torture.c), independent of the Python
build (issue 13): against libraries built from reference_c with one single edit each it must
fail naming the broken fact, the unmodified library must pass, in plain and ThreadSanitizer
mode; a default run of the reference port or of a C ABI library gets its concurrent checks from
it.  Every run here is bounded by a count of rounds or updates, never by a clock.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conformance import sources
from conformance.checks import cabi_torture
from conformance.frontends import cli

REFERENCE_C = Path(__file__).resolve().parents[2] / "reference_c"
needs_cc = pytest.mark.requires("toolchain")


def _build(tmp: Path, name: str, mutant: str | None, sanitize: str = "",
           profile: str = "313") -> str:
    # A mutant: reference_c/mutants/NAME.patch applied to a copy (make mutant), as a release
    # build unless sanitized.
    build = tmp / name
    extra = "" if sanitize or not mutant else "-DNDEBUG"
    target = ["mutant", f"MUTANT={mutant}", "TARGET=lib", f"MUTANT_BUILD={build}"] if mutant \
        else ["lib", f"BUILD={build}"]
    proc = subprocess.run(["make", "-C", str(REFERENCE_C), "--no-print-directory", *target,
                           f"PROFILE={profile}", f"EXTRA_CFLAGS={extra}",
                           f"SANITIZE={sanitize}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(build / profile / "libqsbr.so")


@pytest.fixture(scope="session")
def libraries(tmp_path_factory):
    """Fixtures: the reference library and single-edit mutants, plain and TSan builds."""
    tmp = tmp_path_factory.mktemp("cabi-libs")
    libs = {"reference": _build(tmp, "ref", None),
            "reference-314": _build(tmp, "ref314", None, profile="314")}
    for mutant in ("GROWTH_NO_STW", "ADVANCE_NONATOMIC", "GROWTH_LEAKS_OLD_ARRAY"):
        libs[mutant] = _build(tmp, mutant, mutant)
    libs["tsan"] = _build(tmp, "tsan", None, "thread")
    for mutant in ("SCAN_RELAXED_LOADS", "RESERVE_INDEX_AFTER_UNLOCK", "DETACH_RELAXED"):
        libs["tsan-" + mutant] = _build(tmp, "tsan-" + mutant, mutant, "thread")
    return libs


@needs_cc
@pytest.mark.parametrize("name", ["reference", "reference-314"])
def test_cabi_torture_passes_the_reference_library(libraries, name):
    result = cabi_torture.run(libraries[name], rounds=6, history=True, stop_on_error=False)
    assert result.status == 0, result.output
    assert result.contract.safety_checked > 0 and result.contract.ok


@needs_cc
@pytest.mark.parametrize("mutant,fact", [("ADVANCE_NONATOMIC", "S-ADV-1"),
                                         ("GROWTH_NO_STW", "S-RES-1"),
                                         ("GROWTH_LEAKS_OLD_ARRAY", "S-RES-1")])
def test_cabi_torture_names_the_broken_fact(libraries, mutant, fact):
    result = cabi_torture.run(libraries[mutant], rounds=2000)      # stops at the first error
    assert result.status == 1 and fact in result.errors, result.output


@needs_cc
def test_tsan_mode_passes_the_reference_library(libraries):
    result = cabi_torture.run(libraries["tsan"], rounds=6, updates=500, tsan=True)
    assert result.status == 0 and result.tsan_reports == 0, result.output


@needs_cc
@pytest.mark.parametrize("mutant,fact", [("SCAN_RELAXED_LOADS", "S-POLL-1"),
                                         ("RESERVE_INDEX_AFTER_UNLOCK", "S-RES-1"),
                                         ("DETACH_RELAXED", "S-POLL-1")])
def test_tsan_mode_names_the_memory_order_fact(libraries, mutant, fact):
    # Stops at the first race (a bound of rounds, not a clock).
    result = cabi_torture.run(libraries["tsan-" + mutant], rounds=400, updates=500, tsan=True)
    assert result.status == 1 and fact in result.errors, result.output


def test_tsan_report_naming():
    def report(*frames):
        return ("WARNING: ThreadSanitizer: data race (pid=1)\n  Write of size 8 at 0x1 by "
                "thread T2:\n" + "".join(f"    #{i} {f} x.c:1 (x+0x1)\n"
                                         for i, f in enumerate(frames)) + "\nSUMMARY: x\n")
    detach = report("tc_check", "tc_check_object", "reserver_section_then_detach",
                    "reserver_main")
    quiesce = report("tc_check", "tc_check_object", "tc_read_section",
                     "reader_section_then_quiesce", "reader_main")
    assert set(cabi_torture.tsan_facts(detach)) == {"S-DETACH-1", "S-POLL-1", "S-SAFE-1"}
    assert set(cabi_torture.tsan_facts(quiesce)) == {"S-QS-1", "S-POLL-1", "S-SAFE-1"}
    assert set(cabi_torture.tsan_facts(detach + quiesce)) == {"S-POLL-1", "S-SAFE-1"}
    reclaim = ("tc_release", "tc_reclaim_head", "tc_reclaim_one", "tc_reclaim", "writer_main")
    lost = (report(*reclaim).replace(
        "\nSUMMARY", "\n  Previous read of size 8 at 0x1 by thread T4:\n"
                     "    [failed to restore the stack]\n\nSUMMARY"))
    assert set(cabi_torture.tsan_facts(lost)) == {"S-POLL-1", "S-SAFE-1"}
    assert cabi_torture.tsan_facts(report("tc_release", "tc_drain", "main")) == {}
    grow = report("grow_thread_array", "_Py_qsbr_reserve", "qsbr_api_reserve",
                  "new_registered")
    assert set(cabi_torture.tsan_facts(grow)) == {"S-RES-1"}


def test_tsan_naming_matches_the_driver_sources():
    # The naming above reads function names off the stacks: every reader check the driver
    # makes must sit in a function named for how its section ends, and the reclaiming frames
    # must exist, or a real race would go unexplained (as it did once the core moved).
    harness = sources.reference_c() / "harness"
    driver = (harness / "cabi_torture.c").read_text()
    core = (harness / "torture_core.h").read_text()
    # PEP 7 definitions: the return type on its own line, the name at the start of the next.
    definition = r"^(?:static\s+)?(?:NOINLINE\s+)?[\w\s\*]+?\n(\w+)\(([^)]*)\)\n\{(.*?)^\}"
    functions = re.findall(definition, driver, re.M | re.S)
    callers = {name for name, _, body in functions
               if any(re.search(rf"\b{check}\(", body) for check in cabi_torture.READER_CHECKS)}
    assert callers, "no reader check found in the driver"
    for name in callers:
        assert name.endswith(tuple(cabi_torture.EDGE_SUFFIXES)), name
    assert re.search(rf"^{cabi_torture.RELEASE_FRAME}\(", core, re.M)
    assert re.search(rf"^{cabi_torture.WRITER_FRAME}\(", driver, re.M)


@needs_cc
def test_torture_command_on_a_library(libraries, tmp_path, capsys, monkeypatch):
    out = tmp_path / "t.json"
    assert cli.main(["torture", "--library", libraries["ADVANCE_NONATOMIC"], "--rounds", "50",
                     "-q", "--json", str(out)]) == 1
    assert "FAIL S-ADV-1" in capsys.readouterr().out
    assert json.loads(out.read_text())["failed_facts"] == ["S-ADV-1"]
    monkeypatch.setenv("QSBR_LIBRARY", libraries["reference"])
    assert cli.main(["torture", "--impl", "conformance.cabi:from_env", "--rounds", "3",
                     "-q"]) == 0
    assert "torture: PASS" in capsys.readouterr().out
    assert cli.main(["torture", "--library", libraries["reference"], "--tsan",
                     "--rounds", "1"]) == 2      # not a TSan build: a clear usage error
    assert cli.main(["torture", "--library", str(tmp_path / "missing.so"), "-q"]) == 2
    assert cli.main(["torture", "--impl", "conformance.oracle:oracle"]) == 2


@needs_cc
def test_default_run_checks_ordering_facts_concurrently(tmp_path, seed):
    out = tmp_path / "r.json"
    assert cli.main(["--examples", "5", "-q", "--seed", str(seed), "--json", str(out)]) == 0
    rows = {row["id"]: row for row in json.loads(out.read_text())["facts"]}
    assert rows["S-SAFE-1"]["result"] == "pass"
    assert rows["S-SAFE-1"]["checked_by"] == ["sequential", "concurrent"]


@needs_cc
def test_default_run_of_a_cabi_mutant_fails_the_broken_fact(libraries, tmp_path,
                                                            monkeypatch, seed):
    monkeypatch.setenv("QSBR_LIBRARY", libraries["GROWTH_LEAKS_OLD_ARRAY"])
    out = tmp_path / "r.json"
    assert cli.main(["--impl", "conformance.cabi:from_env", "--examples", "5", "-q",
                     "--seed", str(seed), "--json", str(out)]) == 1
    rows = {row["id"]: row for row in json.loads(out.read_text())["facts"]}
    assert rows["S-RES-1"]["result"] == "FAIL"
