"""Adapters that crash or hang: the harness must report them, not die with them."""

from __future__ import annotations

import ctypes
import os
import time

from mutant_adapters import _Mutant as _Adapter

from conformance.model.oracle import OracleInterpreter


class _SegfaultOnThirdAttach(OracleInterpreter):
    """Deterministic: the third attach on one interpreter dereferences NULL."""

    def __init__(self, profile: str) -> None:
        super().__init__(profile)
        self.attaches = 0

    def attach(self, tstate: int) -> None:
        self._slot_of(tstate)
        self.attaches += 1
        if self.attaches >= 3:
            ctypes.string_at(0)         # SIGSEGV
        super().attach(tstate)


class _AbortOnFini(OracleInterpreter):
    def fini(self) -> None:
        os.abort()


class _HangInPoll(OracleInterpreter):
    def poll(self, tstate: int, goal: int) -> bool:
        self._slot_of(tstate)
        time.sleep(3600)
        return True


class SegfaultOnThirdAttach(_Adapter):
    interpreter_class = _SegfaultOnThirdAttach


class AbortOnFini(_Adapter):
    interpreter_class = _AbortOnFini


class HangInPoll(_Adapter):
    interpreter_class = _HangInPoll


def segfault(profile: str = "3.13") -> SegfaultOnThirdAttach:
    return SegfaultOnThirdAttach(profile)


def abort_on_fini(profile: str = "3.13") -> AbortOnFini:
    return AbortOnFini(profile)


def hang(profile: str = "3.13") -> HangInPoll:
    return HangInPoll(profile)


class _SnapshotRaises(OracleInterpreter):
    def snapshot(self):  # type: ignore[override]
        raise ValueError("snapshot is broken")


class SnapshotRaises(_Adapter):
    interpreter_class = _SnapshotRaises


def snapshot_raises(profile: str = "3.13") -> SnapshotRaises:
    return SnapshotRaises(profile)


def returns_none(profile: str = "3.13") -> None:
    return None


def factory_raises(profile: str = "3.13") -> None:
    raise RuntimeError("no QSBR here")
