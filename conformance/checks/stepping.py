"""Stepping: where a race probe's thread may be stopped, the locks it must not be stopped
under, and the two ways a round's threads are started (conformance.checks.races).

A stepped round stops one thread before its k-th *access point* -- an instruction of the
implementation's Python code that reads or writes shared state or calls (attribute and item
loads and stores, globals, closures' cells, calls, iteration) -- at which it holds none of the
implementation's locks (``sys.settrace`` with opcode events, in that thread only).  The locks:
those reachable from the interpreter and implementation objects through attributes and
containers, LOCK_DEPTH levels deep, their modules' globals, and those an interpreter declares
with the optional ``race_locks()`` (docs/adapter-protocol.md).
"""

from __future__ import annotations

import dis
import functools
import os
import sys
import sysconfig
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType
from typing import Any

SPINS = 20000           # turns a free round's thread spins for the others before it blocks


def _nop() -> None:
    pass


_HARNESS_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB = sysconfig.get_paths()["stdlib"]
_SITE = tuple({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
_traced: dict[str, bool] = {}
_ACCESS = ("LOAD_ATTR", "STORE_ATTR", "DELETE_ATTR", "LOAD_SUPER_ATTR",
           "BINARY_SUBSCR", "STORE_SUBSCR", "DELETE_SUBSCR", "BINARY_SLICE", "STORE_SLICE",
           "LOAD_GLOBAL", "STORE_GLOBAL", "LOAD_DEREF", "STORE_DEREF", "CALL", "FOR_ITER")
_points: dict[CodeType, frozenset[int]] = {}


def _is_implementation(filename: str) -> bool:
    """Code the stepped rounds may pause in: not this harness, not the standard library."""
    traced = _traced.get(filename)
    if traced is None:
        path = os.path.abspath(filename)
        traced = _traced[filename] = not (
            path.startswith(_HARNESS_DIR) or filename.startswith("<")
            or (path.startswith(_STDLIB) and not path.startswith(_SITE)))
    return traced


def access_points(code: CodeType) -> frozenset[int]:
    """The offsets of ``code``'s instructions that read or write shared state or call: not a
    method's lookup (code, not state: its call is the point) nor a global that names code
    (checked when it runs, :func:`_is_point`)."""
    points = _points.get(code)
    if points is None:
        points = _points[code] = frozenset(
            ins.offset for ins in dis.get_instructions(code)
            if ins.opname.startswith(_ACCESS) and not ins.opname.startswith("CALL_INTRINSIC")
            and not (ins.opname == "LOAD_ATTR" and str(ins.argrepr).startswith("NULL|self")))
        _globals[code] = {ins.offset: ins.argval for ins in dis.get_instructions(code)
                          if ins.opname == "LOAD_GLOBAL"}
    return points


_globals: dict[CodeType, dict[int, Any]] = {}
_CODE = (type, type(sys), type(_nop), type(len))


def _is_point(frame: Any) -> bool:
    if frame.f_lasti not in access_points(frame.f_code):
        return False
    name = _globals[frame.f_code].get(frame.f_lasti)
    if name is None:
        return True
    value = frame.f_globals.get(name, frame.f_builtins.get(name))
    return not isinstance(value, _CODE)


_SCALARS = (int, float, str, bytes, bool, type(None))
_pure_memo: dict[tuple[CodeType, int], bool] = {}


def _pure(code: CodeType, namespace: dict, depth: int = 0) -> bool:
    """Whether ``code`` touches no shared state: no access point but loads of globals bound to
    scalars or to pure functions, and no more calls than such functions (``qsbr_lt``, a port's
    arithmetic helpers).  A stop inside it is a stop before its call: not traced."""
    key = (code, id(namespace))
    known = _pure_memo.get(key)
    if known is not None:
        return known
    _pure_memo[key] = False                     # recursion: not proven pure
    calls = functions = 0
    pure = depth < 4
    for ins in dis.get_instructions(code) if pure else ():
        name = ins.opname
        if name.startswith("CALL") and not name.startswith("CALL_INTRINSIC"):
            calls += 1
        elif name == "LOAD_GLOBAL":
            value = namespace.get(ins.argval, _MISSING)
            if isinstance(value, _SCALARS):
                continue
            function_code = getattr(value, "__code__", None)
            if (isinstance(function_code, CodeType) and type(value).__name__ == "function"
                    and _pure(function_code, value.__globals__, depth + 1)):
                functions += 1
                continue
            pure = False
        elif name.startswith(_ACCESS) or name.startswith(("IMPORT", "YIELD", "SEND")):
            pure = False
        if not pure:
            break
    pure = pure and calls <= functions
    _pure_memo[key] = pure
    return pure


_MISSING = object()


#: A pause that waits this long for the other threads to finish is abandoned (it is then
#: blocked on something the paused thread holds that the lock scan did not find).  A liveness
#: escape only: it changes which interleaving ran, never a verdict; counted and reported.
ESCAPE_SECONDS = 2.0
LOCK_DEPTH = 4          # attribute levels the lock scan follows
LOCK_OBJECTS = 400      # objects it visits at most


def _lock_types() -> tuple[type, ...]:
    kinds: list[type] = [type(threading.Lock()), type(threading.RLock())]
    for name in ("_RLock", "_PyRLock"):
        kind = getattr(threading, name, None)
        if isinstance(kind, type):
            kinds.append(kind)
    return tuple(kinds)


def locks_of(*objects: Any) -> list[Any]:
    """The locks an implementation keeps: reachable from ``objects`` (and their modules'
    globals) through attributes and containers, LOCK_DEPTH levels deep, plus those an object
    declares with ``race_locks()``."""
    kinds = _lock_types()
    found: list[Any] = []
    seen: set[int] = set()
    frontier = list(objects)
    for obj in objects:
        module = sys.modules.get(type(obj).__module__)
        if module is not None:
            found += [v for v in list(vars(module).values()) if isinstance(v, kinds)]
        declared = getattr(obj, "race_locks", None)
        if callable(declared):
            found += [lock for lock in declared() if _held_probe(lock)]
    for _ in range(LOCK_DEPTH):
        following: list[Any] = []
        for obj in frontier:
            if id(obj) in seen or len(seen) >= LOCK_OBJECTS:
                continue
            seen.add(id(obj))
            if isinstance(obj, kinds) or type(obj).__name__ == "Condition":
                found.append(obj)
                continue
            following += _children(obj)
        frontier = following
    unique: dict[int, Any] = {}
    for lock in found:
        unique.setdefault(id(lock), lock)
    return list(unique.values())


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, (str, bytes, int, float, bool, type(None), type)) or callable(obj) \
            and not hasattr(obj, "__dict__"):
        return []
    if isinstance(obj, dict):
        return list(obj.values())[:64]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)[:64]
    out = list(getattr(obj, "__dict__", {}).values())
    for name in getattr(type(obj), "__slots__", ()):
        if isinstance(name, str) and hasattr(obj, name):
            out.append(getattr(obj, name))
    return out


