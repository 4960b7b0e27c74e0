"""Runs the implementation under test in a child process.

The parent (the harness) talks to it through a pipe.  If the child dies (segfault, abort,
os._exit) or does not answer within the step timeout, the call raises
ImplementationCrashedError naming the signal or the hang; the differential run reports it as a
failure of that step with the step sequence, and the next test case starts a fresh child.

A hang verdict does not depend on how busy the machine is: the time a call is charged is the
wall time minus the time the child spent waiting for a CPU (Linux's per-task schedstat), so a
child starved by other processes is not a hang, while one that spins or blocks is.  Start-up
(importing the adapter, calling the factory) has its own, generous, timeout.  A module that
does not import, a missing factory or a factory that raises is a bad input (AdapterError), not
a crash of the implementation.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from typing import Any

from ..model import errors
from ..model.adapter import AdapterError
from . import interrupt
from .framing import read as _read
from .framing import write as _write
from .patience import Patience

#: Default bound on the isolated child's start-up (imports, the factory call), seconds.
STARTUP_TIMEOUT = 120.0
#: Default bound on one call of an isolated implementation, seconds of charged time.
STEP_TIMEOUT = 10.0
#: After a hang, later calls wait this long at most: shrinking replays the hang many times.
_TIMEOUT_AFTER_A_HANG = 0.5


class ImplementationRaised(Exception):
    """The implementation raised an exception that is not part of the protocol; carries the
    implementation's own traceback (from the child)."""

    def __init__(self, message: str, traceback_text: str = "") -> None:
        super().__init__(message)
        self.traceback_text = traceback_text

    @classmethod
    def named(cls, name: str, message: str, traceback_text: str = "") -> ImplementationRaised:
        """An instance whose class has the remote exception's name (reports show it)."""
        if name not in _REMOTE_CLASSES:
            _REMOTE_CLASSES[name] = type(name, (cls,), {})
        return _REMOTE_CLASSES[name](message, traceback_text)


_REMOTE_CLASSES: dict[str, type[ImplementationRaised]] = {}


def child_environment() -> dict[str, str]:
    """The environment of a child process that imports the adapter module the way this
    process would (its sys.path, e.g. a test's syspath_prepend, as PYTHONPATH)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def python_command(module: str, *args: str, python: str | None = None) -> list[str]:
    """The command line of a child process that runs the suite's ``module`` (``-m``) under
    ``python`` (default: this interpreter).  ``-P`` keeps the child's working folder off its
    sys.path: from a checkout, the checkout's conformance/ and cython_bridge/ would shadow the
    installed package (whose compiled parts a checkout may lack for that interpreter), and the
    child would not run what this process runs.  With child_environment() it imports exactly
    what this process imports; a module in the working folder is found only where this process
    finds it too (installed, or on PYTHONPATH)."""
    return [python or sys.executable, "-P", "-m", module, *args]


class _Child:
    def __init__(self, spec: str, kwargs: dict, timeout: float,
                 startup_timeout: float = STARTUP_TIMEOUT,
                 configured_timeout: float | None = None) -> None:
        self.timeout = timeout
        #: the --step-timeout asked for (``timeout`` is cut after a hang, see below)
        self.configured_timeout = timeout if configured_timeout is None else configured_timeout
        self.stderr = tempfile.TemporaryFile()
        env = child_environment()
        # The child gets a target (Target.to_json's form: conformance.drivers.target), as
        # every child process of a run does: this spec and keyword arguments, in-process there.
        request = {"spec": spec, "kwargs": [[name, value] for name, value in kwargs.items()],
                   "isolate": False}
        self.proc = subprocess.Popen(
            python_command("conformance.drivers.isolation_worker", json.dumps(request)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env,
            process_group=0)     # Ctrl-C reaches the harness, which then closes the child
        self.dead: str | None = None
        self.interrupted = False        # Ctrl-C cut a call: no new child either
        self.startup_timeout = startup_timeout
        self.info: dict[str, Any] = self.call(("impl", "info", ()), first=True)

    def _wait_for_reply(self, timeout: float) -> bool:
        """True when the child has answered (or died); False after ``timeout`` seconds
        charged to the child (conformance.drivers.patience: wall time less its run-queue
        waits)."""
        assert self.proc.stdout is not None
        patience = Patience(self.proc.pid)
        while True:
            remaining = timeout - patience.charged()
            ready, _, _ = select.select([self.proc.stdout], [], [],
                                        min(max(remaining, 0.0), 1.0))
            if ready:
                return True
            interrupt.check()       # Ctrl-C while the child works: stop within a second
            if remaining <= 0:
                return False

    def _stderr_tail(self) -> str:
        """The crash site from faulthandler's report (innermost frames first), or the tail."""
        self.stderr.seek(0)
        lines = [line.strip() for line in
                 self.stderr.read().decode(errors="replace").splitlines() if line.strip()]
        fatal = [line for line in lines if line.startswith("Fatal Python error")]
        frames = [line for line in lines if line.startswith("File ")][:2]
        picked = fatal[:1] + frames if fatal else lines[-3:]
        return ("; " + " | ".join(picked)) if picked else ""

    def _death(self, what: str) -> errors.ImplementationCrashedError:
        code = self.proc.wait()
        if code < 0:
            try:
                reason = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                reason = f"killed by signal {-code}"
        else:
            reason = f"exited with status {code}"
        self.dead = f"the implementation crashed ({reason}) during {what}{self._stderr_tail()}"
        return errors.ImplementationCrashedError(self.dead)

    def call(self, request: tuple, first: bool = False) -> Any:
        what = f"{request[1]}{request[2]!r}" if not first else "start-up"
        if self.dead is not None:
            raise errors.ImplementationCrashedError(self.dead)
        try:
            return self._call(request, first, what)
        except KeyboardInterrupt:
            # Ctrl-C cut this request/reply pair in the middle (half a request written, or
            # half a reply read): the pipes' framing is lost, and a next call could wait for
            # ever on a reply that never comes.  This child can answer nothing more.
            self.interrupted = True
            self.dead = f"the run was interrupted (Ctrl-C) during {what}"
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            raise

    def _call(self, request: tuple, first: bool, what: str) -> Any:
        if not first:
            try:
                _write(self.proc.stdin, request)
            except (BrokenPipeError, OSError):
                raise self._death(what) from None
        assert self.proc.stdout is not None
        timeout = self.startup_timeout if first else self.timeout
        if not self._wait_for_reply(timeout):
            self.proc.kill()
            self.proc.wait()
            if first:
                bound = f"{timeout:g} s (--startup-timeout)"
            elif timeout < self.configured_timeout:
                bound = (f"{timeout:g} s (--step-timeout {self.configured_timeout:g} s, cut to "
                         f"{timeout:g} s after an earlier hang, while shrinking)")
            else:
                bound = f"{timeout:g} s (--step-timeout)"
            self.dead = (f"the implementation did not answer within {bound} during {what} "
                         "(hang or deadlock)")
            raise errors.ImplementationCrashedError(self.dead)
        reply = _read(self.proc.stdout)
        if reply is None:
            raise self._death(what)
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "qsbr":
            raise errors.error_for_kind(reply[1], reply[2])
        if reply[0] == "load-error":
            self.close()
            self.dead = reply[1]
            raise AdapterError(reply[1])
        raise ImplementationRaised.named(*reply[1:])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


