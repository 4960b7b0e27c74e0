"""The reference C port (reference_c/) compiled through Cython, as an adapter implementation.

``reference_port(profile="3.13", release=None)`` is the default implementation the conformance
run checks.  The bridge is code under test: it imports nothing from ``conformance``.
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


class ReferencePort:
    """Adapter-protocol implementation backed by the Cython bridge."""

    #: qsbr_api.h: operations on different thread states may run concurrently
    thread_safe = True

    def __init__(self, profile: str = "3.13", release: str | None = None) -> None:
        self._ext = extension(release or profile)
        if release and profile in _ALIASES and self._ext.PROFILE != profile:
            raise ValueError(f"release {release} is not of the {profile} line")
        self.profile = self._ext.PROFILE        # the API line: "3.13" or "3.14"
        self.release = self._ext.RELEASE        # the release profile, e.g. "3.13.6-3.14.3"
        self.name = "reference_c port via Cython"
        self.version = __version__

    def new_interpreter(self):
        return self._ext.Interpreter()

    def qsbr_lt(self, a: int, b: int) -> bool:
        return self._ext.qsbr_lt(a, b)

    def qsbr_leq(self, a: int, b: int) -> bool:
        return self._ext.qsbr_leq(a, b)

    def layout(self) -> dict[str, int]:
        return self._ext.layout()

    def live_allocations(self) -> int:
        """Optional resource hook: blocks the port allocated and has not freed."""
        return self._ext.live_allocations()


def reference_port(profile: str = "3.13", release: str | None = None) -> ReferencePort:
    """Adapter factory: ``--impl cython_bridge:reference_port`` (the default).  ``profile`` is
    the API line ("3.13", "3.14") or a release range; ``release`` a release range of it."""
    return ReferencePort(profile, release)
