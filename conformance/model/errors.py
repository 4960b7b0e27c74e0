"""Exceptions shared by every implementation of the adapter protocol.

The oracle, the Cython bridge and any third-party adapter raise these same types, so the
differential run can compare "which misuse was detected" exactly.  Each misuse class has a
stable ``kind`` string, equal to the C API's status name (``qsbr_api_status_name``).
"""

from __future__ import annotations


class QsbrError(Exception):
    """Base of every exception this project raises."""

    kind = "ERROR"


class QsbrMisuseError(QsbrError):
    """A call that breaks a precondition upstream only asserts; the state is unchanged."""


class UnknownThreadStateError(QsbrMisuseError):
    kind = "UNKNOWN_THREAD_STATE"


class NotRegisteredError(QsbrMisuseError):
    kind = "NOT_REGISTERED"


class StaleSlotError(QsbrMisuseError):
    kind = "STALE_SLOT"


class AlreadyRegisteredError(QsbrMisuseError):
    kind = "ALREADY_REGISTERED"


class IndexOutOfRangeError(QsbrMisuseError):
    kind = "INDEX_OUT_OF_RANGE"


class SlotNotReservedError(QsbrMisuseError):
    kind = "SLOT_NOT_RESERVED"


class SlotOwnedError(QsbrMisuseError):
    kind = "SLOT_OWNED"


class AlreadyAttachedError(QsbrMisuseError):
    kind = "ALREADY_ATTACHED"


class NotAttachedError(QsbrMisuseError):
    kind = "NOT_ATTACHED"


class StillAttachedError(QsbrMisuseError):
    kind = "STILL_ATTACHED"


class StillRegisteredError(QsbrMisuseError):
    kind = "STILL_REGISTERED"


class BadSequenceError(QsbrMisuseError):
    kind = "BAD_SEQUENCE"


class NotFreshError(QsbrMisuseError):
    kind = "NOT_FRESH"


class UnsupportedOperationError(QsbrMisuseError):
    kind = "UNSUPPORTED"


class CorruptStateError(QsbrError):
    """The implementation's state cannot be read back consistently (e.g. a freelist cycle)."""

    kind = "CORRUPT"


class ImplementationCrashedError(QsbrError):
    """The implementation under test died (signal, abort) or stopped answering."""

    kind = "CRASHED"


def is_integer(value: object) -> bool:
    """The protocol's integer: an ``int`` and not a ``bool``.

    Nothing is coerced: ``True`` (a bool, although ``isinstance(True, int)``), ``3.0``, ``"3"``
    and objects with ``__index__`` (e.g. numpy integers) are rejected, so that an adapter
    cannot silently turn a caller's mistake into a valid call (docs/adapter-protocol.md,
    "Errors")."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_u64(value: object, what: str) -> int:
    """The protocol's argument rule: goals and sequences are ints (not bools) in [0, 2**64)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise BadSequenceError(f"{what} must be an integer in [0, 2**64), got {value!r}")
    return value


def is_index(value: object) -> bool:
    """register's index rule: an int (not a bool) in the signed 64-bit range."""
    return (isinstance(value, int) and not isinstance(value, bool)
            and -(1 << 63) <= value < (1 << 63))


def _all_subclasses(cls: type[QsbrError]) -> list[type[QsbrError]]:
    found: list[type[QsbrError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


#: Every concrete error class by its ``kind``.
ERROR_BY_KIND: dict[str, type[QsbrError]] = {
    cls.kind: cls for cls in _all_subclasses(QsbrError) if cls.kind != "ERROR"
}


def error_for_kind(kind: str, message: str) -> QsbrError:
    """Build the exception for a status name, e.g. ``error_for_kind("SLOT_OWNED", "...")``."""
    return ERROR_BY_KIND.get(kind, QsbrError)(message)
