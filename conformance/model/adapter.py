"""The adapter protocol: what an implementation provides so the suite can drive it.

An implementation is any object with the attributes and methods of :class:`Implementation`;
``new_interpreter()`` returns an object with the methods of :class:`Interpreter`.  The suite
loads one with ``MODULE:FACTORY`` (``qsbr-conformance --impl mypkg.adapter:make``): FACTORY is
called with no arguments and returns the implementation.  docs/adapter-protocol.md is the
full contract; this module is its executable summary.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

#: Value of ``Snapshot.threads[h]`` for a thread state whose slot was released by fini or
#: after_fork while it still pointed at it.
STALE = "stale"

Handle = Hashable

#: Value of the optional snapshot fields an implementation does not observe (the default).
UNOBSERVED = "unobserved"

PROFILES = ("3.13", "3.14")

#: Per-slot bookkeeping fields of each profile, in upstream's field order.
BOOKKEEPING_FIELDS = {
    "3.13": ("deferrals",),
    "3.14": ("deferred_count", "deferred_memory", "deferred_page_memory", "should_process"),
}


@dataclass(frozen=True)
class SlotView:
    """One entry of the slot array, as observable."""

    seq: int
    allocated: bool
    owner: Handle | None
    bookkeeping: tuple[tuple[str, int | bool], ...] = ()
    #: Optional (leave UNOBSERVED if you cannot read them): the slot's ``freelist_next`` as the
    #: index it points at (None for NULL), and whether its ``shared`` pointer is this
    #: interpreter's ``struct _qsbr_shared``.
    freelist_next: int | None | str = UNOBSERVED
    shared_is_interpreter: bool | str = UNOBSERVED


@dataclass(frozen=True)
class Snapshot:
    """The whole observable QSBR state of one interpreter."""

    wr_seq: int
    rd_seq: int
    size: int
    slots: tuple[SlotView, ...]
    #: Slot indices from the freelist head to its tail.
    freelist: tuple[int, ...]
    #: For every live thread state: the index its own slot pointer designates, None when it
    #: has no slot, or STALE.
    threads: dict[Handle, int | str | None] = field(default_factory=dict)
    #: Optional: the slot array's address modulo 64 (None without an array), or UNOBSERVED.
    array_address_mod_64: int | None | str = UNOBSERVED


@runtime_checkable
class Interpreter(Protocol):
    """One interpreter's QSBR state (``struct _qsbr_shared``) and its thread states."""

    def set_sequences(self, wr_seq: int, rd_seq: int) -> None: ...
    def new_thread_state(self) -> Handle: ...
    def delete_thread_state(self, tstate: Handle) -> None: ...
    def reserve(self) -> int: ...
    def register(self, tstate: Handle, index: int) -> None: ...
    def unregister(self, tstate: Handle) -> None: ...
    def attach(self, tstate: Handle) -> None: ...
    def detach(self, tstate: Handle) -> None: ...
    def quiescent_state(self, tstate: Handle) -> None: ...
    def advance(self) -> int: ...
    def deferred_advance(self, tstate: Handle) -> int: ...
    def shared_next(self) -> int: ...
    def should_process(self, tstate: Handle) -> bool: ...
    def set_bookkeeping(self, tstate: Handle, deferred_count: int, deferred_memory: int,
                        deferred_page_memory: int, should_process: bool) -> None: ...
    def poll(self, tstate: Handle, goal: int) -> bool: ...
    def goal_reached(self, tstate: Handle, goal: int) -> bool: ...
    def fini(self) -> None: ...
    def after_fork(self, tstate: Handle) -> None: ...
    def fail_next_allocations(self, count: int) -> None: ...
    def snapshot(self) -> Snapshot: ...
    def close(self) -> None: ...


@runtime_checkable
class Implementation(Protocol):
    """A QSBR implementation under test."""

    name: str
    version: str
    profile: str

    def new_interpreter(self) -> Interpreter: ...
    def qsbr_lt(self, a: int, b: int) -> bool: ...
    def qsbr_leq(self, a: int, b: int) -> bool: ...


class AdapterError(Exception):
    """An adapter could not be loaded or does not follow the protocol."""


