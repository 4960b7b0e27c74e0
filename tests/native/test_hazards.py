"""`qsbr-conformance hazards`: the stale goal and its relatives on hardware, beside Relacy.

Every run here stops on iteration counts, under the decide rule (conformance/checks/decide.py).
Nothing here assumes a rate measured on some machine: what is asserted holds on any x86-64
machine with two CPUs, loaded or not --
  * every control counts 0 (impossible under any memory model: a count is a broken harness);
  * the fenced and advancing rows count 0 on x86-64 (mfence / lock xadd drain the store
    buffer: a hardware guarantee, not a rate), and no row that must be below the unfixed rate
    is ever "not below";
  * the unfixed stale goal is observed at least 30 times within the budget (4,000,000
    iterations: the robust harness's randomised offsets show store buffering on any two CPUs);
  * whenever the reference's rate lets a conclusive comparison fit in the budget, the zero rows
    reach it (an implication computed from this run's own counts).
The decide rule's arithmetic is tested on its own in tests/unit/test_decide.py.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from requires import check, requires, tarball

from conformance import sources
from conformance.checks import decide, hazards, upstream
from conformance.frontends import hazards_cli

ROOT = Path(__file__).resolve().parents[2]
PORT_PROFILES = ("3.13.3-3.13.5", "3.13.6-3.14.3")
#: Every row runs at least this many iterations; the decide rule extends it.
MINIMUM = 20_000
X86 = platform.machine().lower() in ("x86_64", "amd64")


@functools.cache
def _release(version: str) -> hazards.Target:
    return hazards.release_target(str(tarball(version)))


def release(version: str) -> hazards.Target:
    """The release's target, read once per session (a copy: tests may edit its sources)."""
    target = _release(version)
    return dataclasses.replace(target, upstream=dataclasses.replace(target.upstream))


def rows(data: dict, **match) -> list[dict]:
    return [s for s in data["shapes"] if all(s[k] == v for k, v in match.items())]


def one(data: dict, **match) -> dict:
    found = rows(data, **match)
    assert len(found) == 1, (match, found)
    return found[0]


def two_cpus() -> None:
    """The litmus needs two CPUs to run its threads at once (CI's machines have two)."""
    requires("two_cpus")


def check_decided(data: dict) -> None:
    """What holds on any x86-64 machine with two CPUs, whatever its rates (module docstring)."""
    budget = decide.Budget(**{k: v for k, v in data["budget"].items() if k != "ranges"},
                           ranges=tuple(data["budget"]["ranges"]))
    references = {}
    for s in data["shapes"]:
        if s.get("source") == "binary":
            continue
        assert s["iterations"] >= budget.minimum, s
        assert s["iterations"] <= budget.maximum, s
        low, high = s["interval"]
        assert low <= s["per_million"] <= high
        if s["role"] == "control":
            assert s["forbidden"] == 0 and s["control_ok"] is True, s
        if s["role"] == "reference":
            assert s["verdict"] == "observed", s        # >= 30 in the budget, on two CPUs
            assert s["forbidden"] >= budget.observations
            assert sum(b["iterations"] for b in s["bands"]) == s["iterations"]
            assert sum(b["forbidden"] for b in s["bands"]) == s["forbidden"]
            if budget.offsets is None:
                assert [c["offsets"] for c in s["calibration"]] == list(budget.ranges)
                assert s["offsets"] in budget.ranges
            references[s["target"]] = s
    assert references, "no reference row ran"
    for s in data["shapes"]:
        if s.get("source") == "binary" or s["role"] != "below":
            continue
        assert s["verdict"] != "not below", s          # never, on x86-64 (a wrong order)
        assert s["wrong"] is False
        if X86 and s["name"] == "stale-goal" and (s["fence"] or s["goal"] == "advancing"
                                                   or s["fix"]):
            assert s["forbidden"] == 0, s
        ref = references[s["target"]]
        limit = ref["interval"][0] / budget.margin
        # A row counting 0 reaches an upper end of 3.84/N (per iteration) by N = maximum: if
        # that is below the limit, the rule must have found it conclusive.
        if s["forbidden"] == 0 and 3.85e6 / budget.maximum < limit:
            assert s["verdict"] == "conclusive", (s, ref)
        if s["verdict"] == "conclusive":
            assert s["interval"][1] < limit
        assert s["reference"] and "stale-goal" in s["reference"]


