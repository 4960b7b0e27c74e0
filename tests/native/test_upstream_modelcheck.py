"""`upstream`'s model-checker verdict is judged on the code (issue 33): a Relacy scenario whose
expectation is "found" (a finding the harness must reproduce) is a self-check of the harness,
reported apart, and never fails another qsbr.c (``run.py --source``, the upstream run) that is
correct and perhaps stronger than the release's; the port's own run keeps it a failure.
"""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path

import pytest
from requires import tarball

from conformance.checks import upstream
from conformance.model.profiles import for_version

RUN_PY = Path(__file__).resolve().parents[2] / "reference_c" / "relacy" / "run.py"


def _run_py():
    spec = importlib.util.spec_from_file_location("relacy_run_selfcheck", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(subject, scenario, scheduler, verdict, expected):
    return {"subject": subject, "scenario": scenario, "profile": "314", "scheduler": scheduler,
            "iterations": 20000, "ms": 1, "verdict": verdict, "detail": "", "expected": expected,
            "ok": expected == "any" or verdict == expected, "piece": f"{scenario}:{scheduler}"}


def test_a_finding_not_reproduced_fails_the_port_but_not_another_qsbr_c(tmp_path):
    run = _run_py()
    rows = [_row("source", "rw", "random", "clean", "clean"),
            _row("source", "stale-goal", "random", "clean", "found")]
    judged = run.assemble([dict(r) for r in rows], 1.0, tmp_path)
    assert judged["ok"], judged
    assert judged["self_checks"] == [{"profile": "314", "scenario": "stale-goal",
                                      "scheduler": "random", "reproduced": False,
                                      "sequentially_consistent": True}]
    text = run.summary(judged)
    assert "all expectations hold" in text
    assert "harness self-checks not reproduced" in text and "stale-goal" in text
    assert "reachable under sequential consistency" in text
    # the port's own run: its harness must keep reaching its findings
    port = [dict(r, subject="port") for r in rows]
    assert not run.assemble(port, 1.0, None)["ok"]
    # and a scenario expected clean that is not fails any qsbr.c
    broken = [dict(r) for r in rows] + [_row("source", "qs", "random", "found", "clean")]
    assert not run.assemble(broken, 1.0, tmp_path)["ok"]


def _one_edit_tree(version: str, tmp_path: Path, old: str, new: str) -> Path:
    with tarfile.open(tarball(version)) as archive:
        wanted = [m for m in archive.getmembers()
                  if m.name.split("/", 1)[-1] in (upstream.QSBR_C, upstream.QSBR_H,
                                                  upstream.PATCHLEVEL)]
        archive.extractall(tmp_path, members=wanted, filter="data")
    root = tmp_path / f"Python-{version}"
    qsbr_c = root / upstream.QSBR_C
    text = qsbr_c.read_text()
    assert text.count(old) == 1, old
    qsbr_c.write_text(text.replace(old, new))
    return root


@pytest.mark.requires("relacy")
@pytest.mark.requires("cxx")
def test_a_stronger_detach_does_not_fail_the_model_checker(tmp_path):
    # detach's release store made seq_cst: strictly stronger, still correct
    root = _one_edit_tree("3.14.7", tmp_path, "_Py_atomic_store_uint64_release(&qsbr->seq, "
                          "QSBR_OFFLINE);", "_Py_atomic_store_uint64(&qsbr->seq, QSBR_OFFLINE);")
    release = upstream.read_release(str(root))
    target = for_version(release.version)
    port = upstream.port_sources(None)
    work = tmp_path / "work"
    work.mkdir()
    upstream.build(release, target, port, work)
    checked = upstream.run_model_checker(work, target, port)
    assert not isinstance(checked, str), checked
    assert checked.ok, checked.summary + "\n" + checked.output[-3000:]
