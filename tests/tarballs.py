"""What CI provides, for the tests that need it: the CPython release tarballs
(``tools/provision-python --download-only`` fetches them into the cache) and optional tools.

Missing, a test skips and says what is missing; under CI (``CI=true``, which .ci/run sets) it
fails instead, since CI provides all of them and a skip there would hide a missing feature.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("QSBR_PYTHON_CACHE",
                            Path.home() / ".cache" / "qsbr-conformance" / "pythons")) / "src"
RELEASES = ("3.13.5", "3.13.15", "3.14.7")
UNDER_CI = os.environ.get("CI", "").lower() in ("true", "1")


def missing(why: str) -> None:
    """Skip with ``why``; under CI, fail with it."""
    if UNDER_CI:
        pytest.fail(f"CI: {why}")
    pytest.skip(why)


def tarball(version: str) -> Path:
    """The release's tarball in the cache."""
    path = CACHE / f"Python-{version}.tar.xz"
    if not path.is_file():
        missing(f"needs the CPython {version} tarball at {path} (tools/provision-python "
                "--download-only fetches it)")
    return path