@pytest.fixture(scope="module")
def port_run(tmp_path_factory) -> tuple[int, dict, str, str]:
    two_cpus()
    out = tmp_path_factory.mktemp("hazards")
    argv = ["--iterations", str(MINIMUM), "--no-relacy", "-q", "--seed", "5",
            "--fix", "stale-goal-fence", "--fix", "stale-goal-rmw",
            "--json", str(out / "h.json"), "--markdown", str(out / "h.md")]
    for profile in PORT_PROFILES:
        argv += ["--profile", profile]
    status = hazards_cli.main(argv)
    return (status, json.loads((out / "h.json").read_text()), (out / "h.md").read_text(),
            (out / "h.json").read_text())


@pytest.mark.slow     # the shared port run
def test_port_shapes(port_run):
    """The unfixed stale goal is observed (>= 30 times) on the port with the non-advancing goal
    (x86-TSO's store buffering: the goal's load passes the buffered unlink store); the fenced
    and advancing rows, and each fix, are never above it, and conclusively below it whenever
    the reference's rate allows it within the budget; every control counts 0."""
    status, data, _, _ = port_run
    assert status == 0, (data["errors"], data["wrong"])
    check_decided(data)
    for profile in PORT_PROFILES:
        common = {"profile": profile, "fix": None, "name": "stale-goal"}
        stale = one(data, goal="non-advancing", fence=False, control=False, **common)
        assert stale["freed_while_held"] > 0 and stale["poisoned_reads"] > 0
        one(data, goal="non-advancing", fence=True, control=False, **common)
        one(data, goal="advancing", fence=False, control=False, **common)
    controls = rows(data, control=True)
    assert len(controls) == len(PORT_PROFILES) * 4 + 2 * len(PORT_PROFILES)
    assert data["controls_ok"] is True and data["exit_status"] == 0


@pytest.mark.slow
def test_retire_before_unlink_is_reached_whatever_the_goal(port_run):
    """The goal taken before the unlink is reached under a reader of the old pointer with
    either goal kind and with either fix: it is wrong even under sequential consistency."""
    _, data, _, _ = port_run
    for profile in PORT_PROFILES:
        found = rows(data, profile=profile, name="retire-before-unlink", control=False)
        assert {(r["goal"], r["fix"]) for r in found} == {
            ("non-advancing", None), ("advancing", None), ("non-advancing", "stale-goal-fence"),
            ("non-advancing", "stale-goal-rmw")}
        assert all(r["forbidden"] > 0 and r["verdict"] == "observed" for r in found), found


@pytest.mark.slow
def test_each_fix_is_compared_with_the_unfixed_build(port_run):
    """Built with either fix (a copy of the port patched with GNU patch), the unfenced
    non-advancing stale-goal row is judged against the unfixed build's reference, at the offsets
    that build's calibration chose."""
    _, data, _, _ = port_run
    for profile in PORT_PROFILES:
        ref = one(data, profile=profile, role="reference")
        for fix in ("stale-goal-fence", "stale-goal-rmw"):
            row = one(data, profile=profile, name="stale-goal", goal="non-advancing",
                      fence=False, control=False, fix=fix)
            assert row["role"] == "below" and row["offsets"] == ref["offsets"]
            assert row["reference"] == f"{ref['target']}: stale-goal, non-advancing goal"
            if X86:
                assert row["forbidden"] == 0, row


