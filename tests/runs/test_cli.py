"""The command line: report, JSON, exit codes, bad input."""

import json
import sys

import pytest
import watched

from conformance.checks.exhaustive import START_POINTS
from conformance.frontends import cli
from conformance.model.facts import FACTS, MODEL_CHECKED_ONLY


@pytest.mark.slow
def test_default_run_prints_table_and_conforms(capsys, tmp_path):
    out_json = tmp_path / "report.json"
    status = cli.main(["--examples", "80", "--seed", "1", "--explore-states", "500",
                       "--json", str(out_json), "-q"])
    text = capsys.readouterr().out
    assert status == 0
    assert "CONFORMS" in text.splitlines()[-1]
    for fact in FACTS:
        assert fact.id in text
    data = json.loads(out_json.read_text())
    assert data["conforms"] is True and data["profile"] == "3.13"
    ids = {row["id"] for row in data["facts"]}
    assert {fact.id for fact in FACTS} <= ids
    rows = {row["id"]: row for row in data["facts"]}
    assert rows["S-DEF-2"]["result"] == "n/a"
    assert all(rows[f.id]["checks"] > 0 for f in FACTS
               if "3.13" in f.profiles and f.id not in MODEL_CHECKED_ONLY)
    # Without check-relacy results for these sources a model-checked-only fact is n/a.
    assert all(rows[f]["result"] in ("pass", "n/a") for f in MODEL_CHECKED_ONLY)
    assert "model checker" in text
    # counts by source, adding up, and the exhaustive scope reached
    for row in data["facts"]:
        assert sum(row["by_source"].values()) == row["checks"]
    assert rows["S-ADV-1"]["by_source"]["exhaustive"] > 0
    assert rows["S-ADV-1"]["by_source"]["scenario"] > 0
    assert rows["S-ADV-1"]["by_source"]["random"] > 0
    scope = data["exploration"]
    assert scope["distinct_states"] > 0 and scope["transitions"] > 0
    assert scope["depth_complete"] >= 1 and len(scope["start_points"]) == len(START_POINTS)
    assert "exhaustive:" in text and "distinct states" in text


@pytest.mark.slow
def test_profile_314_and_markdown(capsys, tmp_path):
    md = tmp_path / "report.md"
    assert cli.main(["--profile", "3.14", "--examples", "80", "--seed", "2",
                     "--explore-states", "500", "--markdown", str(md), "-q"]) == 0
    assert "| S-DEF-2 |" in md.read_text()
    assert "3.14 profile" in capsys.readouterr().out


def test_failing_implementation_exits_1(capsys, seed):
    assert cli.main(["--impl", "mutant_adapters:advance_returns_old", "--examples", "20",
                     "--seed", str(seed), "-q"]) == 1
    out = capsys.readouterr().out
    assert "DOES NOT CONFORM" in out and "S-ADV-1" in out and "shrunk sequence" in out


@pytest.mark.slow
def test_default_cli_run_rejects_a_mutant_with_its_whole_sequence(capsys, tmp_path,
                                                                   monkeypatch, seed):
    """No options at all (issue 14): the exploration finds a scan that skips unallocated slots
    (the stale seq after_fork leaves), names S-POLL-1 and prints every step."""
    out_json = tmp_path / "r.json"
    assert cli.main(["--impl", "mutant_adapters:scan_skips_unallocated", "-q",
                     "--seed", str(seed), "--json", str(out_json)]) == 1
    out = capsys.readouterr().out
    assert "S-POLL-1" in out.splitlines()[-1]
    failure = next(f for f in json.loads(out_json.read_text())["failures"]
                   if f["check"] == "exhaustive")
    assert failure["facts"] == ["S-POLL-1"]
    texts = [r["text"] for r in failure["step_records"]]
    assert texts[0] == "t0 = new_thread_state()    # create_thread"
    assert any(t.startswith("after_fork(") for t in texts)
    assert texts[-1].startswith("poll(") and texts[-1].endswith("-> True")
    assert all(t in out for t in texts)


@pytest.mark.parametrize("argv, message", [
    (["--impl", "no_such_module:factory"],
     "cannot load no_such_module:factory: cannot import 'no_such_module': no module named "
     "'no_such_module' (is it installed, on PYTHONPATH, or in the working folder?)"),
    (["--impl", "conformance.oracle"],
     "cannot load conformance.oracle: --impl expects MODULE:FACTORY (e.g. mypkg.adapter:make), "
     "got 'conformance.oracle'"),
    (["--impl", "conformance.oracle:nothing_here"],
     "cannot load conformance.oracle:nothing_here: module 'conformance.oracle' has no "
     "attribute 'nothing_here'"),
    (["--examples", "0"],
     "argument --examples: '0' is not a whole number >= 1 (see qsbr-conformance --help)"),
    (["--explore-seconds", "-1"],
     "argument --explore-seconds: '-1' is not a number >= 0 (0 turns the exploration off) "
     "(see qsbr-conformance --help)"),
])
def test_bad_impl_is_a_usage_error(argv, message, capsys):
    """Exit 2 and one line that says what was wrong, before anything was checked."""
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    *before, last = err.splitlines()
    assert last == f"qsbr-conformance: error: {message}" and out == "", (out, err)
    # (a "loading ..." line comes first when loading took over a second: a busy machine)
    assert all(line.startswith("qsbr-conformance: loading ") for line in before), err


@pytest.mark.slow
def test_python_dash_m_entry_point(tmp_path):
    # Outside the source tree, so the installed package is what runs.
    proc = watched.run([sys.executable, "-P", "-m", "conformance", "--examples", "80", "--seed",
                        "1", "--explore-states", "500", "-q"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CONFORMS" in proc.stdout
