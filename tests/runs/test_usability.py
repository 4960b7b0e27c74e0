"""Issue 17: bad input is one line and exit 2 before any work; Ctrl-C; replayable failures;
reports for CI; help, version and checked options of every subcommand."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import watched

from conformance.checks import mutants
from conformance.frontends import cli

TESTS = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return watched.run([sys.executable, "-P", "-m", "conformance", *args], cwd=cwd, env=_env(**env))


def _one_clean_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""                        # no report: nothing was run
    # A slow load (a busy machine) first says "loading X ..." (progress, after 1 s); then the
    # error is one line.
    lines = [line for line in proc.stderr.strip().splitlines()
             if not (line.startswith("qsbr-conformance: loading ") and line.endswith(" ..."))]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "crashed" not in proc.stderr
    return lines[0]


BAD_INPUTS = [
    (["--json", "/nonexistent/dir/r.json"], {}, "does not exist"),
    (["--markdown", "/nonexistent/dir/r.md"], {}, "does not exist"),
    (["--json", "."], {}, "is a directory"),
    (["--step-timeout", "0"], {}, "--step-timeout"),
    (["--step-timeout", "-1"], {}, "--step-timeout"),
    (["--startup-timeout", "0"], {}, "--startup-timeout"),
    (["--live-examples", "-1"], {}, "--live-examples"),
    (["--examples", "0"], {}, "--examples"),
    (["--steps", "x"], {}, "--steps"),
    (["--seed", "-3"], {}, "--seed"),
    (["--no-such-option"], {}, "unrecognized"),
    (["--impl", "nosuchmodule:f"], {}, "no module named 'nosuchmodule'"),
    (["--impl", "nosuchmodule"], {}, "MODULE:FACTORY"),
    (["--impl", "crashing_adapters:nothing_here"], {}, "no attribute 'nothing_here'"),
    (["--impl", "crashing_adapters:returns_none"], {}, "returned None"),
    (["--impl", "crashing_adapters:factory_raises"], {}, "RuntimeError: no QSBR here"),
    (["--impl", "raises_at_import:make"], {}, "ValueError: broken at import"),
    (["--impl", "conformance.cabi:from_env"], {"QSBR_LIBRARY": "/nonexistent.so"},
     "/nonexistent.so"),
    (["--impl", "conformance.cabi:from_env"], {"QSBR_LIBRARY": "/bin/ls"}, "/bin/ls"),
    (["torture", "--readers", "0"], {}, "--readers"),
    (["torture", "--writers", "0"], {}, "--writers"),
    (["torture", "--stall-ms", "0"], {}, "--stall-ms"),
    (["torture", "--seconds", "-1"], {}, "--seconds"),
    (["torture", "--json", "/nonexistent/dir/t.json"], {}, "does not exist"),
    (["mutants", "--examples", "0"], {}, "--examples"),
    (["mutants", "--torture-seconds", "0"], {}, "--torture-seconds"),
    (["mutants", "--only", "NO_SUCH_MUTANT"], {}, "NO_SUCH_MUTANT"),
    (["mutants", "--json", "/nonexistent/dir/m.json", "--only", "PLAIN_COMPARE"], {},
     "does not exist"),
]


#: Every bad input once; those naming an implementation also with --no-isolate (isolation only
#: matters where an implementation is loaded), so no case is generated only to be skipped.
_CASES = [(args, env, says, isolate) for args, env, says in BAD_INPUTS
          for isolate in (("--isolate", "--no-isolate") if "--impl" in args else ("--isolate",))]


@pytest.mark.parametrize("args, env, says, isolate", _CASES,
                         ids=[" ".join(a) + ("".join(f" {k}={v}" for k, v in e.items()))
                              + (f" {i}" if "--impl" in a else "") for a, e, _, i in _CASES])
def test_bad_input_is_one_line_and_exit_2(args, env, says, isolate, tmp_path):
    (tmp_path / "raises_at_import.py").write_text('raise ValueError("broken at import")\n')
    env = dict(env, PYTHONPATH=os.pathsep.join([str(tmp_path), str(TESTS)]))
    extra = [isolate] if args[0] not in ("torture", "mutants") else []
    line = _one_clean_line(_cli([*args, *extra], tmp_path, **env))
    assert says in line, line
    assert list(tmp_path.glob("*.json")) == [] and list(tmp_path.glob("*.md")) == []


@pytest.mark.parametrize("isolate", ["--isolate", "--no-isolate"])
def test_implementation_raising_is_its_failure_with_its_own_traceback(isolate, tmp_path):
    out = tmp_path / "r.json"
    proc = _cli(["--impl", "crashing_adapters:snapshot_raises", "--examples", "5", "-q",
                 "--json", str(out), isolate], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "snapshot() raised ValueError: snapshot is broken" in proc.stdout
    assert "crashing_adapters.py" in proc.stdout          # the implementation's own frame
    suite = str(Path(cli.__file__).resolve().parents[1])
    assert suite not in proc.stdout + proc.stderr         # none of the suite's frames
    assert "Traceback (most recent call last)" not in proc.stderr
    assert json.loads(out.read_text())["conforms"] is False


def test_ctrl_c_stops_cleanly_with_an_incomplete_report(tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "conformance", "--impl", "conformance.oracle:oracle",
         "--examples", "100000", "--json", str(out), "--markdown", str(md)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env(),
        # as from a terminal: pytest-xdist's workers ignore SIGINT, and children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr is not None
    try:
        seen = []
        for line in proc.stderr:        # wait on a condition: the random examples started
            seen.append(line)
            if line.startswith("[random examples]"):
                break
        else:
            pytest.fail("no progress line: " + "".join(seen))
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr and "KeyboardInterrupt" not in stderr
    # Progress lines printed before the signal arrived may come first; then one summary line.
    summary = [line for line in stderr.strip().splitlines() if not line.startswith("[")]
    assert len(summary) == 1 and "interrupted" in summary[0], stderr
    assert stderr.strip().splitlines()[-1] == summary[0], stderr
    assert "INCOMPLETE" in stdout.splitlines()[-1]
    data = json.loads(out.read_text())
    assert data["complete"] is False and data["conforms"] is False
    assert data["counts"].get("pass", 0) >= 1          # what was checked so far is there
    assert "INCOMPLETE" in md.read_text()


def test_failure_is_replayable_and_the_json_is_complete(tmp_path):
    out = tmp_path / "r.json"
    proc = _cli(["--impl", "mutant_adapters:advance_returns_old", "--examples", "30",
                 "--json", str(out)], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    seed = data["seed"]
    assert isinstance(seed, int) and f"seed {seed}" in proc.stderr   # printed and saved
    assert data["schema_version"] >= 1 and data["complete"] is True
    assert set(data["versions"]) >= {"suite", "hypothesis", "python"}
    assert data["timestamp"] and data["options"]["examples"] == 30
    assert data["counts"]["FAIL"] >= 1 and sum(data["counts"].values()) == len(data["facts"])
    failure = data["failures"][0]
    assert failure["steps"] and not any("earlier steps" in s for s in failure["steps"])
    assert f"--seed {seed}" in failure["replay"] and f"replay: {failure['replay']}" in proc.stdout
    # The replay command reproduces the same failure.
    argv = shlex.split(failure["replay"])
    assert argv[0] == "qsbr-conformance"
    again = _cli([*argv[1:], "--json", str(tmp_path / "again.json")], tmp_path)
    assert again.returncode == 1
    replayed = json.loads((tmp_path / "again.json").read_text())["failures"][0]
    assert (replayed["message"], replayed["steps"]) == (failure["message"], failure["steps"])


def test_no_hypothesis_folder_in_the_current_directory(tmp_path):
    cache = tmp_path / "cache"
    proc = _cli(["--examples", "5", "-q"], tmp_path, XDG_CACHE_HOME=str(cache),
                HYPOTHESIS_STORAGE_DIRECTORY="")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / ".hypothesis").exists()


def test_progress_starts_at_once_and_shrinking_is_shown_as_such(tmp_path):
    proc = _cli(["--impl", "mutant_adapters:advance_returns_old", "--examples", "20"],
                tmp_path)
    lines = proc.stderr.splitlines()
    # "loading ..." comes first only when loading took over a second (a busy machine)
    assert lines[0].startswith(("qsbr-conformance: checking", "qsbr-conformance: loading"))
    assert any(line.startswith("qsbr-conformance: checking") for line in lines[:2])
    assert any(line.startswith("[layout and comparisons]") for line in lines)
    for line in lines:       # the example counter never passes its total
        if line.startswith("[") and "/20 examples]" in line:
            assert int(line[1:line.index("/")]) <= 20, line


def test_help_version_and_every_option_documented(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("qsbr-conformance ")
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert f"qsbr-conformance {name}" in text
    import importlib
    parsers = [cli.parser()] + [
        importlib.import_module(f"conformance.frontends.{module}").parser()
        for module, _ in cli.SUBCOMMANDS.values()]
    for parser in parsers:
        assert parser.prog.startswith("qsbr-conformance"), parser.prog
        for action in parser._actions:
            assert action.help, f"{parser.prog} {action.option_strings} has no help text"
    assert {p.prog.split()[-1] for p in parsers[1:]} == set(cli.SUBCOMMANDS)
    for name in cli.SUBCOMMANDS:
        assert cli.main([name, "--help"]) == 0
        assert f"qsbr-conformance {name}" in capsys.readouterr().out


def test_readme_mutant_count_is_derived():
    readme = (TESTS.parent / "README.md").read_text()
    import re
    counts = [int(n) for n in re.findall(r"(?:catalog of|build|all) (\d+) mutants", readme)]
    assert all(n == len(mutants.catalog()) for n in counts), counts


def test_an_adapter_in_the_working_folder_is_found_isolated_or_not(tmp_path):
    # A new user's first run: myport.py beside them, no PYTHONPATH, no install.  Isolated
    # (the default) and in-process alike, and the suite's own package still comes first.
    shutil.copy(TESTS.parent / "docs" / "examples" / "minimal_adapter.py", tmp_path / "myport.py")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    for isolation in ([], ["--no-isolate"]):
        proc = watched.run([sys.executable, "-P", "-m", "conformance", "--impl", "myport:make",
                            "--examples", "3", "--explore-seconds", "0", "--live-examples", "0",
                            "--concurrency-rounds", "1", "--seed", "1", "-q", *isolation],
                           cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "CONFORMS" in proc.stdout


@pytest.mark.parametrize("name", sorted(cli.SUBCOMMANDS))
def test_every_subcommand_shares_the_exit_statuses(name, monkeypatch, capsys):
    # Whatever a subcommand leaves uncaught: a usage error is one line and 2, Ctrl-C is 130.
    import importlib

    module = importlib.import_module(f"conformance.frontends.{cli.SUBCOMMANDS[name][0]}")
    for raised, status in ((cli.UsageError("bad input"), 2), (KeyboardInterrupt(), 130)):
        def body(argv, raised=raised):
            raise raised
        monkeypatch.setattr(module, "run" if hasattr(module, "run") else "main", body)
        assert cli.main([name, "x"]) == status
        err = capsys.readouterr().err
        assert err.startswith(f"qsbr-conformance {name}: ") and err.count("\n") == 1, err
