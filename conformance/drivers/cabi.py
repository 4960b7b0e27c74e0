"""Adapter for any shared library that exports the QSBR C ABI of reference_c/include/qsbr_api.h.

A C, C++ or Rust port that exports those ``qsbr_api_*`` functions (with the same structs and
status codes) is checked without writing any Python:

    QSBR_LIBRARY=/path/to/libmyqsbr.so qsbr-conformance --impl conformance.cabi:from_env

The reference port builds such a library itself: ``make -C reference_c`` gives
``reference_c/build/313/libqsbr.so`` and ``reference_c/build/314/libqsbr.so``.
The library is loaded with ctypes; every call releases the GIL (ctypes does so by default).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from ..model import errors
from ..model.adapter import STALE, UNOBSERVED, SlotView, Snapshot
from ..model.layout import layout_differences
from ..model.profiles import BY_C_PROFILE, BY_NAME, resolve

NO_SLOT, STALE_SLOT = -1, -2
STATUS_BUFFER_TOO_SMALL_NAME = "BUFFER_TOO_SMALL"


class _Slot(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint64), ("allocated", ctypes.c_bool),
                ("owner", ctypes.c_void_p), ("deferrals", ctypes.c_int),
                ("deferred_count", ctypes.c_int), ("deferred_memory", ctypes.c_size_t),
                ("deferred_page_memory", ctypes.c_size_t), ("should_process", ctypes.c_bool)]


class _Thread(ctypes.Structure):
    _fields_ = [("tstate", ctypes.c_void_p), ("slot", ctypes.c_int64)]


class _Snap(ctypes.Structure):
    _fields_ = [("wr_seq", ctypes.c_uint64), ("rd_seq", ctypes.c_uint64),
                ("size", ctypes.c_int64), ("freelist_len", ctypes.c_int64),
                ("thread_count", ctypes.c_int64)]


class _Library:
    """The loaded library with argument and result types declared."""

    def __init__(self, path: str) -> None:
        try:
            self.lib = lib = ctypes.CDLL(path)
        except OSError as exc:
            raise errors.QsbrError(f"cannot load the QSBR library {path!r}: {exc}") from exc
        p, u64, i64, i = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64, ctypes.c_int
        pb, pu64, pi64 = (ctypes.POINTER(ctypes.c_bool), ctypes.POINTER(ctypes.c_uint64),
                          ctypes.POINTER(ctypes.c_int64))
        signatures = {
            "qsbr_api_status_name": ([i], ctypes.c_char_p),
            "qsbr_api_status_message": ([i], ctypes.c_char_p),
            "qsbr_api_lt": ([u64, u64], ctypes.c_bool),
            "qsbr_api_leq": ([u64, u64], ctypes.c_bool),
            "qsbr_api_interp_new": ([], p),
            "qsbr_api_interp_delete": ([p], None),
            "qsbr_api_set_sequences": ([p, u64, u64], i),
            "qsbr_api_tstate_new": ([p], p),
            "qsbr_api_tstate_delete": ([p], i),
            "qsbr_api_reserve": ([p], i64),
            "qsbr_api_register": ([p, i64], i),
            "qsbr_api_unregister": ([p], i),
            "qsbr_api_attach": ([p], i),
            "qsbr_api_detach": ([p], i),
            "qsbr_api_quiescent_state": ([p], i),
            "qsbr_api_advance": ([p], u64),
            "qsbr_api_poll": ([p, u64, pb], i),
            "qsbr_api_goal_reached": ([p, u64, pb], i),
            "qsbr_api_fini": ([p], i),
            "qsbr_api_after_fork": ([p], i),
            "qsbr_api_deferred_advance": ([p, pu64], i),
            "qsbr_api_shared_next": ([p, pu64], i),
            "qsbr_api_should_process": ([p, pb], i),
            "qsbr_api_set_bookkeeping": ([p, i, ctypes.c_size_t, ctypes.c_size_t,
                                          ctypes.c_bool], i),
            "qsbr_api_snapshot_capacity": ([p, pi64, pi64], None),
            "qsbr_api_snapshot_read": ([p, ctypes.POINTER(_Snap), ctypes.POINTER(_Slot), pi64,
                                        i64, ctypes.POINTER(_Thread), i64], i),
            "qsbr_api_mem_fail_next": ([ctypes.c_long], None),
            "qsbr_api_layout": ([ctypes.c_char_p], ctypes.c_long),
            "qsbr_api_layout_count": ([], ctypes.c_long),
            "qsbr_api_layout_name": ([ctypes.c_long], ctypes.c_char_p),
        }
        missing = [name for name in signatures if not hasattr(lib, name)]
        if missing:
            raise errors.QsbrError(f"{path} does not export the QSBR C ABI: missing "
                                   f"{', '.join(missing)}")
        for name, (args, result) in signatures.items():
            function = getattr(lib, name)
            function.argtypes, function.restype = args, result
        value = ctypes.c_int.in_dll(lib, "qsbr_api_profile").value
        release = BY_C_PROFILE.get(value)
        if release is None:
            raise errors.QsbrError(f"{path}: qsbr_api_profile is {value}, not one of "
                                   f"{sorted(BY_C_PROFILE)} (reference_c/include/qsbr_profile.h)")
        self.profile, self.release = release.line, release.name
        #: optional symbols (docs/adapter-protocol.md, "The C ABI"): the port's version
        self.version: str | None = None
        version = getattr(lib, "qsbr_api_version", None)
        if version is not None:
            version.argtypes, version.restype = [], ctypes.c_char_p
            text = version()
            self.version = text.decode(errors="replace") if text else None
        # Optional: the interpreter's struct _qsbr_shared, to read the slot array through the
        # layout itself -- only when the library's layout() is upstream's for its release
        # profile (else a wrong offset would read garbage).
        self.shared_address = getattr(lib, "qsbr_api_shared_address", None)
        self.raw_layout: dict[str, int] | None = None
        if self.shared_address is not None:
            self.shared_address.argtypes, self.shared_address.restype = [p], p
            names = [lib.qsbr_api_layout_name(k) for k in range(lib.qsbr_api_layout_count())]
            layout = {name.decode(): lib.qsbr_api_layout(name) for name in names}
            if not layout_differences(self.release, layout):
                self.raw_layout = layout

    def check(self, status: int) -> None:
        if status != 0:
            kind = self.lib.qsbr_api_status_name(status).decode()
            raise errors.error_for_kind(kind, self.lib.qsbr_api_status_message(status).decode())


class CabiInterpreter:
    def __init__(self, library: _Library) -> None:
        self._l = library
        self._lib = library.lib
        self._interp = self._lib.qsbr_api_interp_new()
        if not self._interp:
            raise MemoryError("qsbr_api_interp_new failed")
        self._tstates: dict[int, int] = {}
        self._next = 0

    def _t(self, handle: Any) -> int:
        try:
            return self._tstates[handle]
        except (KeyError, TypeError):
            raise errors.UnknownThreadStateError(f"unknown thread state {handle!r}") from None

    def set_sequences(self, wr_seq: int, rd_seq: int) -> None:
        wr, rd = errors.check_u64(wr_seq, "wr_seq"), errors.check_u64(rd_seq, "rd_seq")
        self._l.check(self._lib.qsbr_api_set_sequences(self._interp, wr, rd))

    def fail_next_allocations(self, count: int) -> None:
        self._lib.qsbr_api_mem_fail_next(count)

    def new_thread_state(self) -> int:
        pointer = self._lib.qsbr_api_tstate_new(self._interp)
        if not pointer:
            raise MemoryError("qsbr_api_tstate_new failed")
        handle, self._next = self._next, self._next + 1
        self._tstates[handle] = pointer
        return handle

    def delete_thread_state(self, handle: Any) -> None:
        self._l.check(self._lib.qsbr_api_tstate_delete(self._t(handle)))
        del self._tstates[handle]

    def reserve(self) -> int:
        return self._lib.qsbr_api_reserve(self._interp)

    def register(self, handle: Any, index: Any) -> None:
        t = self._t(handle)
        if not errors.is_index(index):
            raise errors.IndexOutOfRangeError(f"slot index {index!r} is not a valid index")
        self._l.check(self._lib.qsbr_api_register(t, index))

    def unregister(self, handle: Any) -> None:
        self._l.check(self._lib.qsbr_api_unregister(self._t(handle)))

    def attach(self, handle: Any) -> None:
        self._l.check(self._lib.qsbr_api_attach(self._t(handle)))

    def detach(self, handle: Any) -> None:
        self._l.check(self._lib.qsbr_api_detach(self._t(handle)))

    def quiescent_state(self, handle: Any) -> None:
        self._l.check(self._lib.qsbr_api_quiescent_state(self._t(handle)))

    def advance(self) -> int:
        return self._lib.qsbr_api_advance(self._interp)

    def deferred_advance(self, handle: Any) -> int:
        goal = ctypes.c_uint64()
        self._l.check(self._lib.qsbr_api_deferred_advance(self._t(handle), ctypes.byref(goal)))
        return goal.value

    def shared_next(self) -> int:
        goal = ctypes.c_uint64()
        self._l.check(self._lib.qsbr_api_shared_next(self._interp, ctypes.byref(goal)))
        return goal.value

    def should_process(self, handle: Any) -> bool:
        flag = ctypes.c_bool()
        self._l.check(self._lib.qsbr_api_should_process(self._t(handle), ctypes.byref(flag)))
        return flag.value

    def set_bookkeeping(self, handle: Any, deferred_count: int, deferred_memory: int,
                        deferred_page_memory: int, should_process: bool) -> None:
        self._l.check(self._lib.qsbr_api_set_bookkeeping(
            self._t(handle), deferred_count, deferred_memory, deferred_page_memory,
            should_process))

    def _bool_query(self, function: Any, handle: Any, goal: Any) -> bool:
        g = errors.check_u64(goal, "goal")
        result = ctypes.c_bool()
        self._l.check(function(self._t(handle), g, ctypes.byref(result)))
        return result.value

    def poll(self, handle: Any, goal: Any) -> bool:
        return self._bool_query(self._lib.qsbr_api_poll, handle, goal)

    def goal_reached(self, handle: Any, goal: Any) -> bool:
        return self._bool_query(self._lib.qsbr_api_goal_reached, handle, goal)

    def fini(self) -> None:
        self._l.check(self._lib.qsbr_api_fini(self._interp))

    def after_fork(self, handle: Any) -> None:
        self._l.check(self._lib.qsbr_api_after_fork(self._t(handle)))

    def snapshot(self) -> Snapshot:
        slots_cap, threads_cap = ctypes.c_int64(), ctypes.c_int64()
        while True:
            self._lib.qsbr_api_snapshot_capacity(self._interp, ctypes.byref(slots_cap),
                                                 ctypes.byref(threads_cap))
            n_slots, n_threads = 2 * slots_cap.value + 8, threads_cap.value + 8
            snap, slots = _Snap(), (_Slot * n_slots)()
            freelist, threads = (ctypes.c_int64 * n_slots)(), (_Thread * n_threads)()
            status = self._lib.qsbr_api_snapshot_read(self._interp, ctypes.byref(snap), slots,
                                                      freelist, n_slots, threads, n_threads)
            if self._lib.qsbr_api_status_name(status).decode() != STATUS_BUFFER_TOO_SMALL_NAME:
                break
        self._l.check(status)
        handle_of = {pointer: handle for handle, pointer in self._tstates.items()}
        views = []
        for s in slots[:snap.size]:
            if self._l.profile == "3.13":
                book: tuple = (("deferrals", s.deferrals),)
            else:
                book = (("deferred_count", s.deferred_count),
                        ("deferred_memory", s.deferred_memory),
                        ("deferred_page_memory", s.deferred_page_memory),
                        ("should_process", bool(s.should_process)))
            owner = handle_of.get(s.owner, f"<foreign {s.owner:#x}>") if s.owner else None
            views.append(SlotView(seq=s.seq, allocated=bool(s.allocated), owner=owner,
                                  bookkeeping=book))
        thread_view: dict = {}
        for t in threads[:snap.thread_count]:
            if t.tstate in handle_of:
                thread_view[handle_of[t.tstate]] = (
                    None if t.slot == NO_SLOT else STALE if t.slot == STALE_SLOT else t.slot)
        mod_64: int | None | str = UNOBSERVED
        if self._l.raw_layout is not None:
            views, mod_64 = self._raw_slots(views, handle_of)
            if self._l.profile == "3.14" and not BY_NAME[self._l.release].aligned_array:
                # The 3.14 line's alignment rule is 3.14.4+'s: 3.13.6-3.14.3 make no promise.
                mod_64 = UNOBSERVED
        return Snapshot(wr_seq=snap.wr_seq, rd_seq=snap.rd_seq, size=snap.size,
                        slots=tuple(views), freelist=tuple(freelist[:snap.freelist_len]),
                        threads=thread_view, array_address_mod_64=mod_64)

    def _raw_slots(self, views: list[SlotView], handle_of: dict[int, Any]
                   ) -> tuple[list[SlotView], int | None]:
        """The slots as the array holds them, read through the layout (S-SLOT-1, S-SLOT-2):
        seq, allocated and owner from memory rather than from the library's own account,
        plus freelist_next and shared.  Only called between operations (single thread)."""
        layout, shared_address = self._l.raw_layout, self._l.shared_address
        assert layout is not None and shared_address is not None
        shared = shared_address(self._interp)
        array = ctypes.c_void_p.from_address(
            shared + layout["offsetof(struct _qsbr_shared, array)"]).value or 0
        size = ctypes.c_ssize_t.from_address(
            shared + layout["offsetof(struct _qsbr_shared, size)"]).value
        if size != len(views) or (size and not array):
            raise errors.CorruptStateError(
                f"the array holds {size} slots, the library's snapshot {len(views)}")
        pad = layout["sizeof(struct _qsbr_pad)"]

        def field(name: str) -> int:
            return layout[f"offsetof(struct _qsbr_thread_state, {name})"]

        seq_at, shared_at, tstate_at = field("seq"), field("shared"), field("tstate")
        allocated_at, next_at = field("allocated"), field("freelist_next")
        raw = []
        for index, view in enumerate(views):
            base = array + index * pad
            tstate = ctypes.c_void_p.from_address(base + tstate_at).value
            link = ctypes.c_void_p.from_address(base + next_at).value
            next_index: int | None | str = None
            if link:
                offset = link - array
                next_index = (offset // pad if offset % pad == 0 and 0 <= offset < size * pad
                              else f"<foreign {link:#x}>")
            raw.append(SlotView(
                seq=ctypes.c_uint64.from_address(base + seq_at).value,
                allocated=ctypes.c_bool.from_address(base + allocated_at).value,
                owner=(handle_of.get(tstate, f"<foreign {tstate:#x}>") if tstate else None),
                bookkeeping=view.bookkeeping, freelist_next=next_index,
                shared_is_interpreter=(
                    ctypes.c_void_p.from_address(base + shared_at).value == shared)))
        return raw, (array % 64 if size else None)

    def close(self) -> None:
        if self._interp:
            self._lib.qsbr_api_fini(self._interp)
            for pointer in self._tstates.values():
                self._lib.qsbr_api_tstate_delete(pointer)
            self._tstates.clear()
            self._lib.qsbr_api_interp_delete(self._interp)
            self._interp = None


class CabiImplementation:
    #: qsbr_api.h promises that operations on different thread states may run concurrently
    thread_safe = True

    def __init__(self, path: str, profile: str | None = None) -> None:
        self._library = _Library(path)
        self.profile = self._library.profile
        self.release = self._library.release
        if profile is not None:
            wanted = profile if profile in ("3.13", "3.14") else resolve(profile).name
            if wanted not in (self.profile, self.release):
                raise errors.QsbrError(
                    f"{path} implements the {self.release} profile, not {profile}")
        self.name = f"C ABI library {os.path.basename(path)}"
        # qsbr_api_version() (optional symbol), else $QSBR_LIBRARY_VERSION, else "unknown"
        self.version = self._library.version or os.environ.get("QSBR_LIBRARY_VERSION",
                                                               "unknown")
        self.path = path

    def new_interpreter(self) -> CabiInterpreter:
        return CabiInterpreter(self._library)

    def qsbr_lt(self, a: int, b: int) -> bool:
        lib, u64 = self._library.lib, errors.check_u64
        return bool(lib.qsbr_api_lt(u64(a, "a"), u64(b, "b")))

    def qsbr_leq(self, a: int, b: int) -> bool:
        lib, u64 = self._library.lib, errors.check_u64
        return bool(lib.qsbr_api_leq(u64(a, "a"), u64(b, "b")))

    def layout(self) -> dict[str, int]:
        lib = self._library.lib
        names = [lib.qsbr_api_layout_name(i) for i in range(lib.qsbr_api_layout_count())]
        return {name.decode(): lib.qsbr_api_layout(name) for name in names}


def load(path: str, profile: str | None = None) -> CabiImplementation:
    return CabiImplementation(path, profile)


def from_env(profile: str | None = None) -> CabiImplementation:
    """Adapter factory: the library named by $QSBR_LIBRARY."""
    path = os.environ.get("QSBR_LIBRARY")
    if not path:
        raise errors.QsbrError("set QSBR_LIBRARY to the path of a library exporting the QSBR "
                               "C ABI (reference_c/include/qsbr_api.h)")
    return CabiImplementation(path, profile)
