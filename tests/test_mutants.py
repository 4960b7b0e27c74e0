"""The mutant catalog and `qsbr-conformance mutants`."""

import json
import os
import shutil

import pytest

from conformance.checks import mutants
from conformance.frontends import cli

needs_toolchain = pytest.mark.skipif(
    not (shutil.which("make") and shutil.which(os.environ.get("CC", "cc"))
         and mutants.find_source(None)),
    reason="needs make, a C compiler and the reference_c/ sources to build mutants")


def test_catalog_is_large_and_documented():
    assert len(mutants.CATALOG) >= 20
    names = [m.name for m in mutants.CATALOG]
    assert len(names) == len(set(names))
    for bug in ("gh-115103", "gh-134679"):
        assert any(bug in m.breaks for m in mutants.CATALOG)
    assert any("memory order" in m.breaks for m in mutants.CATALOG)
    source = mutants.find_source(None)
    if source is not None:          # every switch exists in the port's sources
        text = "".join(p.read_text() for p in (source / "src").glob("*.c"))
        text += (source / "include" / "pycore_qsbr.h").read_text()
        for m in mutants.CATALOG:
            assert f"QSBR_MUTANT_{m.name}" in text, m.name


def test_list_and_bad_names(capsys):
    assert cli.main(["mutants", "--list"]) == 0
    assert "FREELIST_FIFO" in capsys.readouterr().out
    assert cli.main(["mutants", "--only", "NO_SUCH_MUTANT"]) == 2


@needs_toolchain
def test_kill_table(tmp_path, capsys):
    out = tmp_path / "mutants.json"
    status = cli.main(["mutants", "--only",
                       "ADVANCE_RETURNS_OLD,FORK_RESETS_SEQ,GH115103,SHARED_NEXT_ADVANCES",
                       "--torture-seconds", "2", "--work", str(tmp_path / "build"),
                       "--json", str(out)])
    text = capsys.readouterr().out
    assert status == 0, text
    rows = {row["mutant"]: row for row in json.loads(out.read_text())}
    advance = rows["ADVANCE_RETURNS_OLD"]
    assert advance["killed"] and advance["by"] == "conformance"
    assert "S-FORK-1" in rows["FORK_RESETS_SEQ"]["detail"]
    assert rows["GH115103"]["by"] == "replay" and "use-after-free" in rows["GH115103"]["detail"]
    assert rows["SHARED_NEXT_ADVANCES"]["killed"]              # a 3.14-profile mutant
    assert "4 killed, 0 not killed but argued in the catalog, 0 survived" in text


def test_no_row_is_argued():
    # Every mutant has a killer; none survives on an argument alone.
    assert [m.name for m in mutants.CATALOG if m.equivalent] == []


needs_relacy = pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("clang++"))
    or not os.path.isfile("/usr/include/relacy/relacy.hpp") or not mutants.find_source(None),
    reason="needs g++ or clang++ and the Relacy headers (apt-get install relacy-dev)")


@needs_relacy
def test_model_checker_kills_an_order_mutant(tmp_path, capsys):
    out = tmp_path / "mutants.json"
    status = cli.main(["mutants", "--only", "SCAN_NO_FENCE", "--work", str(tmp_path / "b"),
                       "--json", str(out)])
    text = capsys.readouterr().out
    assert status == 0, text
    row = json.loads(out.read_text())[0]
    assert row["killed"] and row["by"] == "modelcheck" and "relacy" in row["detail"], row
