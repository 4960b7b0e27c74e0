"""Runs QSBR-relevant actions in this (fresh, free-threaded) interpreter and prints what the
live probe sees after each one, as JSON lines.  Started by conformance.live in a subprocess.

Actions (a JSON list on stdin, or {"actions": list, "symtab": values} where the parent passes
the .symtab values it read, conformance.checks.symbols.symtab_values): ["start"] starts a
thread that stays alive; ["stop", k] ends and joins the k-th live thread; ["fork"] forks and
reports the child's view; ["subinterp"] reports the view from inside a new subinterpreter;
["seq", kind] runs one sequence operation on the main thread's slot (quiescent_state,
goal_reached, advance, poll, shared_next or deferred_advance, detach_attach) through
_live_probe.seq_op, which reports the sequences just before and just after.  poll and
goal_reached use the goal of the last advance (or shared_next / deferred_advance), else the
current wr_seq.  ["seq", "batch"] is the
interpreter's own batching function (shared_next on 3.13.6+, deferred_advance before).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import warnings


def _probe():
    from conformance.checks import _live_probe
    return _live_probe


def _settled_snapshot(probe, deadline: float = 1.0) -> dict:
    """A snapshot once every other thread is blocked (detached).

    A thread that has just signalled "started" may still be attached on its way into
    Event.wait(): wait for the condition (every other slot detached), not for a time.  The
    bound only keeps a real bug (a thread that never detaches) from hanging the driver; it is
    generous, and charged as conformance.drivers.patience does (time this process's threads
    spent waiting for a CPU does not count), so a busy machine changes nothing.
    """
    import time

    from conformance.drivers.patience import Patience
    patience = Patience(os.getpid())
    started, deadline = time.monotonic(), max(deadline, 60.0)
    while True:
        snap = probe.snapshot()
        others = [s for i, s in enumerate(snap["slots"]) if i != snap["my_slot"]]
        if all(s["seq"] == 0 for s in others if s["allocated"]):
            return snap
        # The charge never exceeds the wall time: read /proc only once that has passed.
        if time.monotonic() - started > deadline and patience.charged() > deadline:
            return snap
        time.sleep(0.001)


def _fork_snapshot() -> dict:
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)    # fork() with threads alive
        pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            data = json.dumps(_probe().snapshot()).encode()
            os.write(write, data)
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


def _subinterpreter_snapshot() -> dict | None:
    try:
        import _interpreters  # 3.13+
    except ImportError:
        return None
    import tempfile
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        interp = _interpreters.create()
        try:
            code = ("import json; from conformance.checks import _live_probe; "
                    f"open({out.name!r}, 'w').write(json.dumps(_live_probe.snapshot()))")
            failure = _interpreters.exec(interp, code)
            if failure is not None:
                raise RuntimeError(f"subinterpreter failed: {failure}")
        finally:
            _interpreters.destroy(interp)
        return json.loads(out.read())


#: The interpreter's local functions each operation calls (conformance.checks.symbols).
FUNCTIONS = {"advance": "_Py_qsbr_advance", "poll": "_Py_qsbr_poll",
             "shared_next": "_Py_qsbr_shared_next",
             "deferred_advance": "_Py_qsbr_deferred_advance"}


def _addresses(probe, known: dict | None = None) -> tuple[dict[str, int], str | None]:
    from conformance.checks.symbols import SymbolsUnavailable, find_functions
    batching = "shared_next" if probe.PROFILE == "3.14" else "deferred_advance"
    names = {kind: FUNCTIONS[kind] for kind in ("advance", "poll", batching)}
    try:
        found = find_functions(tuple(names.values()), known)
    except SymbolsUnavailable as exc:
        return {}, str(exc)
    return {kind: found[name] for kind, name in names.items()}, None


def main() -> int:
    request = json.load(sys.stdin)
    # {"actions": [...], "symtab": symbols.symtab_values(...) of the parent}, or the actions
    if isinstance(request, dict):
        actions, known = request["actions"], request.get("symtab")
    else:
        actions, known = request, None
    probe = _probe()
    addresses, symbols_error = _addresses(probe, known)
    goal: int | None = None
    live: list[tuple[threading.Thread, threading.Event]] = []

    def emit(kind: str, snap: dict | None, **extra) -> None:
        print(json.dumps({"action": kind, "snapshot": snap,
                          "threads": [t.ident for t, _ in live], **extra}), flush=True)

    emit("initial", probe.snapshot(), main_thread_id=threading.get_ident(),
         version=sys.version.split()[0], profile=probe.PROFILE, layout=probe.layout(),
         array_raw=bool(probe.ARRAY_RAW), symbols_error=symbols_error,
         functions=sorted(addresses),
         gil_enabled=getattr(sys, "_is_gil_enabled", lambda: True)())
    for action in actions:
        kind = action[0]
        if kind == "start":
            started, release = threading.Event(), threading.Event()

            def body(started=started, release=release) -> None:
                started.set()
                release.wait()

            thread = threading.Thread(target=body)
            thread.start()
            started.wait()
            live.append((thread, release))
            emit(kind, _settled_snapshot(probe))
        elif kind == "stop":
            thread, release = live.pop(action[1] % len(live))
            release.set()
            thread.join()
            emit(kind, probe.snapshot())
        elif kind == "fork":
            child = _fork_snapshot()
            emit(kind, probe.snapshot(), child=child)
        elif kind == "subinterp":
            sub = _subinterpreter_snapshot()    # first: the snapshot must show its effects
            emit(kind, probe.snapshot(), sub=sub)
        elif kind == "seq":
            op = action[1]
            if op == "batch":       # this interpreter's batching function
                op = "shared_next" if probe.PROFILE == "3.14" else "deferred_advance"
            if op in FUNCTIONS and op not in addresses:
                emit(kind, probe.snapshot(), op=op, seq=None, skipped=symbols_error
                     or f"{op} is not part of this interpreter's profile")
                continue
            _settled_snapshot(probe, deadline=60.0)    # the other threads detached, if they will
            target = goal if goal is not None else probe.snapshot()["wr_seq"]
            record = probe.seq_op(op, addresses.get(op, 0), target)
            if op in ("advance", "shared_next", "deferred_advance"):
                goal = record["result"]
            emit(kind, probe.snapshot(), op=op, goal=target, seq=record)
        else:
            raise SystemExit(f"unknown action {action!r}")
    for thread, release in live:
        release.set()
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
