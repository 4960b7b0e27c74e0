"""conformance.sources: the one place that finds the port's sources, where to build them, and
the one hash of them (which reference_c/relacy/run.py's own copy must equal)."""

from __future__ import annotations

import importlib.util
import shutil
import stat
import threading
from pathlib import Path

import pytest

from conformance import sources
from conformance.checks import modelcheck
from conformance.frontends import cli


def _copy_tree(source: Path, target: Path) -> Path:
    for name in sources.source_files(source):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target / name)
    return target


def _load_run_py(root: Path):
    """reference_c/relacy/run.py of the tree at ``root``, as a module (its ROOT is ``root``)."""
    spec = importlib.util.spec_from_file_location(f"qsbr_relacy_run_{id(root)}",
                                                  root / "relacy" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_relacy_run_py_writes_the_hash_the_suite_checks(tmp_path):
    """run.py (standalone: it may not import the package) keeps its own hash function; the
    conformance run only uses results whose hash equals modelcheck.sources_hash.  Both must
    agree on the same tree, and both must change with every file they cover."""
    tree = _copy_tree(sources.reference_c(), tmp_path / "reference_c")
    run = _load_run_py(tree)
    assert run.ROOT == tree.resolve()
    assert tuple(run.SOURCES) == tuple(modelcheck._SOURCES)
    seen = {run.sources_hash()}
    assert run.sources_hash() == modelcheck.sources_hash(tree)
    for name in run.SOURCES:
        with open(tree / name, "ab") as handle:
            handle.write(b"\n/* edited */\n")
        assert run.sources_hash() == modelcheck.sources_hash(tree), name
        assert run.sources_hash() not in seen, f"editing {name} did not change the hash"
        seen.add(run.sources_hash())


def test_sources_hash_covers_names_and_bytes(tmp_path):
    (tmp_path / "a").write_bytes(b"xy")
    (tmp_path / "b").write_bytes(b"")
    one = sources.sources_hash(tmp_path, ["a", "b"])
    assert one == sources.sources_hash(tmp_path)           # default: every file, sorted
    assert one != sources.sources_hash(tmp_path, ["b", "a"])
    (tmp_path / "b").write_bytes(b"z")
    assert one != sources.sources_hash(tmp_path, ["a", "b"])


def test_a_checkout_builds_in_its_own_reference_c():
    """Run from a source checkout (or an editable install) the sources and the builds are the
    checkout's reference_c/, as `make -C reference_c` has them; run from an installed package
    (tox installs a wheel) they are the package's copy and a copy of it in the cache."""
    if (sources.CHECKOUT / "Makefile").is_file():
        assert sources.reference_c() == sources.CHECKOUT
        assert sources.workspace() == sources.CHECKOUT
        assert sources.build_root() == sources.CHECKOUT / "build"
    else:
        assert sources.reference_c() == sources.SHIPPED
        assert sources.workspace().is_relative_to(sources.cache_dir())


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """An installed package as conformance.sources sees one: no checkout beside the package,
    the shipped copy (read-only, as site-packages may be), and a private cache folder."""
    shipped = _copy_tree(sources.reference_c(), tmp_path / "site" / "conformance" /
                         "_reference_c")
    (shipped / "build").mkdir()
    (shipped / "build" / "stale.o").write_text("an output, not a source")
    (shipped / "relacy" / "__pycache__").mkdir()
    (shipped / "relacy" / "__pycache__" / "run.cpython-313.pyc").write_text("compiled")
    for path in shipped.rglob("*"):
        if path.is_file():
            path.chmod(0o444)
    monkeypatch.setattr(sources, "CHECKOUT", tmp_path / "site" / "reference_c")
    monkeypatch.setattr(sources, "SHIPPED", shipped)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(sources.ENV, raising=False)
    return shipped


def test_installed_package_builds_in_a_cached_copy(installed, tmp_path):
    assert sources.reference_c() == installed
    work = sources.workspace()
    assert work.parent == tmp_path / "cache" / "qsbr-conformance" / "reference_c"
    assert work.name.endswith("-" + sources.sources_hash(installed)[:16])
    assert sources.build_root() == work / "build"
    names = sources.source_files(installed)
    assert "src/qsbr.c" in names and "relacy/run.py" in names
    assert sources.source_files(work) == names
    assert not (work / "build").exists() and not (work / "relacy" / "__pycache__").exists()
    for name in names:
        assert (work / name).read_bytes() == (installed / name).read_bytes(), name
        assert (work / name).stat().st_mode & stat.S_IWUSR, f"{name} copied read-only"
    assert sources.workspace() == work                      # made once
    assert [p.name for p in work.parent.iterdir()] == [work.name]   # no staging left behind
    # other sources (a new version of the package) build elsewhere
    qsbr_c = installed / "src" / "qsbr.c"
    qsbr_c.chmod(0o644)
    qsbr_c.write_text(qsbr_c.read_text() + "\n/* another version */\n")
    assert sources.workspace() != work
    assert (sources.workspace() / "src" / "qsbr.c").read_text() == qsbr_c.read_text()


def test_concurrent_first_use_makes_one_complete_copy(installed):
    barrier = threading.Barrier(6)
    results: list[Path] = []
    errors: list[BaseException] = []

    def use() -> None:
        barrier.wait()
        try:
            results.append(sources.workspace())
        except BaseException as exc:       # noqa: B036 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    work = results[0]
    assert sources.source_files(work) == sources.source_files(installed)
    assert [p.name for p in work.parent.iterdir()] == [work.name]


def test_the_environment_variable_wins(installed, tmp_path, monkeypatch):
    other = _copy_tree(installed, tmp_path / "mine")
    monkeypatch.setenv(sources.ENV, str(other))
    assert sources.reference_c() == other
    assert sources.workspace() == other                    # built in place, as a checkout
    monkeypatch.setenv(sources.ENV, str(tmp_path))
    with pytest.raises(sources.SourcesNotFound, match=sources.ENV):
        sources.reference_c()


def test_no_sources_is_an_error_that_says_where_it_looked(installed, monkeypatch, capsys):
    monkeypatch.setattr(sources, "SHIPPED", installed.parent / "elsewhere")
    with pytest.raises(sources.SourcesNotFound) as info:
        sources.reference_c()
    assert str(sources.CHECKOUT) in str(info.value) and "elsewhere" in str(info.value)
    assert cli.main(["bench", "--quick", "--no-suite"]) == 2
    err = capsys.readouterr().err
    assert "elsewhere" in err and "--no-native" in err


def test_an_explicit_source_must_be_a_reference_c_folder(tmp_path, capsys):
    with pytest.raises(sources.SourcesNotFound, match="not a reference_c folder"):
        sources.workspace(tmp_path)
    assert cli.main(["bench", "--quick", "--no-suite", "--source", str(tmp_path)]) == 2
    assert "not a reference_c folder" in capsys.readouterr().err


def test_sources_imports_nothing_of_the_package():
    """Every group (model, checks, drivers, frontends, bench) may use it, so it uses none."""
    import ast

    tree = ast.parse(Path(sources.__file__).read_text(encoding="utf-8"))
    imported = [node.module or "" for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and (node.level or
                                                         (node.module or "").startswith("conf"))]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names if alias.name.startswith("conformance")]
    assert imported == []