class IsolatedInterpreter:
    def __init__(self, owner: IsolatedImplementation, child: _Child, ident: int) -> None:
        self._owner, self._child, self._id = owner, child, ident

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any) -> Any:
            try:
                return self._child.call((self._id, method, args))
            except errors.ImplementationCrashedError:
                self._owner._note_failure(self._child)
                raise
        return call

    def run_calls(self, calls: list, profile: str) -> list:
        """Run a batch of calls in the child (conformance.checks.exhaustive.execute_calls)."""
        try:
            return self._child.call((self._id, "run_calls", (calls, profile)))
        except errors.ImplementationCrashedError:
            self._owner._note_failure(self._child)
            raise

    def close(self) -> None:
        if self._child.dead is None:
            try:
                self._child.call((self._id, "close", ()))
            except errors.ImplementationCrashedError:
                self._owner._note_failure(self._child)


class IsolatedImplementation:
    """An implementation loaded from MODULE:FACTORY in a child process."""

    def __init__(self, spec: str, step_timeout: float = STEP_TIMEOUT, *,
                 startup_timeout: float = STARTUP_TIMEOUT, **kwargs: Any) -> None:
        self.spec, self.kwargs, self.step_timeout = spec, kwargs, step_timeout
        self.configured_timeout = step_timeout
        self.startup_timeout = startup_timeout
        self._child: _Child | None = None
        child = self._get_child()
        self.name = f"{child.info['name']} (isolated)"
        self.version, self.profile = child.info["version"], child.info["profile"]
        self.release = child.info.get("release")
        #: declared by the implementation in the child (docs/adapter-protocol.md)
        self.thread_safe = bool(child.info.get("thread_safe", False))
        if child.info["layout"] is not None:
            self.layout = lambda: dict(child.info["layout"])
        if child.info.get("live_allocations"):
            self.live_allocations = lambda: self._get_child().call(
                ("impl", "live_allocations", ()))

    layout: Any             # set in __init__ when the implementation has layout()
    live_allocations: Any   # set in __init__ when the implementation has live_allocations()

    def _get_child(self) -> _Child:
        if self._child is not None and self._child.interrupted:
            raise errors.ImplementationCrashedError(self._child.dead or "interrupted")
        if self._child is None or self._child.dead is not None:
            if self._child is not None:
                self._child.close()
            self._child = _Child(self.spec, self.kwargs, self.step_timeout,
                                 self.startup_timeout, self.configured_timeout)
        return self._child

    def _note_failure(self, child: _Child) -> None:
        if child.dead and "did not answer" in child.dead:
            self.step_timeout = min(self.step_timeout, _TIMEOUT_AFTER_A_HANG)

    def new_interpreter(self) -> IsolatedInterpreter:
        child = self._get_child()
        return IsolatedInterpreter(self, child, child.call(("impl", "new_interpreter", ())))

    def qsbr_lt(self, a: int, b: int) -> bool:
        return self._get_child().call(("impl", "qsbr_lt", (a, b)))

    def qsbr_leq(self, a: int, b: int) -> bool:
        return self._get_child().call(("impl", "qsbr_leq", (a, b)))

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None
