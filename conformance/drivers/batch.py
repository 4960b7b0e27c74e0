"""Running a batch of protocol calls on an implementation's interpreter.

Used in-process by the bounded-exhaustive exploration (conformance.checks.exhaustive) and, for
an isolated implementation, inside the child process (conformance.drivers.isolation_worker): a
replayed prefix, the new calls and their snapshots travel in one round trip.  It lives with the
drivers because the child runs it, and drivers never import checks.
"""

from __future__ import annotations

from typing import Any

from ..model import errors
from ..model.observed import wider_differences

#: A concrete call: (operation, logical thread or None, args, compare-after?, note).
Call = tuple[str, "int | None", tuple, bool, str]


def execute_calls(interp: Any, calls: list[Call], handles: list[Any],
                  profile: str = "3.13") -> list[tuple]:
    """Run ``calls`` on an implementation's interpreter; used in-process and in an isolated child.

    ``handles`` lists the implementation's handles in creation order (logical id = position)
    and is extended by ``new_thread_state``.  Returns one outcome per call that asked to be
    compared: ``(kind, value, fingerprint)`` with kind ``ok`` (value returned), ``qsbr`` (value
    is the error class name), ``exception`` (any other exception: value is its text; nothing
    after it runs) and fingerprint the state after the call (see :func:`impl_fingerprint`).
    """
    outcomes: list[tuple] = []
    position = 0
    try:                            # the replayed prefix (not compared) in a tight loop
        while position < len(calls):
            operation, thread, args, compare, _note = calls[position]
            if compare:
                break
            method = getattr(interp, operation)
            value = method(handles[thread], *args) if thread is not None else method(*args)
            if operation == "new_thread_state":
                handles.append(value)
            position += 1
        else:
            return outcomes
    except errors.QsbrError as exc:
        if isinstance(exc, errors.ImplementationCrashedError):
            raise
        position += 1               # a replayed misuse: it was compared when first run
    except Exception as exc:  # noqa: BLE001 - a protocol breach, reported by the caller
        return [("exception", f"{type(exc).__name__}: {exc}", None)]
    for operation, thread, args, compare, _note in calls[position:]:
        try:
            if thread is not None:
                value = getattr(interp, operation)(handles[thread], *args)
            else:
                value = getattr(interp, operation)(*args)
            if operation == "new_thread_state":
                handles.append(value)
                value = len(handles) - 1
            outcome: tuple = ("ok", value)
        except errors.ImplementationCrashedError:
            raise
        except errors.QsbrError as exc:
            outcome = ("qsbr", type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - a protocol breach, reported by the caller
            outcomes.append(("exception", f"{type(exc).__name__}: {exc}", None))
            return outcomes
        if compare:
            try:
                fingerprint = impl_fingerprint(interp.snapshot(), handles, profile)
            except errors.ImplementationCrashedError:
                raise
            except Exception as exc:  # noqa: BLE001
                outcomes.append(("exception", f"snapshot failed: {type(exc).__name__}: {exc}",
                                 None))
                return outcomes
            outcomes.append((*outcome, fingerprint))
    return outcomes


def impl_fingerprint(snap: Any, handles: list[Any], profile: str) -> tuple:
    """A snapshot as a plain tuple in logical thread ids (comparable with the oracle's)."""
    logical = {handle: index for index, handle in enumerate(handles)}
    slots = tuple([(s.seq, bool(s.allocated),
                    None if s.owner is None else logical.get(s.owner, repr(s.owner)),
                    tuple(s.bookkeeping)) for s in snap.slots])
    threads = tuple(sorted((logical[h], slot) for h, slot in snap.threads.items()
                           if h in logical))
    return (snap.wr_seq, snap.rd_seq, snap.size, slots, tuple(snap.freelist), threads,
            tuple(wider_differences(snap, profile)))