@pytest.mark.slow
def test_json_and_markdown_say_what_they_measured(port_run):
    _, data, markdown, text = port_run
    for key in ("cpu", "machine", "cpus_pinned", "shapes", "audit", "audit_note", "zero_means",
                "interval_method", "budget", "decide_rule", "seed", "comparisons"):
        assert key in data, key
    assert data["cpu"] and data["cpu"] != "unknown"
    assert data["audit"] == [] and "no CPython source" in data["audit_note"]
    for shape in data["shapes"]:
        for key in ("name", "release", "goal", "fence", "fix", "iterations", "forbidden",
                    "per_million", "interval", "interval_method", "control", "role", "verdict",
                    "why", "offsets", "seed", "bands", "litmus_command"):
            assert key in shape, key
        assert shape["goal"] in ("non-advancing", "advancing")
        assert shape["release"].startswith("port:")
        assert shape["per_million"] == shape["forbidden"] * 1e6 / shape["iterations"]
        assert shape["litmus_command"].split()[-2:] == [str(shape["offsets"]),
                                                         str(shape["seed"])]
    if X86:
        acquire = rows(data, name="read-acquire", control=False)
        assert acquire and all("x86-64 cannot show" in r["unchecked_here"] for r in acquire)
    assert "not observed" in data["zero_means"] and "does not prove" in data["zero_means"]
    assert "does not prove the outcome impossible" in markdown
    assert "| stale-goal |" in markdown and "Wilson" in markdown
    assert "## Offsets" in markdown and "calibration (not counted)" in markdown
    assert "decide rule" in data["decide_rule"] and "inconclusive on this machine" in text


def test_wilson_interval():
    low, high = hazards.wilson(0, 1_000_000)
    assert low == 0 and high == pytest.approx(3.84e-6, rel=0.01)
    low, high = hazards.wilson(10, 100)
    assert low == pytest.approx(0.0552, abs=1e-3) and high == pytest.approx(0.1744, abs=1e-3)


@pytest.fixture(scope="module")
def litmus(tmp_path_factory) -> hazards.Built:
    requires("cc")
    target = hazards.port_targets([hazards.RELEASE_PROFILES[-1]])[0]
    built = hazards.build(target, sources.reference_c(), tmp_path_factory.mktemp("litmus"))
    assert not built.errors, built.errors
    return built


def test_offsets_are_drawn_from_the_seed(litmus):
    """The same seed draws the same offsets (the iterations per band are the same, whatever
    the hardware does); another seed draws others; range 1 is one band at offset 0."""
    shape = hazards.PLAN[3]                                     # a control: never races
    first = hazards.run_shape(litmus, shape, 5000, 256, 9)
    again = hazards.run_shape(litmus, shape, 5000, 256, 9)
    other = hazards.run_shape(litmus, shape, 5000, 256, 10)
    per_band = [b[:3] for b in first["bands"]]
    assert per_band == [b[:3] for b in again["bands"]]
    assert per_band != [b[:3] for b in other["bands"]]
    assert sum(b[2] for b in first["bands"]) == 5000 and len(first["bands"]) == 8
    assert first["bands"][0][0] == -255 and first["bands"][-1][1] == 255
    flat = hazards.run_shape(litmus, shape, 1000, 1, 9)
    assert flat["bands"] == [[0, 0, 1000, 0]]


def test_the_litmus_refuses_bad_offsets(litmus):
    for bad in (["0"], ["65537"], ["64", "x"], ["-3"]):
        proc = subprocess.run([str(litmus.litmus), "stale-goal", "advancing", "0", "0", "10",
                               *bad], capture_output=True, text=True)
        assert proc.returncode == 2, (bad, proc.stdout)


