"""The reference C port (reference_c/) compiled through Cython: one extension per release
profile (:func:`extension`), each with an ``Interpreter`` class over the port's checked C API,
the torture, ``layout()`` and ``live_allocations()``.

The bridge is code under test: it imports nothing from ``conformance``.  It raises
``PortError`` (``kind``: the C API's status name) and returns snapshots as plain dicts; the
suite's adapter around it is ``conformance.reference:reference_port`` (the default ``--impl``).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

try:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _dist_version

    __version__ = _dist_version("qsbr-conformance")
except PackageNotFoundError:  # running from a source tree with an in-place build
    __version__ = "0+local"

#: One extension per C variant of the port, keyed by release profile (the release matrix of
#: docs/semantics.md); each extension knows its own PROFILE (line) and RELEASE (range).
_MODULES = {"3.13.0-3.13.2": "cython_bridge._qsbr31300",
            "3.13.3-3.13.5": "cython_bridge._qsbr313",
            "3.13.6-3.14.3": "cython_bridge._qsbr31306",
            "3.14.4+": "cython_bridge._qsbr314"}
#: Each API line's default release profile (the aliases of --profile).
_ALIASES = {"3.13": "3.13.3-3.13.5", "3.14": "3.14.4+"}


def extension(profile: str = "3.13") -> ModuleType:
    """The compiled extension module of one profile (a release range or a line)."""
    name = _ALIASES.get(profile, profile)
    if name not in _MODULES:
        raise ValueError(f"unknown profile {profile!r}; expected one of "
                         f"{', '.join([*_ALIASES, *_MODULES])}")
    return import_module(_MODULES[name])
