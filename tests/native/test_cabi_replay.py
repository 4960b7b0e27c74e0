"""Torture reports a porter can act on (issue 30, issue 32): the torture's JSON carries its seed
and a replay command that reruns that torture, Ctrl-C still writes it (marked interrupted),
``replay_report`` reruns it, and TSan's reports (also from ``log_path`` files) become a failed
check with the race's two stacks.  Bounded by rounds, never by a clock.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from conformance.checks import cabi_torture
from conformance.frontends import cli, torture_cli

REFERENCE_C = Path(__file__).resolve().parents[2] / "reference_c"

RACE = """==================
WARNING: ThreadSanitizer: data race (pid=77)
  Write of size 8 at 0x7b0c by thread T3:
    #0 _Py_qsbr_detach /src/qsbr.c:245 (libqsbr.so+0x3a1)
    #1 qsbr_api_detach /src/qsbr_api.c:330 (libqsbr.so+0x4d1)
    #2 reader_section_then_detach harness/cabi_torture.c:600 (t+0x11)

  Previous read of size 8 at 0x7b0c by thread T5:
    #0 qsbr_poll_scan /src/qsbr.c:150 (libqsbr.so+0x2f0)
    #1 _Py_qsbr_poll /src/qsbr.c:170 (libqsbr.so+0x310)
    #2 qsbr_api_poll /src/qsbr_api.c:345 (libqsbr.so+0x4f1)

SUMMARY: ThreadSanitizer: data race /src/qsbr.c:245 in _Py_qsbr_detach
==================
"""


def test_tsan_stacks_show_both_accesses_with_file_and_line():
    text = cabi_torture.tsan_stacks(RACE)
    assert "race: data race" in text
    assert "_Py_qsbr_detach /src/qsbr.c:245" in text
    assert "qsbr_poll_scan /src/qsbr.c:150" in text
    assert "Previous read of size 8" in text
    assert "Write of size 8 at 0x7b0c by thread T3" in text   # the first access, named


def test_tsan_log_path_files_are_read(tmp_path):
    base = tmp_path / "tsan"
    (tmp_path / "tsan.4242").write_text(RACE)
    assert "qsbr_poll_scan" in cabi_torture._tsan_logs(f"halt_on_error=1 log_path={base}",
                                                        time.time() - 60)
    assert cabi_torture._tsan_logs("log_path=stderr", 0) == ""
    assert cabi_torture._tsan_logs(f"log_path={base}", time.time() + 60) == ""  # older file


@pytest.fixture(scope="module")
def nonatomic(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "m"
    proc = subprocess.run(["make", "-C", str(REFERENCE_C), "--no-print-directory", "mutant",
                           "MUTANT=ADVANCE_NONATOMIC", "TARGET=lib", f"MUTANT_BUILD={out}",
                           "PROFILE=313", "EXTRA_CFLAGS=-DNDEBUG"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(out / "313" / "libqsbr.so")


@pytest.mark.requires("toolchain")
def test_torture_json_carries_its_seed_and_replays(nonatomic, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert cli.main(["torture", "--library", nonatomic, "--rounds", "30", "--seed", "7",
                     "-q", "--json", str(out)]) == 1
    data = json.loads(out.read_text())
    assert data["kind"] == torture_cli.JSON_KIND and data["seed"] == 7
    assert not data["interrupted"] and "S-ADV-1" in data["failed_facts"]
    assert "--seed 7" in data["replay"] and "--rounds 30" in data["replay"]
    assert "-S" in data["driver_command"] and "7" in data["driver_command"]
    capsys.readouterr()
    assert torture_cli.replay_report(data) == 1
    assert "replay: still fails" in capsys.readouterr().out
    assert torture_cli.replay_report({"kind": "other"}) == 2
    # the replay subcommand takes a torture report as it takes a run's
    assert cli.main(["replay", str(out)]) == 1
    assert "replay: still fails" in capsys.readouterr().out


@pytest.mark.requires("toolchain")
def test_ctrl_c_still_writes_the_json(nonatomic, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cabi_torture, "run", interrupted)
    out = tmp_path / "t.json"
    assert cli.main(["torture", "--library", nonatomic, "--rounds", "3", "--json",
                     str(out)]) == 130
    data = json.loads(out.read_text())
    assert data["interrupted"] is True and data["status"] is None and data["seed"] == 1
    assert data["replay"].startswith("qsbr-conformance torture --library")
