"""`qsbr-conformance upstream`: CPython's own qsbr.c as the referee, and the release profiles."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from requires import check, missing, tarball

from conformance.checks import upstream
from conformance.frontends import cli, upstream_cli
from conformance.model import profiles
from conformance.model.layout import EXPECTED_LAYOUT, layout_differences
from conformance.reference import reference_port

MATRIX = {"3.13.5": "3.13.3-3.13.5", "3.13.15": "3.13.6-3.14.3", "3.14.7": "3.14.4+"}


def one_edit_tree(version: str, tmp_path: Path, old: str, new: str) -> Path:
    """A source tree of the release with one edit in Python/qsbr.c."""
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


@pytest.mark.parametrize("version", sorted(MATRIX))
def test_each_release_matches_its_profile_and_no_other(version, capsys):
    assert upstream_cli.main([str(tarball(version)), "--compare-only"]) == 0
    out = capsys.readouterr().out
    assert f"is profile {MATRIX[version]}" in out
    assert f"MATCHES {MATRIX[version]} with zero differences" in out
    matching = [line.split()[0] for line in out.splitlines() if line.endswith("<- matches")]
    assert matching == [MATRIX[version]]
    assert "removed `assert(!tstate->" in out and "holds_gil);`" in out


@pytest.mark.parametrize("old,new", [
    ("if (QSBR_LT(rd_seq, min_seq)) {", "if (QSBR_LEQ(rd_seq, min_seq)) {"),
    ("#define MIN_ARRAY_SIZE 8", "#define MIN_ARRAY_SIZE 16"),
    ("    qsbr->allocated = false;\n    qsbr->freelist_next = shared->freelist;",
     "    qsbr->freelist_next = shared->freelist;"),
])
def test_a_one_edit_copy_is_reported_as_differing(tmp_path, capsys, old, new):
    root = one_edit_tree("3.14.7", tmp_path, old, new)
    assert upstream_cli.main([str(root), "--compare-only"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS from its profile 3.14.4+" in out
    assert "<- matches" not in out
    removed = [line for line in out.splitlines()
               if line.startswith("  -") and not line.startswith("  ---")]
    assert len(removed) == 1 and removed[0].strip("- ") == old.split("\n")[0].strip(), out


def test_upstream_code_builds_and_passes_the_c_tests_torture_and_differential(capsys):
    code = upstream_cli.main([str(tarball("3.13.15")), "--examples", "20",
                          "--torture-seconds", "1"])
    out = capsys.readouterr().out
    assert "C tests: ok: " in out and " 0 failed" in out
    assert "torture (1 s): ok: PASS" in out
    assert "differential: ok: CONFORMS" in out and "releases 3.13.6-3.14.3" in out
    if check("relacy") is None:
        assert "model checker (Relacy): ok: " in out and "all expectations hold" in out
    else:
        missing("needs " + check("relacy") + ": the upstream run's model-checker line")
    assert code == 0, out


@pytest.mark.requires("relacy")
def test_a_memory_order_edit_is_found_by_the_model_checker(tmp_path, capsys):
    # A relaxed detach store in upstream's own qsbr.c: sequentially identical (the differential
    # run and the plain torture cannot see it on x86), the model checker must.
    root = one_edit_tree("3.13.15", tmp_path,
                         "_Py_atomic_store_uint64_release(&qsbr->seq, QSBR_OFFLINE);",
                         "_Py_atomic_store_uint64_relaxed(&qsbr->seq, QSBR_OFFLINE);")
    assert upstream_cli.main([str(root), "--examples", "10", "--torture-seconds", "1"]) == 1
    out = capsys.readouterr().out
    assert "differential: ok: CONFORMS" in out
    assert "model checker (Relacy): FAILED" in out, out


def test_a_behavioural_edit_fails_the_runs_too(tmp_path, capsys):
    # _Py_qsbr_advance returning the old value: the differential run must catch it on
    # upstream's own code, not only the source comparison.
    root = one_edit_tree("3.13.5", tmp_path,
                         "return _Py_atomic_add_uint64(&shared->wr_seq, QSBR_INCR) + QSBR_INCR;",
                         "return _Py_atomic_add_uint64(&shared->wr_seq, QSBR_INCR);")
    assert upstream_cli.main([str(root), "--examples", "20", "--torture-seconds", "1"]) == 1
    out = capsys.readouterr().out
    assert "differential: FAILED" in out


def test_unifdef_resolves_only_the_ports_switches():
    # The profile's switches are resolved; any other conditional (a QSBR_ name included: the
    # port's variants are patch files, not switches) is kept, and so compared with upstream.
    text = "\n".join([
        "#ifndef Py_INTERNAL_QSBR_H", "#if QSBR_DEFERRALS", "a", "#else", "b", "#endif",
        "#if !QSBR_ALIGNED_ARRAY", "plain", "#else", "aligned", "#endif",
        "#ifdef QSBR_SOMETHING_ELSE", "kept", "#endif",
        "#if QSBR_DEFERRALS && defined(FOO)", "mixed", "#endif", "#endif"])
    macros = upstream._macros(profiles.BY_NAME["3.13.6-3.14.3"])
    assert upstream.unifdef(text, macros) == [
        "#ifndef Py_INTERNAL_QSBR_H", "b", "plain", "#ifdef QSBR_SOMETHING_ELSE", "kept",
        "#endif", "#if QSBR_DEFERRALS && defined(FOO)", "mixed", "#endif", "#endif"]
    macros = upstream._macros(profiles.BY_NAME["3.14.4+"])
    assert upstream.unifdef(text, macros)[2] == "aligned"


def test_bad_sources_are_usage_errors(tmp_path, capsys):
    assert upstream_cli.main([str(tmp_path / "missing.tar.xz")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert upstream_cli.main([str(tmp_path)]) == 2
    assert "not a CPython 3.13+ source tree" in capsys.readouterr().err
    (tmp_path / "x.tar.xz").write_text("not a tarball")
    assert upstream_cli.main([str(tmp_path / "x.tar.xz")]) == 2
    assert "not a readable tarball" in capsys.readouterr().err


# --- the release profiles ---------------------------------------------------------------------

@pytest.mark.parametrize("version,name", [
    ((3, 13, 0), "3.13.0-3.13.2"), ((3, 13, 2), "3.13.0-3.13.2"), ((3, 13, 3), "3.13.3-3.13.5"),
    ((3, 13, 5), "3.13.3-3.13.5"), ((3, 13, 6), "3.13.6-3.14.3"), ((3, 13, 15), "3.13.6-3.14.3"),
    ((3, 14, 0), "3.13.6-3.14.3"), ((3, 14, 3), "3.13.6-3.14.3"), ((3, 14, 4), "3.14.4+"),
    ((3, 14, 7), "3.14.4+")])
def test_release_matrix(version, name):
    assert profiles.for_version(version).name == name


def test_versions_outside_the_matrix_are_refused():
    for version in ((3, 12, 9), (3, 15, 0)):
        with pytest.raises(profiles.UnknownRelease):
            profiles.for_version(version)


@pytest.mark.parametrize("name", sorted(profiles.BY_NAME))
def test_each_profile_has_its_own_bridge_build_with_its_layout(name):
    port = reference_port(name)
    assert port.release == name
    assert port.profile == profiles.BY_NAME[name].line
    layout = port.layout()
    assert all(layout[key] == value for key, value in EXPECTED_LAYOUT[name].items())
    assert ("offsetof(struct _qsbr_shared, array_raw)" in layout) == \
        profiles.BY_NAME[name].aligned_array


def test_aliases_keep_their_meaning():
    assert reference_port("3.13").release == "3.13.3-3.13.5"
    assert reference_port("3.14").release == "3.14.4+"


def test_profile_auto_follows_the_running_interpreter(capsys):
    try:
        expected = profiles.for_version(sys.version_info[:3]).name
    except profiles.UnknownRelease:
        assert cli.main(["--profile", "auto", "--examples", "1", "-q"]) == 2
        assert "has no QSBR profile" in capsys.readouterr().err
        return
    assert cli.main(["--profile", "auto", "--examples", "5", "-q", "--live-examples", "0"]) == 0
    assert f"releases {expected}" in capsys.readouterr().out


def test_help_shows_the_release_matrix():
    out = subprocess.run([sys.executable, "-P", "-m", "conformance", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for name in profiles.BY_NAME:
        assert name in out


def test_the_48_byte_layout_is_rejected_for_3_14_4():
    # A 3.13.6-3.14.3 build (no array_raw, 48-byte _qsbr_shared) is not 3.14.4+'s layout.
    layout = reference_port("3.13.6-3.14.3").layout()
    assert layout_differences("3.14.4+", layout)
    assert not layout_differences("3.13.6-3.14.3", layout)
    assert layout_differences("3.13.6-3.14.3", reference_port("3.14").layout())
