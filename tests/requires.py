"""The one place a test may skip: ``requires(WHAT, ...)``.

A test that needs something outside Python (a tool, a package, a release tarball, a
free-threaded interpreter) says so with ``requires("relacy")`` in its body, or with the marker
``@pytest.mark.requires("relacy")`` (tests/conftest.py calls ``requires`` for it before the
test runs).  When the thing is missing the test skips and names exactly what is missing and how
to get it; under CI (``CI=true``, which .ci/run sets) it *fails* instead, because CI provides
every one of them and a skip there would hide a missing feature.

The one exception is a thing that a CI stage lacks on purpose: a free-threaded interpreter on
the GIL build's stage.  Such a requirement names the stage that runs the test instead
(``STAGE_ELSEWHERE``); it skips under CI too, and only on an interpreter of that kind.

Nothing else in tests/ may call ``pytest.skip``, ``pytest.importorskip`` or
``pytest.mark.skipif`` (tests/unit/test_requires.py reads the tree for them).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

UNDER_CI = os.environ.get("CI", "").lower() in ("true", "1")
CACHE = Path(os.environ.get("QSBR_PYTHON_CACHE",
                            Path.home() / ".cache" / "qsbr-conformance" / "pythons")) / "src"
RELEASES = ("3.13.5", "3.13.15", "3.14.7")
FREE_THREADED = sysconfig.get_config_var("Py_GIL_DISABLED") == 1

#: Requirements that one of CI's stages lacks on purpose, and the stage that runs such tests.
STAGE_ELSEWHERE = {
    "free_threaded": "this is a GIL build; CI runs this test under tox's py313t, py314t and "
                     "py313t-latest (free-threaded builds)",
    "gil": "this is a free-threaded build; CI runs this test on the GIL build (tools/test)",
}


class Missing(Exception):
    """What is missing, and how to get it."""


def _module(name: str, install: str) -> None:
    if importlib.util.find_spec(name) is None:
        raise Missing(f"the Python package {name} is not installed ({install})")


def _tool(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise Missing(f"no {name} on PATH ({install})")
    return path


def _cc() -> None:
    compiler = os.environ.get("CC", "cc")
    _tool(compiler, "a C compiler: apt-get install build-essential, or set CC")


def _make() -> None:
    _tool("make", "apt-get install make")


def _patch() -> None:
    _tool("patch", "GNU patch: apt-get install patch")


def _toolchain() -> None:
    _make()
    _cc()


def _cxx() -> None:
    if not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++")):
        raise Missing("no C++ compiler (g++ or clang++; set CXX): apt-get install g++")


def _relacy() -> None:
    _cxx()
    if not Path("/usr/include/relacy/relacy.hpp").is_file():
        raise Missing("the Relacy model checker's headers (/usr/include/relacy/relacy.hpp): "
                      "apt-get install relacy-dev")


def _hypofuzz() -> None:
    _module("hypofuzz", "pip install 'qsbr-conformance[campaign]'")


def _fakeredis() -> None:
    _module("redis", "pip install 'qsbr-conformance[campaign]'")
    _module("fakeredis", "pip install 'qsbr-conformance[campaign]'")


def _redis_server() -> None:
    """A real Redis server to talk to: QSBR_REDIS_URL (set by .ci/run, which starts one), or a
    redis-server binary that tests/redis_server.py can start on a free loopback port."""
    _module("redis", "pip install 'qsbr-conformance[campaign]'")
    if os.environ.get("QSBR_REDIS_URL"):
        return
    _tool("redis-server", "apt-get install redis-server, or set QSBR_REDIS_URL to a server's "
                          "redis://127.0.0.1:PORT/DB")


def _libclang() -> None:
    try:
        import clang.cindex  # noqa: F401
    except ImportError:
        raise Missing("libclang's Python bindings (pip install 'qsbr-conformance[audit]')") \
            from None


def _free_threaded() -> None:
    if not FREE_THREADED:
        raise Missing("a free-threaded CPython build (3.13t/3.14t); this interpreter has the "
                      "GIL")


def _gil() -> None:
    if FREE_THREADED:
        raise Missing("a GIL build of CPython; this interpreter is free-threaded")


def _fork() -> None:
    if not hasattr(os, "fork"):
        raise Missing("os.fork() (a POSIX system)")


def _proc() -> None:
    if not os.path.exists(f"/proc/{os.getpid()}/task"):
        raise Missing("/proc/PID/task (Linux's per-thread run-queue statistics)")


def _hazard_probe() -> None:
    from conformance.checks import hazards_live
    reason = hazards_live.unavailable_reason()
    if reason is not None:
        raise Missing(f"the interpreter's hazard probe: {reason}")


def _live_probe() -> None:
    from conformance.checks import live
    if not live.free_threaded():
        raise Missing("a free-threaded CPython build (3.13t/3.14t): GIL builds have no QSBR "
                      "state to probe")
    if not live.probe_available():
        raise Missing("conformance.checks._live_probe was not built for this interpreter")


def _subinterpreters() -> None:
    if importlib.util.find_spec("_interpreters") is None \
            and importlib.util.find_spec("_xxsubinterpreters") is None:
        raise Missing(f"the _interpreters module (CPython {sys.version_info[0]}."
                      f"{sys.version_info[1]} has none)")


def _two_cpus() -> None:
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if allowed < 2:
        raise Missing(f"two CPUs this process may run on (it may run on {allowed}): the "
                      "hardware litmus runs two threads at once, pinned to two CPUs")


def _cross_cc(triple: str = "aarch64-linux-gnu") -> None:
    """A cross compiler and its binutils' objdump (the codegen table: tools/codegen-table)."""
    package = {"x86_64-linux-gnu": "gcc and binutils"}.get(triple, f"gcc-{triple}")
    _tool(f"{triple}-gcc", f"apt-get install {package}")
    _tool(f"{triple}-objdump", f"apt-get install {package}")


