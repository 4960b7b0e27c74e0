"""Replay reopens the target a report recorded: a pytest-plugin report, a release-range report
of a protocol adapter, a C ABI report with $QSBR_LIBRARY unset, a campaign's; and every printed
replay line is a command that can be pasted."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conformance.drivers import target as targets
from conformance.frontends import cli, replay_cli

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
#: Killed by the coverage scenario (S-FREE-3): a live bug for every replay below.
MUTANT = "mutant_adapters:fifo_freelist"
#: A short run: the scenario finds the bug; no exploration, no live or concurrent phase.
SHORT = ["--examples", "3", "--explore-states", "0", "--explore-seconds", "0",
         "--live-examples", "0", "--concurrency-rounds", "0", "--seed", "1", "-q"]

pytest_plugins = ["pytester"]


def _replay(path: Path, capsys, *args: str) -> tuple[int, str]:
    status = replay_cli.main([str(path), *args])
    return status, capsys.readouterr().out


def test_a_pytest_plugin_report_replays_against_its_own_target(pytester, monkeypatch,
                                                               capsys):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    report = pytester.path / "plugin.json"
    pytester.makepyfile(test_nothing="def test_own_project():\n    assert True\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--qsbr-impl", MUTANT, "--qsbr-examples", "3",
        "--qsbr-explore-states", "0", "--qsbr-explore-seconds", "0",
        "--qsbr-live-examples", "0", "--qsbr-concurrency-rounds", "0", "--qsbr-seed", "1",
        "--qsbr-json", str(report))
    assert result.ret == 1, result.stdout.str()
    monkeypatch.syspath_prepend(str(TESTS))
    status, out = _replay(report, capsys)
    assert status == 1, out
    assert "STILL FAILS" in out and MUTANT in out, out


def _write_line_only_adapter(folder: Path) -> str:
    """A protocol adapter whose factory takes the API line only (docs/adapter-protocol.md:
    ``make(profile="3.13")``), refusing anything else, wrapping a wrong implementation."""
    (folder / "line_only_adapter.py").write_text(textwrap.dedent('''
        import mutant_adapters

        def make(profile="3.13"):
            if profile not in ("3.13", "3.14"):
                raise ValueError(f"give an API line, not {profile!r}")
            return mutant_adapters.fifo_freelist(profile)
    '''), encoding="utf-8")
    return "line_only_adapter:make"


def test_a_release_range_report_replays_with_the_line_for_the_factory(tmp_path, monkeypatch,
                                                                       capsys):
    spec = _write_line_only_adapter(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    report = tmp_path / "range.json"
    assert cli.main(["--impl", spec, "--profile", "3.13.3-3.13.5", "--json", str(report),
                     *SHORT]) == 1
    capsys.readouterr()
    recorded = json.loads(report.read_text())["target"]
    assert recorded["release"] == "3.13.3-3.13.5" and recorded["line"] == "3.13"
    status, out = _replay(report, capsys)
    assert status == 1, out
    assert "STILL FAILS" in out, out


def test_the_documented_minimal_adapter_loads_with_a_release_range(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "docs" / "examples"))
    target = targets.resolve("minimal_adapter:make", "3.13.3-3.13.5", isolate=False)
    assert target.factory_kwargs()["profile"] == "3.13"
    impl = target.open()
    assert impl.profile == "3.13"


@pytest.fixture(scope="module")
def mutant_library(tmp_path_factory) -> Path:
    """The reference port with FREELIST_FIFO applied, as a C ABI library."""
    from requires import requires
    requires("make")
    requires("cc")
    from conformance.checks import mutants
    build = tmp_path_factory.mktemp("fifo")
    mutants.make_mutant(ROOT / "reference_c", "FREELIST_FIFO", "lib", build, "313")
    library = build / "313" / "libqsbr.so"
    assert library.is_file()
    return library


@pytest.fixture(scope="module")
def cabi_report(mutant_library, tmp_path_factory) -> tuple[Path, str]:
    """A C ABI report made with $QSBR_LIBRARY set; (its path, the text report)."""
    path = tmp_path_factory.mktemp("cabi") / "cabi.json"
    env = dict(os.environ, QSBR_LIBRARY=str(mutant_library),
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-m", "conformance", "--impl",
                           "conformance.cabi:from_env", "--json", str(path), *SHORT],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return path, proc.stdout


def test_a_c_abi_report_replays_with_qsbr_library_unset(cabi_report, mutant_library,
                                                        monkeypatch, capsys):
    path, _ = cabi_report
    monkeypatch.delenv("QSBR_LIBRARY", raising=False)
    assert json.loads(path.read_text())["target"]["library"] == str(mutant_library)
    status, out = _replay(path, capsys)
    assert status == 1, out
    assert "STILL FAILS" in out and str(mutant_library) in out, out


def test_the_printed_replay_line_can_be_pasted(cabi_report, mutant_library):
    """The text report's ``replay:`` line, pasted into a shell without $QSBR_LIBRARY, runs
    the same check against the same library and fails the same way."""
    _, text = cabi_report
    lines = [line.strip().removeprefix("replay: ") for line in text.splitlines()
             if line.strip().startswith("replay: ")]
    assert lines, text
    line = lines[0]
    assert line.startswith(f"QSBR_LIBRARY={shlex.quote(str(mutant_library))} "), line
    env = {k: v for k, v in os.environ.items() if k != "QSBR_LIBRARY"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run(["bash", "-c", line + " -q"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "DOES NOT CONFORM" in proc.stdout and "S-FREE-3" in proc.stdout, proc.stdout


def test_an_emitted_c_abi_test_fails_on_the_bug_without_qsbr_library(cabi_report, tmp_path,
                                                                     monkeypatch, capsys):
    path, _ = cabi_report
    monkeypatch.delenv("QSBR_LIBRARY", raising=False)
    emitted = tmp_path / "test_emitted.py"
    status, out = _replay(path, capsys, "--emit-test", str(emitted))
    assert status == 1, out
    env = {k: v for k, v in os.environ.items() if k != "QSBR_LIBRARY"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(emitted)], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "assert result.passed" in proc.stdout and "QsbrError" not in proc.stdout, \
        proc.stdout


def test_a_recorded_target_round_trips_and_reopens_its_library(mutant_library, monkeypatch):
    monkeypatch.setenv("QSBR_LIBRARY", str(mutant_library))
    target = targets.resolve("conformance.cabi:from_env", "3.13")
    monkeypatch.delenv("QSBR_LIBRARY")
    again = targets.Target.from_json(json.loads(json.dumps(target.to_json())))
    assert again == target and again.kind == "cabi" and again.library == str(mutant_library)
    impl = again.open()
    try:
        assert impl.profile == "3.13"
    finally:
        targets.close(impl)


def test_mutants_build_a_c_abi_target():
    target = targets.resolve("conformance.cabi:load", library="/x/libqsbr.so", isolate=True)
    assert target.kind == "cabi" and target.library == "/x/libqsbr.so"
    assert target.loader() == ("conformance.drivers.cabi:load", {"path": "/x/libqsbr.so"})


def test_a_campaign_report_replays_against_its_target(tmp_path, capsys):
    """A campaign's --json (its ``found``, replayed from the database, and its ``target``)
    replays like a run's report."""
    run = tmp_path / "run.json"
    assert cli.main(["--impl", MUTANT, "--json", str(run), *SHORT]) == 1
    capsys.readouterr()
    data = json.loads(run.read_text())
    found = next(f for f in data["failures"] if f["step_records"])
    campaign = {"hypofuzz": "25.11.1", "impl": MUTANT, "profile": "3.13",
                "target": data["target"], "db": str(tmp_path / "db"),
                "found": {k: found[k] for k in ("check", "facts", "message", "steps",
                                                "step_records", "diff")}
                | {"from_database": str(tmp_path / "db")}}
    path = tmp_path / "campaign.json"
    path.write_text(json.dumps(campaign))
    status, out = _replay(path, capsys)
    assert status == 1, out
    assert "STILL FAILS" in out and "replayed this failure from the database" in out, out
