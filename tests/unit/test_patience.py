"""conformance.drivers.patience: a hang is charged time without progress, never wall time
spent waiting for a CPU behind other processes."""

import sys

import pytest
from requires import requires

from conformance.drivers import patience


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_charged_time_leaves_out_the_most_starved_threads_wait(monkeypatch):
    clock = _Clock()
    waits = {1: 5.0, 2: 7.0}
    monkeypatch.setattr(patience.time, "monotonic", clock)
    monkeypatch.setattr(patience, "runqueue_waits", lambda pid: dict(waits))
    watch = patience.Patience(1234)
    clock.now += 10.0
    waits.update({1: 8.0, 2: 14.0, 3: 2.0})     # thread 3 started after the restart
    assert watch.charged() == pytest.approx(10.0 - 7.0)
    del waits[2]                                 # a thread that ended keeps what it waited
    clock.now += 1.0
    assert watch.charged() == pytest.approx(11.0 - 7.0)
    watch.restart()
    clock.now += 2.0
    assert watch.charged() == pytest.approx(2.0)  # blocked, not waiting: charged in full


def test_starved_the_whole_time_is_charged_nothing(monkeypatch):
    clock = _Clock()
    waits = {1: 0.0}
    monkeypatch.setattr(patience.time, "monotonic", clock)
    monkeypatch.setattr(patience, "runqueue_waits", lambda pid: dict(waits))
    watch = patience.Patience(1234)
    clock.now += 500.0
    waits[1] = 500.0
    assert watch.charged() == 0.0


def test_this_kernel_reports_run_queue_waits():
    import os
    waits = patience.runqueue_waits(os.getpid())
    requires("proc")
    assert waits and all(wait >= 0 for wait in waits.values())


def test_a_blocked_child_is_called_hung_and_killed():
    watched = patience.run_watched(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(3600)"],
        budget=1.0, what="the sleeper")
    assert watched.returncode is None and watched.stdout == "ready\n"
    assert watched.hung is not None and "the sleeper made no progress for 1 s" in watched.hung


def test_a_child_that_ends_is_not_hung_and_its_output_is_kept():
    watched = patience.run_watched(
        [sys.executable, "-c", "import sys; print(sys.stdin.read().upper()); "
                               "print('err', file=sys.stderr); sys.exit(3)"],
        budget=600.0, input_text="actions")
    assert (watched.returncode, watched.stdout, watched.stderr, watched.hung) == (
        3, "ACTIONS\n", "err\n", None)


def test_progress_restarts_the_charge():
    # Eight lines 0.3 s apart (sleeping: charged in full) take 2.4 s, longer than the 1.5 s
    # budget: the run ends well only because each new line restarts the charge.
    code = ("import time\n"
            "for i in range(8):\n"
            "    time.sleep(0.3)\n"
            "    print(i, flush=True)\n")
    watched = patience.run_watched([sys.executable, "-c", code], budget=1.5)
    assert watched.hung is None and watched.returncode == 0
    assert watched.stdout.split() == [str(i) for i in range(8)]
    # The same child, judged on a token that never changes, is a hang.
    watched = patience.run_watched([sys.executable, "-c", code], budget=1.5,
                                   progress=lambda stdout, stderr: 0)
    assert watched.hung is not None and watched.returncode is None


def test_a_childs_own_children_are_watched_too():
    # A command line waits (blocked) on its own child: that child's run-queue waits must count.
    import os
    import subprocess
    requires("proc")
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; child = subprocess.Popen(['sleep', "
                               "'600']); print(child.pid, flush=True); child.wait()"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        grandchild = int(parent.stdout.readline())
        assert grandchild in patience.runqueue_waits(parent.pid)
    finally:
        os.kill(grandchild, 9)
        parent.wait()