def _fake_litmus(monkeypatch, rate_of) -> None:
    """Replace the litmus program: each row counts ``rate_of(shape)`` forbidden outcomes per
    iteration (deterministically), so the decide rule's handling is seen without hardware."""
    def run_shape(built, shape, iterations, offsets=64, seed=1):
        forbidden = int(iterations * rate_of(shape))
        return {"iterations": iterations, "forbidden": forbidden, "reached": forbidden,
                "old_seen": forbidden, "freed_while_held": 0, "poisoned_reads": 0,
                "pinned": "0,1", "bands": [[0, 0, iterations, forbidden]]}
    monkeypatch.setattr(hazards, "run_shape", run_shape)


ARGV = ["--profile", "3.14.4+", "--iterations", "2000", "--max-iterations", "40000",
        "--calibration", "1000", "--no-relacy", "-q"]


def test_a_nonzero_control_fails_the_command(monkeypatch, tmp_path, capsys):
    """The exit status is 1 and the report says the harness is broken when a control counts
    anything."""
    requires("cc")
    _fake_litmus(monkeypatch, lambda s: 0.01 if s.control or s.role == "reference" else 0.0)
    status = hazards_cli.main([*ARGV, "--json", str(tmp_path / "h.json")])
    out = capsys.readouterr().out
    assert status == 1
    assert "NON-ZERO" in out and "harness is broken" in out
    data = json.loads((tmp_path / "h.json").read_text())
    assert data["controls_ok"] is False and data["exit_status"] == 1


def test_a_fix_that_does_not_order_fails_the_command(monkeypatch, tmp_path, capsys):
    """A fenced row at the unfixed rate is 'not below' it: exit 1, named in the verdict."""
    requires("cc")
    _fake_litmus(monkeypatch, lambda s: 0.01 if s.role == "reference" or s.fence
                 or s.role == "expect" else 0.0)
    status = hazards_cli.main([*ARGV, "--json", str(tmp_path / "h.json")])
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "h.json").read_text())
    assert status == 1 and data["exit_status"] == 1
    fenced = one(data, name="stale-goal", fence=True)
    assert fenced["verdict"] == "not below" and fenced["wrong"] is True
    assert "must be below the unfixed rate are not" in out and "+fence" in out


def test_a_machine_that_cannot_show_the_shape_says_so(monkeypatch, tmp_path, capsys):
    """When the reference never shows the outcome, nothing is called conclusive: every
    comparison is 'inconclusive on this machine', the reference says why, the exit status is 0
    (nothing was shown wrong), and the rows still ran the maximum."""
    requires("cc")
    _fake_litmus(monkeypatch, lambda s: 0.01 if s.role == "expect" else 0.0)
    status = hazards_cli.main([*ARGV, "--json", str(tmp_path / "h.json")])
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "h.json").read_text())
    assert status == 0
    ref = one(data, role="reference")
    assert ref["verdict"] == "inconclusive on this machine" and ref["iterations"] == 40000
    assert "fewer than the 30" in ref["why"]
    below = rows(data, role="below")
    assert below and all(r["verdict"] == "inconclusive on this machine" for r in below)
    assert data["comparisons"] == {"inconclusive on this machine": len(below)}
    assert (f"comparisons with the unfixed rate: {len(below)} inconclusive on this machine"
            in out)


@pytest.mark.parametrize("argv", [
    ["--iterations", "0"],
    ["--max-iterations", "-1"],
    ["--offsets", "0"],
    ["--offsets", "wide"],
    ["--margin", "0.5"],
    ["--fix", "no-such-fix"],
    ["--profile", "3.12"],
    ["/no/such/source"],
    ["--json", "/no/such/folder/h.json"],
])
def test_usage_errors_exit_2(argv, capsys):
    assert hazards_cli.main(argv) == 2
    assert "hazards" in capsys.readouterr().err


def test_cli_registers_the_subcommand(capsys):
    from conformance.frontends import cli
    assert "hazards" in cli.SUBCOMMANDS
    assert cli.main(["hazards", "--iterations", "-5"]) == 2


@pytest.mark.parametrize("version,function", [("3.13.5", "_Py_qsbr_deferred_advance"),
                                              ("3.13.15", "_Py_qsbr_shared_next"),
                                              ("3.14.7", "_Py_qsbr_shared_next")])
