"""Where the reference port's C sources (``reference_c/``) are, where to build them, and the
one hash of a set of them.

Every part of the suite that builds or reads the port (the mutants, the C ABI torture driver,
``upstream``, ``bench``, the model checker's results) asks this module, so a source checkout and
an installed package behave the same:

- in a source checkout (or an editable install) the sources are the checkout's ``reference_c/``
  beside the package, and builds go into its ``build/`` folder, as ``make -C reference_c``'s do;
- in an installed package the sources are the copy shipped inside it
  (``conformance/_reference_c/``, package data: pyproject.toml), which may be read-only; builds
  go into a copy of it under the cache folder (``$XDG_CACHE_HOME/qsbr-conformance`` or
  ``~/.cache/qsbr-conformance``), one per suite version and sources hash, so that a new version
  or edited sources never reuse another's build.

``$QSBR_REFERENCE_C`` names another reference_c folder and wins over both.

This module sits below the model / checks / drivers / frontends / bench groups and imports
nothing from the package, so each of them may use it.  The code under test (reference_c/, the
Cython bridge) does not: reference_c/relacy/run.py keeps its own hash function, and a test
proves the two agree.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

#: the environment variable that names a reference_c folder explicitly
ENV = "QSBR_REFERENCE_C"
#: the shipped copy inside the installed package (pyproject.toml's package data)
SHIPPED = Path(__file__).resolve().parent / "_reference_c"
#: a checkout's reference_c/, beside the package
CHECKOUT = Path(__file__).resolve().parents[1] / "reference_c"
_MARK = "Makefile"                # every reference_c folder has it; a folder without is none
_SKIP = {"build", "__pycache__"}  # never part of the sources (outputs)


class SourcesNotFound(FileNotFoundError):
    """No reference_c/ sources: not a checkout, and the installed package does not carry them."""


def cache_dir() -> Path:
    """The suite's cache folder: ``$XDG_CACHE_HOME/qsbr-conformance``, else
    ``~/.cache/qsbr-conformance``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qsbr-conformance"


def reference_c() -> Path:
    """The port's sources (only to read: the shipped copy may be read-only): $QSBR_REFERENCE_C,
    else the checkout's reference_c/ beside the package, else the copy shipped in it."""
    explicit = os.environ.get(ENV)
    if explicit:
        path = Path(explicit)
        if not (path / _MARK).is_file():
            raise SourcesNotFound(f"${ENV} is {explicit}, which has no {_MARK} (not a "
                                  "reference_c folder)")
        return path
    for candidate in (CHECKOUT, SHIPPED):
        if (candidate / _MARK).is_file():
            return candidate
    raise SourcesNotFound(f"the port's sources are neither at {CHECKOUT} (a source checkout) "
                          f"nor at {SHIPPED} (the installed package's copy); reinstall the "
                          f"package, or set ${ENV} to a reference_c folder")


def source_files(root: Path) -> list[str]:
    """Every source file under ``root`` (relative POSIX names, sorted), outputs excluded."""
    names = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if path.is_file() and not _SKIP.intersection(relative.parts):
            names.append(relative.as_posix())
    return sorted(names)


def sources_hash(root: Path, names: Iterable[str] | None = None) -> str:
    """SHA-256 over ``names`` (relative to ``root``, in the order given; default: every source
    file under ``root``), each as its name, NUL, its bytes, NUL.  reference_c/relacy/run.py's
    sources_hash() is this function over its SOURCES (it may not import the package)."""
    import hashlib

    digest = hashlib.sha256()
    for name in source_files(root) if names is None else names:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("qsbr-conformance")
    except metadata.PackageNotFoundError:
        return "unknown"


def _cached_copy(source: Path) -> Path:
    """The cache folder's copy of ``source`` for this version and these sources, made once
    (atomically: a copy is made beside it and renamed into place, so concurrent processes
    either make it or find it complete)."""
    import shutil
    import tempfile

    target = cache_dir() / "reference_c" / f"{_version()}-{sources_hash(source)[:16]}"
    if (target / _MARK).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for name in source_files(source):
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, staging / name)   # no modes: site-packages' may be r/o
        try:
            staging.rename(target)
        except OSError:
            if not (target / _MARK).is_file():     # not a concurrent copy that won: a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def workspace(explicit: str | os.PathLike[str] | None = None) -> Path:
    """A reference_c folder that ``make -C`` may build in: ``explicit`` (a --source option),
    else the checkout's (or $QSBR_REFERENCE_C's) own, else the cache folder's copy of the
    shipped sources (made on first use)."""
    if explicit is not None:
        path = Path(explicit)
        if not (path / _MARK).is_file():
            raise SourcesNotFound(f"{path} has no {_MARK}: not a reference_c folder")
        return path
    source = reference_c()
    if source != SHIPPED:
        return source
    return _cached_copy(source)


def build_root() -> Path:
    """Where builds of the port go: the workspace's ``build/`` (a checkout's reference_c/build,
    or the build folder inside the cache copy for an installed package)."""
    return workspace() / "build"
