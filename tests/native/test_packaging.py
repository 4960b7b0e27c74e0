"""The sdist and the wheel: they carry the port's sources, and an installed package works with
no checkout, from an empty folder.

Slow (a few minutes): ``python -m build`` makes the sdist, then the wheel from the unpacked
sdist (so the sdist is proven to build), compiling the Cython bridge for four profiles; then a
fresh virtual environment installs the wheel (its dependencies come from the package index or
pip's cache).  Built once per session, shared by the xdist workers (a lock file, no polling).
Run once, by tools/test: the free-threaded tox environments skip this file (tox.ini), as the
packaging does not depend on the interpreter's build.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from requires import tarball

from conformance import sources

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _tracked(folder: str) -> list[str]:
    """The checkout's files under ``folder`` (git's list when this is a git checkout, else
    every source file there), relative to the checkout."""
    proc = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard",
                           "--", folder], capture_output=True, text=True)
    if proc.returncode == 0 and proc.stdout.strip():
        return sorted(line for line in proc.stdout.splitlines() if (ROOT / line).is_file())
    return sorted(f"{folder}/{name}" for name in sources.source_files(ROOT / folder))


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Path:
    """A folder every xdist worker of this session shares (the session's own without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _once(shared: Path, name: str, make) -> None:
    """Run ``make()`` once per session across workers: the first takes the lock and makes
    it, the others wait on the lock and find it made (or find why it failed)."""
    done, failed = shared / f"{name}.done", shared / f"{name}.failed"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(failed.read_text())
        if not done.exists():
            try:
                make()
            except Exception as exc:
                failed.write_text(f"{name}: {exc}")
                raise
            done.touch()


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, f"{what}: exit status {proc.returncode}\n{proc.stdout}" \
                                 f"\n{proc.stderr}"


@pytest.fixture(scope="session")
def dist(shared) -> dict[str, Path]:
    """The sdist and the wheel built from it."""
    out = shared / "dist"

    def build() -> None:
        proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                              capture_output=True, text=True)
        _check(proc, "python -m build (needs the `build` package: the [test] extra)")

    _once(shared, "dist", build)
    return {"sdist": next(out.glob("*.tar.gz")), "wheel": next(out.glob("*.whl"))}


@pytest.fixture(scope="session")
def venv(shared, dist) -> Path:
    """A fresh virtual environment with the wheel installed (nothing of the checkout)."""
    target = shared / "venv"

    def install() -> None:
        _check(subprocess.run([sys.executable, "-m", "venv", str(target)],
                              capture_output=True, text=True), "python -m venv")
        _check(subprocess.run([str(target / "bin" / "python"), "-m", "pip", "install", "-q",
                               "--disable-pip-version-check", str(dist["wheel"])],
                              capture_output=True, text=True), "pip install the wheel")

    _once(shared, "venv", install)
    return target


@pytest.fixture
def run(venv, shared, tmp_path):
    """Run a command of the installed package from an empty folder, with its own cache."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", sources.ENV)}
    env["XDG_CACHE_HOME"] = str(shared / "cache")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=empty, env=env,
                              capture_output=True, text=True)

    run.cwd = empty             # type: ignore[attr-defined]
    run.cache = shared / "cache" / "qsbr-conformance"      # type: ignore[attr-defined]
    return run


def test_sdist_carries_the_port_the_tests_and_the_tools(dist):
    with tarfile.open(dist["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    port = _tracked("reference_c")
    assert "reference_c/relacy/run.py" in port and "reference_c/src/qsbr.c" in port
    assert set(port) <= names, sorted(set(port) - names)
    tests = {name for name in _tracked("tests") if name.endswith(".py")}
    assert "tests/native/test_packaging.py" in tests and tests <= names, sorted(tests - names)
    assert {"tox.ini", "pyproject.toml", "setup.py", "tools/provision-python"} <= names
    assert not [n for n in names if n.startswith("reference_c/build/")]


def test_wheel_carries_the_port_as_package_data(dist):
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
    shipped = {"conformance/_reference_c/" + name.removeprefix("reference_c/")
               for name in _tracked("reference_c")}
    assert shipped <= names, sorted(shipped - names)
    assert not [n for n in names if n.startswith("conformance/_reference_c/build/")
                or n.endswith((".o", ".a")) and "_reference_c" in n]
    assert not [n for n in names if n.startswith("reference_c/")]   # only inside the package


def test_installed_version_from_an_empty_folder(run):
    proc = run("qsbr-conformance", "--version")
    _check(proc, "qsbr-conformance --version")
    assert proc.stdout.startswith("qsbr-conformance ")


def test_installed_package_finds_its_own_copy_of_the_port(run, venv):
    proc = run("python", "-c", "import json, sysconfig; from conformance import sources; "
               "print(json.dumps([str(sources.reference_c()), str(sources.workspace()), "
               "sysconfig.get_paths()['platlib'], sysconfig.get_paths()['purelib']]))")
    _check(proc, "conformance.sources in the installed package")
    port, work, platlib, purelib = map(Path, json.loads(proc.stdout))
    assert port.is_relative_to(platlib) or port.is_relative_to(purelib), port
    assert port.is_relative_to(venv.resolve()) and port.name == "_reference_c"
    assert (port / "src" / "qsbr.c").is_file() and (port / "relacy" / "run.py").is_file()
    assert work.is_relative_to(run.cache), work      # builds go to the cache, not site-packages
    assert (work / "Makefile").is_file()


def test_installed_upstream_help(run):
    proc = run("qsbr-conformance", "upstream", "--help")
    _check(proc, "qsbr-conformance upstream --help")
    assert "--compare-only" in proc.stdout


def test_installed_upstream_compares_a_release_without_source(run):
    proc = run("qsbr-conformance", "upstream", str(tarball("3.14.7")), "--compare-only")
    _check(proc, "qsbr-conformance upstream --compare-only")
    assert "MATCHES 3.14.4+ with zero differences" in proc.stdout


def test_installed_bench_builds_the_native_bench_from_an_empty_folder(run):
    proc = run("qsbr-conformance", "bench", "--quick", "--profile", "3.13", "--readers", "1",
               "-q", "--json", "b.json")
    _check(proc, "qsbr-conformance bench --quick --profile 3.13 --readers 1")
    data = json.loads((run.cwd / "b.json").read_text())
    assert data["native"]["3.13"]["operations"]
    assert data["suite"]["time_to_verdict"]["conforms"] is True
    built = list(run.cache.glob("reference_c/*/build/313/qsbr-bench"))
    assert len(built) == 1, built
    # nothing else written here (no .hypothesis/: Hypothesis' storage is in the cache folder)
    assert sorted(p.name for p in run.cwd.iterdir()) == ["b.json"]


def test_installed_default_run_looks_for_model_checker_results_of_its_sources(run):
    proc = run("qsbr-conformance", "--examples", "5", "--explore-seconds", "0",
               "--concurrency-rounds", "0", "--seed", "1", "-q")
    _check(proc, "a short default run")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("model checker"))
    assert "no results yet for these sources" in line, line
    assert str(run.cache / "reference_c") in line, line
