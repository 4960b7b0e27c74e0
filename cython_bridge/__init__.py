"""The reference C port (reference_c/) compiled through Cython, as an adapter implementation.

``reference_port(profile="3.13")`` is the default implementation the conformance run checks.
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

#: One extension per C variant of the port, keyed by release profile
#: (conformance.model.profiles; "3.13" and "3.14" are aliases of 3.13.3-3.13.5 and 3.14.4+).
_MODULES = {"3.13.0-3.13.2": "cython_bridge._qsbr31300",
            "3.13.3-3.13.5": "cython_bridge._qsbr313",
            "3.13.6-3.14.3": "cython_bridge._qsbr31306",
            "3.14.4+": "cython_bridge._qsbr314"}


def extension(profile: str = "3.13") -> ModuleType:
    """The compiled extension module of one profile (a release range, an alias or "auto")."""
    from conformance.model.profiles import UnknownRelease, resolve
    try:
        return import_module(_MODULES[resolve(profile).name])
    except UnknownRelease as exc:
        raise ValueError(str(exc)) from None


class ReferencePort:
    """Adapter-protocol implementation backed by the Cython bridge."""

    #: qsbr_api.h: operations on different thread states may run concurrently
    thread_safe = True

    def __init__(self, profile: str = "3.13") -> None:
        self._ext = extension(profile)
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


def reference_port(profile: str = "3.13") -> ReferencePort:
    """Adapter factory: ``--impl cython_bridge:reference_port`` (the default)."""
    return ReferencePort(profile)
