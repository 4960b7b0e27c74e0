"""The mutant catalog and `qsbr-conformance mutants`."""

import json

import pytest

from conformance import sources
from conformance.checks import mutants
from conformance.frontends import cli

needs_toolchain = pytest.mark.requires("toolchain")


def test_catalog_is_large_and_documented():
    catalog = mutants.catalog()
    assert len(catalog) >= 20
    names = [m.name for m in catalog]
    assert len(names) == len(set(names))
    for bug in ("gh-115103", "gh-134679"):
        assert any(bug in m.breaks for m in catalog)
    assert any("memory order" in m.breaks for m in catalog)
    for m in catalog:
        assert m.methods or m.equivalent, m.name
        assert all(fact.startswith("S-") for fact in m.facts.replace(",", " ").split()), m.name


def test_the_port_carries_no_mutant_switch():
    # Mutants are patch files applied to a copy: the port's own files have no trace of them.
    source = sources.workspace()
    assert source is not None
    for path in [*(source / "src").glob("*.c"), *(source / "include").glob("*.h")]:
        assert "QSBR_MUTANT" not in path.read_text(), path


@needs_toolchain
def test_every_patch_applies_and_changes_the_port(tmp_path):
    source = sources.workspace()
    for m in mutants.catalog():
        copy = mutants.patched_source(source, m.name, tmp_path / m.name)
        changed = [name for name in ("src/qsbr.c", "include/pycore_qsbr.h")
                   if (copy / name).read_text() != (source / name).read_text()]
        assert changed, m.name


def test_catalog_reads_any_new_patch(tmp_path):
    # A patch file dropped into mutants/ is in the catalog, with its header's fields; a header
    # that misses a required field or names an unknown check is refused.
    (tmp_path / "mutants").mkdir()
    (tmp_path / "mutants" / "NEW_ORDER.patch").write_text(
        "Mutant: NEW_ORDER\nFacts: S-QS-1\nKind: memory order\nKiller: model checker\n"
        "Summary: a store made relaxed\n  (continued)\nProfile: 314\n\n"
        "--- a/src/qsbr.c\n+++ b/src/qsbr.c\n@@ -1 +1 @@\n-x\n+y\n")
    [m] = mutants.catalog(tmp_path)
    assert (m.name, m.facts, m.methods, m.profile) == ("NEW_ORDER", "S-QS-1", ("modelcheck",),
                                                       "314")
    assert m.summary == "a store made relaxed (continued)"
    assert m.breaks == "S-QS-1 (memory order)"
    (tmp_path / "mutants" / "BAD.patch").write_text(
        "Mutant: BAD\nFacts: S-QS-1\nKind: logic\nKiller: prayer\nSummary: x\n---\n")
    with pytest.raises(mutants.CatalogError, match="prayer"):
        mutants.catalog(tmp_path)
    (tmp_path / "mutants" / "BAD.patch").write_text("Mutant: BAD\nFacts: S-QS-1\n---\n")
    with pytest.raises(mutants.CatalogError, match="Kind:"):
        mutants.catalog(tmp_path)


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
    assert [m.name for m in mutants.catalog() if m.equivalent] == []


needs_relacy = pytest.mark.requires("relacy")


@needs_relacy
def test_model_checker_kills_an_order_mutant(tmp_path, capsys):
    out = tmp_path / "mutants.json"
    status = cli.main(["mutants", "--only", "SCAN_NO_FENCE", "--work", str(tmp_path / "b"),
                       "--json", str(out)])
    text = capsys.readouterr().out
    assert status == 0, text
    row = json.loads(out.read_text())[0]
    assert row["killed"] and row["by"] == "modelcheck" and "relacy" in row["detail"], row


def test_model_checker_reads_the_same_catalog():
    # reference_c/relacy/run.py (standard library only) reads the patch headers itself: it runs
    # exactly the mutants whose Killer: names the model checker, with their profile.
    import importlib.util

    source = sources.workspace()
    spec = importlib.util.spec_from_file_location("relacy_run", source / "relacy" / "run.py")
    assert spec is not None and spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    expected = {m.name: m.profile for m in mutants.catalog() if "modelcheck" in m.methods}
    assert {name: row[0] for name, row in run.MUTANTS.items()} == expected
    for name, (_, scenarios, _) in run.MUTANTS.items():
        assert scenarios and set(scenarios) <= set(run.SCENARIOS), name
