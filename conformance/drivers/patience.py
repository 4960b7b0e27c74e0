"""Waiting for a child process without calling a busy machine's slowness a hang.

A child is charged the wall time it could have used: wall time less the run-queue wait of its
most-starved thread, its descendants' threads included (Linux's per-task
``/proc/PID/task/TID/schedstat``, second field: time spent runnable but waiting for a CPU).
A child that is blocked (a deadlock) or spins on an idle machine is charged its wall time; a
child that is only starved by other processes is charged little, so it is never called hung
however busy the machine is.  Where the kernel does not say (no ``/proc``), the charge is
the wall time.

Where the child reports progress (a line per action, a counter that grows), the charge starts
again at every change: the budget bounds the time *without progress*, not the whole run.

Everything here reads with ``os.open``/``os.read``, never ``open()``: it runs about once a
second, and on 3.13t closing a buffered file re-enters its critical section (close calls
flush), which spins 40 ``sched_yield()`` calls before it parks (gh-114203, fixed in 3.14
only): beside busy processes each yield gives the CPU away for a whole time slice.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable, Hashable

from . import interrupt


def _read_small(path: str, size: int = 512) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def runqueue_waits(pid: int) -> dict[int, float]:
    """Seconds each thread of ``pid`` and of its descendants (a command line waiting for its
    own child, make waiting for the compiler) has spent runnable but waiting for a CPU ({}
    where the kernel does not say, or the process is gone)."""
    waits: dict[int, float] = {}
    pending, seen = [pid], set()
    while pending:
        process = pending.pop()
        if process in seen:
            continue
        seen.add(process)
        try:
            tids = os.listdir(f"/proc/{process}/task")
        except OSError:
            continue
        for tid in tids:
            base = f"/proc/{process}/task/{tid}"
            try:
                waits[int(tid)] = int(_read_small(f"{base}/schedstat").split()[1]) / 1e9
                children = _read_small(f"{base}/children", 65536).split()
                pending.extend(int(child) for child in children)
            except (OSError, ValueError, IndexError):
                continue        # the thread ended between the listing and the read
    return waits


class Patience:
    """The time charged to process ``pid`` since the last :meth:`restart`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.restart()

    def restart(self) -> None:
        self._wall = time.monotonic()
        # Threads started later have waited only since they started: their base is 0.
        self._base = runqueue_waits(self.pid)
        self._waited: dict[int, float] = {}

    def charged(self) -> float:
        for tid, wait in runqueue_waits(self.pid).items():
            # The largest wait seen per thread: a thread that ends keeps what it waited.
            self._waited[tid] = max(self._waited.get(tid, 0.0), wait - self._base.get(tid, 0.0))
        starved = max(self._waited.values(), default=0.0)
        return max(0.0, time.monotonic() - self._wall - starved)


class Watched:
    """What :func:`run_watched` saw: ``hung`` is None when the child ended by itself.  (A
    plain class: a dataclass would import inspect into every live driver, which costs a
    3.13t interpreter thousands of sched_yield() calls.)"""

    __slots__ = ("returncode", "stdout", "stderr", "hung")

    def __init__(self, returncode: int | None, stdout: str, stderr: str,
                 hung: str | None = None) -> None:
        self.returncode, self.stdout, self.stderr, self.hung = returncode, stdout, stderr, hung


def run_watched(command: list[str], *, budget: float, input_text: str | None = None,
                cwd: str | None = None, env: dict[str, str] | None = None,
                progress: Callable[[str, str], Hashable] | None = None,
                what: str = "the child") -> Watched:
    """Run ``command`` to its end, or kill it once it was charged ``budget`` seconds (see the
    module docstring) without progress.  ``progress(stdout, stderr)`` returns a token that
    changes whenever the child made progress; by default any new output on stdout is progress.
    Ctrl-C (conformance.drivers.interrupt) kills the child and raises KeyboardInterrupt."""
    # here: the live driver imports this module for Patience alone
    import subprocess

    def kill() -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                proc.kill()
        proc.wait()

    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=env, process_group=0)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    chunks: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    patience = Patience(proc.pid)
    token: Hashable = None
    received = 0            # bytes on stdout: the default progress token
    hung: str | None = None

    def text(fd: int) -> str:
        return b"".join(chunks[fd]).decode(errors="replace")

    try:
        try:
            if input_text:
                os.write(proc.stdin.fileno(), input_text.encode())     # small: the actions
        except BrokenPipeError:
            pass
        proc.stdin.close()
        open_fds = [out_fd, err_fd]
        while open_fds:
            remaining = budget - patience.charged()
            # Overdue: before calling it a hang, read what the child wrote while this process
            # itself waited for a CPU (its own waits are not the child's): progress found
            # there restarts the charge.
            overdue = remaining <= 0
            ready, _, _ = select.select(open_fds, [], [], 0 if overdue else min(remaining, 1.0))
            for fd in ready:
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                    received += len(data) if fd == out_fd else 0
                else:
                    open_fds.remove(fd)
            now = token
            if ready:
                now = (progress(text(out_fd), text(err_fd)) if progress is not None
                       else received)
            if now != token:
                token = now
                patience.restart()
            elif overdue and open_fds:
                hung = (f"{what} made no progress for {budget:g} s of the time it had the CPU "
                        "for (time spent waiting for a CPU behind other processes is not "
                        "counted): a hang or a deadlock")
                break
            interrupt.check()
    except BaseException:
        kill()
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    if hung is not None:
        kill()
        return Watched(None, text(out_fd), text(err_fd), hung)
    return Watched(proc.wait(), text(out_fd), text(err_fd))
