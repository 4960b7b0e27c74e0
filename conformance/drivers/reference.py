"""The reference C port as an implementation of the adapter protocol.

The Cython bridge (``cython_bridge``) is code under test and imports nothing from the suite: it
raises ``PortError`` with the checked C API's status name and returns snapshots as plain
dicts.  This driver is the adapter around it: it turns a ``PortError`` into the protocol's
exception of that kind (conformance.model.errors) and a snapshot into
:class:`~conformance.model.adapter.Snapshot`.  ``--impl conformance.reference:reference_port``
(the default implementation) names :func:`reference_port`.
"""

from __future__ import annotations

from typing import Any

from ..model import errors
from ..model.adapter import SlotView, Snapshot


def _bridge() -> Any:
    import cython_bridge
    return cython_bridge


def _protocol_error(exc: Exception) -> errors.QsbrError:
    return errors.error_for_kind(getattr(exc, "kind", "ERROR"), str(exc))


class ReferenceInterpreter:
    """One interpreter of the port; every method is the bridge's, with the protocol's errors
    and snapshot type."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._port_error = _port_error_of(raw)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._raw, name)
        port_error = self._port_error

        def call(*args: Any) -> Any:
            try:
                return method(*args)
            except port_error as exc:
                raise _protocol_error(exc) from None
        self.__dict__[name] = call          # looked up once per interpreter and name
        return call

    def snapshot(self) -> Snapshot:
        try:
            raw = self._raw.snapshot()
        except self._port_error as exc:
            raise _protocol_error(exc) from None
        return Snapshot(wr_seq=raw["wr_seq"], rd_seq=raw["rd_seq"], size=raw["size"],
                        slots=tuple(SlotView(seq, allocated, owner, bookkeeping)
                                    for seq, allocated, owner, bookkeeping in raw["slots"]),
                        freelist=raw["freelist"], threads=raw["threads"])


def _port_error_of(raw: Any) -> type[Exception]:
    import sys
    return sys.modules[type(raw).__module__].PortError


class ReferencePort:
    """Adapter-protocol implementation backed by the Cython bridge."""

    #: qsbr_api.h: operations on different thread states may run concurrently
    thread_safe = True

    def __init__(self, profile: str = "3.13", release: str | None = None) -> None:
        bridge = _bridge()
        self._ext = bridge.extension(release or profile)
        if release and profile in ("3.13", "3.14") and self._ext.PROFILE != profile:
            raise ValueError(f"release {release} is not of the {profile} line")
        self.profile = self._ext.PROFILE        # the API line: "3.13" or "3.14"
        self.release = self._ext.RELEASE        # the release profile, e.g. "3.13.6-3.14.3"
        self.name = "reference_c port via Cython"
        self.version = bridge.__version__

    def new_interpreter(self) -> ReferenceInterpreter:
        return ReferenceInterpreter(self._ext.Interpreter())

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
    """Adapter factory: ``--impl conformance.reference:reference_port`` (the default).
    ``profile`` is the API line ("3.13", "3.14") or a release range; ``release`` a release
    range of that line."""
    return ReferencePort(profile, release)