def _held_probe(lock: Any) -> bool:
    return hasattr(lock, "_is_owned") or hasattr(lock, "locked")


def _held(lock: Any) -> bool:
    is_owned = getattr(lock, "_is_owned", None)     # RLock, Condition: owned by this thread
    return bool(is_owned()) if is_owned is not None else bool(lock.locked())


@dataclass(frozen=True)
class Schedule:
    """How a round's threads interleave.

    stepped: thread ``first`` runs until just before its ``point``-th access point of
    implementation Python code at which it holds none of the implementation's locks, then the
    other threads run all their operations (in index order, or reversed), then ``first``
    finishes (one preemption; C code never pauses).  free: all threads released together from
    a spinning barrier, thread ``offset % n`` after ``offset`` extra calls."""

    stepped: bool
    first: int = 0
    point: int = 0
    offset: int = 0
    reverse: bool = False

    def __str__(self) -> str:
        if not self.stepped:
            return f"released together, offset {self.offset}"
        return (f"thread {self.first} preempted before its access point {self.point}"
                + (", the others in reverse order" if self.reverse else ""))

    def spec(self) -> str:
        return (f"{self.first}:{self.point}{'r' if self.reverse else ''}" if self.stepped
                else f"free:{self.offset}")

    @classmethod
    def parse(cls, text: str) -> Schedule:
        head, _, tail = text.partition(":")
        if head == "free":
            return cls(False, offset=int(tail))
        return cls(True, first=int(head), point=int(tail.rstrip("r")),
                   reverse=tail.endswith("r"))


def run_stepped(calls: list[list[Callable[[], tuple]]], schedule: Schedule,
                 locks: list[Any], stats: dict, count: list[int]
                 ) -> list[Callable[[], list[tuple[str, Any]]]]:
    """``count[0]``: the points counted in the first thread (all of them when it was not
    preempted)."""
    n = len(calls)
    first = schedule.first
    others = [t for t in range(n) if t != first]
    if schedule.reverse:
        others.reverse()
    go = [threading.Event() for _ in range(n)]
    escaped = [False]

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if not _is_implementation(frame.f_code.co_filename) or _pure(frame.f_code,
                                                                      frame.f_globals):
            return None
        frame.f_trace_opcodes = True
        return local

    def local(frame: Any, event: str, arg: Any) -> Any:
        if (event != "opcode" or go[first].is_set() or count[0] >= schedule.point
                or not _is_point(frame)
                or any(_held(lock) for lock in locks)):
            return local
        count[0] += 1
        if count[0] == schedule.point:
            stats["preemptions"] += 1
            go[others[0]].set()
            if not go[first].wait(ESCAPE_SECONDS):
                stats["escapes"] += 1
                escaped[0] = True
        return local

    def run_first() -> list[tuple[str, Any]]:
        previous = sys.gettrace()
        sys.settrace(tracer)
        try:
            return [call() for call in calls[first]]
        finally:
            sys.settrace(previous)
            go[others[0]].set()         # finished before the preemption point: the others go

    def run_other(k: int) -> list[tuple[str, Any]]:
        me = others[k]
        go[me].wait()
        try:
            return [call() for call in calls[me]]
        finally:
            go[others[k + 1] if k + 1 < len(others) else first].set()

    racers: list[Callable[[], list[tuple[str, Any]]]] = [run_first] * n
    for k, t in enumerate(others):
        racers[t] = functools.partial(run_other, k)
    racers[first] = run_first
    run_first.escaped = escaped         # type: ignore[attr-defined]
    return racers


def run_free(calls: list[list[Callable[[], tuple]]], offset: int
              ) -> list[Callable[[], list[tuple[str, Any]]]]:
    # A spinning barrier: every thread stays runnable, so none finishes before the others
    # are even woken up (as a blocking barrier would allow).  After SPINS turns without the
    # others (not scheduled: a busy machine) it blocks instead of burning the CPU.
    arrived: list[int] = []
    everyone = threading.Event()

    def racer(t: int) -> list[tuple[str, Any]]:
        delay = offset if t == offset % len(calls) else 0
        arrived.append(t)
        if len(arrived) == len(calls):
            everyone.set()
        for _ in range(SPINS):
            if len(arrived) == len(calls):
                break
            _nop()
        else:
            everyone.wait()
        for _ in range(delay):
            _nop()
        return [call() for call in calls[t]]

    return [functools.partial(racer, t) for t in range(len(calls))]