@pytest.mark.parametrize("fix", ["stale-goal-fence", "stale-goal-rmw"])
def test_fix_applies_to_the_release_goal_function(version, function, fix, tmp_path):
    """On a release, the hunk of its own goal function applies and lands in that function;
    the other goal function's hunk is the only one that fails."""
    port = sources.reference_c()
    target = release(version)
    shim = upstream.prepare(target.upstream, tmp_path)
    assert shim.is_dir()
    qsbr_c = tmp_path / "qsbr.c"
    assert hazards._apply_fix(hazards.fixes(port)[fix], target, tmp_path, qsbr_c) is None
    text = qsbr_c.read_text()
    body = text[text.index(f"\n{function}("):]
    body = body[:body.index("\n}\n")]
    assert f"Fix {fix}" in body
    # A release whose goal line differs from the hunk's: the fix must not silently skip it.
    target.upstream.qsbr_c = target.upstream.qsbr_c.replace("+ QSBR_INCR;", "+QSBR_INCR;")
    upstream.prepare(target.upstream, tmp_path)
    error = hazards._apply_fix(hazards.fixes(port)[fix], target, tmp_path, qsbr_c)
    assert error is not None and "failed on" in error


def test_314_tarball_stale_goal(tmp_path):
    """The 3.14.7 release's own qsbr.c, built against the stand-ins: the decide rule holds as
    on the port (the stale goal observed with _Py_qsbr_shared_next, the fence and
    _Py_qsbr_advance never above it); the JSON names the release, and the caller audit ran
    (libclang is installed) or says exactly why not."""
    two_cpus()
    source = tarball("3.14.7")
    status = hazards_cli.main([str(source), "--iterations", str(MINIMUM), "--no-relacy",
                               "-q", "--json", str(tmp_path / "h.json")])
    data = json.loads((tmp_path / "h.json").read_text())
    assert status == 0, (data["errors"], data["wrong"])
    assert {s["release"] for s in data["shapes"]} == {"3.14.7"}
    check_decided(data)
    assert isinstance(data["audit"], list)
    if check("libclang") is None:
        assert data["audit"] and data["audit_note"] is None, data["audit_note"]
        assert all({"file", "function", "line", "verdict"} <= set(s) for s in data["audit"])
    else:
        assert data["audit"] == [] and "not importable" in data["audit_note"]


@pytest.mark.slow
@pytest.mark.requires("relacy")
def test_relacy_beside_each_shape(tmp_path):
    """Relacy's verdicts beside the litmus: the stale goal and retire-before-unlink found
    (with a trace of the first failing execution), the advancing goal and the seq_cst first
    load clean, the acquire first load found (S-READ-1); with stale-goal-rmw the stale goal is
    clean under the C11 model too."""
    status = hazards_cli.main(["--profile", "3.14.4+", "--iterations", "1000",
                               "--max-iterations", "2000", "--calibration", "500", "-q",
                               "--fix", "stale-goal-rmw", "--json", str(tmp_path / "h.json")])
    data = json.loads((tmp_path / "h.json").read_text())
    assert status == 0, data["errors"]

    def verdict(**match):
        return one(data, control=False, **match)["relacy"]

    stale = verdict(name="stale-goal", goal="non-advancing", fence=False, fix=None)
    assert stale["verdict"] == "found" and "[NOT CURRENT]" in stale["first_failure"]
    assert verdict(name="stale-goal", goal="advancing", fix=None)["verdict"] == "clean"
    assert verdict(name="retire-before-unlink", goal="non-advancing",
                   fix=None)["verdict"] == "found"
    assert verdict(name="read-seqcst", fix=None)["verdict"] == "clean"
    assert verdict(name="read-acquire", fix=None)["verdict"] == "found"
    assert verdict(name="stale-goal", goal="non-advancing", fence=False,
                   fix="stale-goal-rmw")["verdict"] == "clean"