def _tarball(version: str) -> Path:
    if version not in RELEASES:
        raise ValueError(f"unknown release {version} (known: {', '.join(RELEASES)})")
    path = CACHE / f"Python-{version}.tar.xz"
    if not path.is_file():
        raise Missing(f"the CPython {version} tarball at {path} (tools/provision-python "
                      "--download-only fetches it)")
    return path


_PROVIDERS: dict[str, Callable[..., object]] = {
    "cc": _cc, "make": _make, "patch": _patch, "toolchain": _toolchain, "cxx": _cxx,
    "relacy": _relacy,
    "hypofuzz": _hypofuzz, "fakeredis": _fakeredis, "redis-server": _redis_server,
    "libclang": _libclang, "free_threaded": _free_threaded, "gil": _gil, "fork": _fork,
    "proc": _proc, "hazard_probe": _hazard_probe, "live_probe": _live_probe,
    "subinterpreters": _subinterpreters, "two_cpus": _two_cpus, "tarball": _tarball,
    "cross_cc": _cross_cc,
}
NAMES = tuple(_PROVIDERS)


def check(what: str, *args: str) -> str | None:
    """Why ``what`` is missing here, or None when it is present (no skip, no failure)."""
    try:
        provider = _PROVIDERS[what]
    except KeyError:
        raise ValueError(f"requires(): unknown requirement {what!r} "
                         f"(known: {', '.join(NAMES)})") from None
    try:
        provider(*args)
    except Missing as exc:
        return str(exc)
    return None


def missing(why: str, *, elsewhere: str | None = None) -> None:
    """Skip with ``why``; under CI fail with it, unless ``elsewhere`` names the CI stage that
    runs this test instead (a requirement a stage lacks on purpose)."""
    if UNDER_CI and elsewhere is None:
        pytest.fail(f"CI provides this, but it is missing: {why}", pytrace=False)
    pytest.skip(why if elsewhere is None else f"{why} ({elsewhere})")


def _lacked_on_purpose(what: str) -> str | None:
    """The reason this stage lacks ``what`` on purpose: STAGE_ELSEWHERE, or a name in
    $QSBR_STAGE_LACKS (tox.ini sets it where an environment installs fewer extras; .ci/run runs
    those tests on the GIL build instead)."""
    if what in STAGE_ELSEWHERE:
        return STAGE_ELSEWHERE[what]
    if what in os.environ.get("QSBR_STAGE_LACKS", "").split():
        return (f"this environment lacks {what} on purpose (QSBR_STAGE_LACKS); CI runs this "
                "test on the GIL build (tools/test in .ci/run)")
    return None


def requires(what: str, *args: str) -> None:
    """Skip (locally) or fail (under CI) unless ``what`` is present; see the module's text."""
    why = check(what, *args)
    if why is not None:
        missing(f"needs {why}", elsewhere=_lacked_on_purpose(what))


@functools.cache
def _tarball_path(version: str) -> Path:
    return _tarball(version)


def tarball(version: str) -> Path:
    """The release's tarball in the cache (skips or fails as ``requires`` does)."""
    requires("tarball", version)
    return _tarball_path(version)
