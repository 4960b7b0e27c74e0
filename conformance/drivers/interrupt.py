"""Ctrl-C that cannot be lost.

Python raises KeyboardInterrupt wherever the main thread happens to be when SIGINT arrives.
Raised inside a garbage-collection callback (Hypothesis installs one, ``gc_callback``, to time
collections), a ``__del__`` or a weakref callback, it is printed as "Exception ignored ..."
with a traceback and dropped, and the run goes on as if nothing had happened (a run of 100000
examples then keeps going for many minutes).  Raised between reading a reply's length and its
body from an isolated child, it breaks the pipe's framing.

So the command line installs :func:`handling_sigint`, and the runner runs its check loops
inside :func:`deferred`: there, the first Ctrl-C only sets a flag, and every check loop calls
:func:`check` between steps (each differential step, each exploration transition, each
comparison, each second of waiting for an isolated child), which raises KeyboardInterrupt at
a point where the suite can stop cleanly.  A second Ctrl-C raises at once.  Outside
:func:`deferred` the handler raises at once, as Python's own does.  The runner calls
:func:`acknowledge` once it has stopped.  Without the handler (library use, the pytest plugin)
the flag is never set and :func:`check` costs one method call.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_requested = threading.Event()
_deferring = False


def _handler(signum: int, frame: FrameType | None) -> None:
    again = _requested.is_set()
    _requested.set()
    if again or not _deferring:
        raise KeyboardInterrupt


@contextmanager
def handling_sigint() -> Iterator[None]:
    """Within the block, SIGINT goes through this module (main thread only; an ignored SIGINT
    stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested.clear()


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block, a first Ctrl-C is raised by the next :func:`check`, not at once."""
    global _deferring
    before = _deferring
    _deferring = True
    try:
        yield
    finally:
        _deferring = before


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed and the run has not stopped yet."""
    if _requested.is_set():
        raise KeyboardInterrupt


def requested() -> bool:
    """True when Ctrl-C was pressed and the run has not stopped yet."""
    return _requested.is_set()


def acknowledge() -> bool:
    """The run has stopped: clear the flag; True when Ctrl-C had been pressed."""
    was = _requested.is_set()
    _requested.clear()
    return was