def test_runs_from_an_empty_folder(tmp_path):
    """The command locates reference_c/ through conformance.sources (beside the package),
    not the current folder."""
    env = {k: v for k, v in os.environ.items() if k != "QSBR_REFERENCE_C"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-P", "-m", "conformance", "hazards", "--profile",
                           "3.14.4+", "--iterations", "2000", "--max-iterations", "20000",
                           "--calibration", "1000", "--no-relacy", "--json", "h.json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "building the litmus" in proc.stderr            # progress on stderr
    assert "calibrating the offsets" in proc.stderr
    assert "not observed" in proc.stdout
    assert json.loads((tmp_path / "h.json").read_text())["shapes"]


def test_caller_audit_hook(tmp_path):
    """The JSON's `audit` is conformance.checks.audit.audit_source(SOURCE) (the tarball test
    above checks a real one); the audit's own failure is an explanation under `audit_note`,
    never an empty audit passed off as clean."""
    requires("libclang")
    sites, note = hazards.caller_audit(str(tmp_path))       # not a CPython tree
    assert sites == [] and note.startswith("the caller audit failed: ") and "CPython" in note
    assert hazards.caller_audit(None)[1].startswith("no CPython source given")


def _binary_row(binary: str, offsets: int, iterations: int, forbidden: int) -> dict:
    budget = decide.Budget()
    tally = decide.Tally(offsets, 1)
    tally.add({"iterations": iterations, "forbidden": forbidden})
    verdict = decide.judge(decide.REFERENCE, tally, None, budget)
    return {"name": "stale-goal", "goal": "non-advancing", "fence": False, "role": "reference",
            "release": "3.14.7", "binary": binary, "offsets": offsets, "iterations": iterations,
            "forbidden": forbidden, "verdict": verdict["verdict"], "source": "binary"}


def test_a_patched_binary_is_compared_with_its_unpatched_one():
    """hazards --binary UNPATCHED --binary PATCHED: the patched build's own stale goal shows
    nothing (its reference row is the fixed code), so it is judged against the unpatched
    build's rate at the same offsets: conclusive when far below, never when close to it, and
    inconclusive at other offsets."""
    def report(*rows):
        r = hazards.Report(None, decide.Budget(), "cpu")
        r.binary = list(rows)
        hazards.compare_binaries(r)
        return r

    fixed = report(_binary_row("/u/python", 256, 100_000, 1262),
                   _binary_row("/p/python", 256, 4_000_000, 0))
    row = fixed.binary[1]
    assert row["compared_with"] == "/u/python" and row["compared_verdict"] == "conclusive"
    assert "compared_with" not in fixed.binary[0] and fixed.exit_status == 0
    assert fixed.comparisons() == {"conclusive": 1}
    # A patch that changed nothing shows the stale goal itself (observed, as unpatched):
    # its own row says so, and nothing is compared.
    same = report(_binary_row("/u/python", 256, 100_000, 1262),
                  _binary_row("/p/python", 256, 100_000, 1000))
    assert same.binary[1]["verdict"] == "observed" and "compared_with" not in same.binary[1]
    # Fewer than 30 but not far below: inconclusive, never conclusive.
    near = report(_binary_row("/u/python", 256, 100_000, 1262),
                  _binary_row("/p/python", 256, 4_000_000, 29))
    assert near.binary[1]["compared_verdict"] == "conclusive"     # 7/M against 1,195/M
    weak = report(_binary_row("/u/python", 256, 100_000, 40),
                  _binary_row("/p/python", 256, 100_000, 29))
    assert weak.binary[1]["compared_verdict"] in ("not below", "inconclusive on this machine")
    elsewhere = report(_binary_row("/u/python", 256, 100_000, 1262),
                       _binary_row("/p/python", 4096, 4_000_000, 0))
    assert elsewhere.binary[1]["compared_verdict"] == "inconclusive on this machine"