def implementation_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without the suite's own frames (and Hypothesis'): what an
    implementation's author needs to find their bug."""
    import traceback

    suite = str(Path(__file__).resolve().parents[1])
    hypothesis_dir = str(Path(importlib.import_module("hypothesis").__file__ or "").parent)
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if not frame.filename.startswith((suite, hypothesis_dir, "<frozen "))]
    if not frames:
        return ""
    return ("Traceback (the implementation's frames only):\n"
            + "".join(traceback.format_list(frames)).rstrip())


def _where(exc: BaseException) -> str:
    """' (file:line)' of the innermost frame outside the suite, or ''."""
    import traceback

    suite = str(Path(__file__).resolve().parents[1])
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith((suite, "<frozen "))]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _accepts(factory: Any, keyword: str) -> bool:
    """Whether ``factory`` takes ``keyword`` (by name, or through ``**kwargs``)."""
    import inspect

    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):     # no signature (a builtin): pass the keyword
        return True
    return any(p.name == keyword or p.kind is inspect.Parameter.VAR_KEYWORD
               for p in parameters)


def _working_folder_last() -> None:
    """A module in the working folder is importable as ``--impl`` (``myport.py`` beside the
    user), whether the run is isolated or not, and whichever way the suite was started
    (``qsbr-conformance`` does not put the working folder on sys.path, ``python -m`` puts it
    first).  Appended last, so that it never shadows an installed package: run from a
    checkout, the checkout's conformance/ must not replace the installed one."""
    here = os.getcwd()
    if not any(os.path.abspath(entry or ".") == here for entry in sys.path):
        sys.path.append(here)


def load_implementation(spec: str, **kwargs: Any) -> Implementation:
    """Load ``MODULE:FACTORY`` and call the factory.

    ``profile`` (an API line, "3.13" or "3.14") is passed as given; ``release`` (a release
    range such as "3.13.6-3.14.3") only when the factory's signature accepts it, so that a
    factory written to docs/adapter-protocol.md (``make(profile="3.13")``) works with every
    ``--profile``.

    Every way this can go wrong (bad spec, a module that does not import or raises while
    importing, no such factory, a factory that raises or returns something that is not an
    implementation) raises AdapterError with a one-line message.
    """
    from .errors import QsbrError

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AdapterError(f"--impl expects MODULE:FACTORY (e.g. mypkg.adapter:make), "
                           f"got {spec!r}")
    _working_folder_last()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise AdapterError(f"cannot import {module_name!r}: no module named {exc.name!r} "
                               f"(is it installed, on PYTHONPATH, or in the working "
                               f"folder?)") from None
        raise AdapterError(f"cannot import {module_name!r}: {exc}{_where(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the adapter's own error, reported in one line
        raise AdapterError(f"importing {module_name!r} raised {type(exc).__name__}: "
                           f"{exc}{_where(exc)}") from None
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise AdapterError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(factory):
        raise AdapterError(f"{spec} is a {type(factory).__name__}, not a factory to call")
    if "release" in kwargs and (kwargs["release"] is None or not _accepts(factory, "release")):
        del kwargs["release"]
    try:
        impl = factory(**kwargs)
    except (QsbrError, AdapterError) as exc:
        raise AdapterError(str(exc)) from None
    except TypeError as exc:
        raise AdapterError(f"calling {spec}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
                           f" raised TypeError: {exc}{_where(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the adapter's own error, reported in one line
        raise AdapterError(f"calling {spec}() raised {type(exc).__name__}: "
                           f"{exc}{_where(exc)}") from None
    if impl is None:
        raise AdapterError(f"{spec}() returned None, not an implementation")
    missing = [name for name in ("name", "version", "profile", "new_interpreter",
                                 "qsbr_lt", "qsbr_leq") if not hasattr(impl, name)]
    if missing:
        raise AdapterError(f"{spec}() returned {impl!r:.60}, which lacks {', '.join(missing)}")
    if impl.profile not in PROFILES:
        raise AdapterError(f"{spec}: profile must be one of {PROFILES}, got {impl.profile!r}")
    return impl
