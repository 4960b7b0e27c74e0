"""The composite actions, written once: the sequences of protocol calls that CPython makes as
one operation, used by the differential machine's rules and by the exhaustive exploration.

* :func:`create_thread` is CPython's ``new_threadstate()``: a thread state, a reserved slot,
  then register (nothing registered when reserve returns -1);
* :func:`destroy_thread` is thread-state deletion: detach if attached, unregister if it has a
  slot of its own, then delete.

Each takes ``call(operation, thread, *args, note=...)``, which makes one call on whatever drives
it (the machine's compared step, or the exploration's oracle run) and returns its result (None
where the call raised).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: call(operation, thread or None, *args, note="...") -> result (None where it raised)
CallFn = Callable[..., Any]


def create_thread(call: CallFn) -> tuple[Any, Any]:
    """new_thread_state, reserve, and register the slot reserved: (thread, index)."""
    thread = call("new_thread_state", None, note="create_thread")
    index = call("reserve", None, note="create_thread")
    if isinstance(index, int) and not isinstance(index, bool) and index >= 0:
        call("register", thread, index, note="create_thread")
    return thread, index


def destroy_thread(call: CallFn, thread: Any, *, registered: bool, attached: bool) -> None:
    """detach (if ``attached``), unregister (if ``registered``: a slot of its own, not a
    released one), delete."""
    if registered:
        if attached:
            call("detach", thread, note="destroy_thread")
        call("unregister", thread, note="destroy_thread")
    call("delete_thread_state", thread, note="destroy_thread")
