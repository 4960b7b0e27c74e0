"""Child side of conformance.drivers.isolation: hosts the implementation under test.

Its one argument is the target, serialised as every child process receives it
(``Target.to_json()``, conformance.drivers.target); it opens it in this process.  Reads
length-prefixed pickled requests on stdin (conformance.drivers.framing) and answers on
stdout.  A crash here (signal, abort) or a hang is seen by the parent as a failure of the step
it was running.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys

from ..model import errors
from ..model.adapter import implementation_traceback
from .framing import read as _read
from .framing import write as _write
from .target import Target, TargetError


def main() -> int:
    faulthandler.enable()           # a crash leaves its C/Python traceback on stderr
    # Ctrl-C goes to the whole process group: the parent decides when the run stops, and
    # closes this child; the child must not die of it first (a "crash" of the implementation).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    target = Target.from_json(json.loads(sys.argv[1]))
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr         # stray prints must not corrupt the channel
    try:
        impl = target.open()
    except TargetError as exc:      # a bad input, not a crash: the parent makes it exit 2
        _write(replies, ("load-error", str(exc).removeprefix(f"cannot load {target.spec}: ")))
        os._exit(0)
    interpreters: dict[int, object] = {}
    handles: dict[int, list] = {}       # per interpreter, for run_calls (logical thread ids)
    # Every capability the implementation declares (docs/adapter-protocol.md) crosses the
    # process boundary, so an isolated run treats it exactly as an in-process one.
    _write(replies, ("ok", {"name": impl.name, "version": str(impl.version),
                            "profile": impl.profile,
                            "release": getattr(impl, "release", None),
                            "layout": impl.layout() if hasattr(impl, "layout") else None,
                            "thread_safe": getattr(impl, "thread_safe", False) is True,
                            "live_allocations": callable(getattr(impl, "live_allocations",
                                                                 None))}))
    while (request := _read(requests)) is not None:
        target, method, args = request
        try:
            if target == "impl" and method == "new_interpreter":
                interp = impl.new_interpreter()
                interpreters[id(interp)] = interp
                value: object = id(interp)
            elif target == "impl":
                value = getattr(impl, method)(*args)
            elif method == "run_calls":
                # A batch from the exhaustive exploration: replay + new calls + snapshots in
                # one round trip (conformance.checks.exhaustive.execute_calls).
                from .batch import execute_calls
                value = execute_calls(interpreters[target], args[0],
                                      handles.setdefault(target, []), args[1])
            else:
                value = getattr(interpreters[target], method)(*args)
                if method == "close":
                    del interpreters[target]
                    handles.pop(target, None)
            _write(replies, ("ok", value))
        except errors.QsbrError as exc:
            _write(replies, ("qsbr", exc.kind, str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent as a protocol breach
            _write(replies, ("exception", type(exc).__name__, str(exc),
                             implementation_traceback(exc)))
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
