"""conformance.drivers.patience: a hang is charged time without progress, never wall time
spent waiting for a CPU behind other processes."""

import sys
import time

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
    """A real clock (the budget is time without progress), but not a pass/fail on how long the
    machine took: the child sleeps an hour, blocked, and a blocked child is charged its wall
    time in full however busy the machine is, so it is called hung after 1 s charged on any
    machine; a slow machine only makes the test take longer."""
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
    """Eight lines 0.3 s apart (sleeping: charged in full) take 2.4 s, longer than the 1.5 s
    budget: the run ends well only because each new line restarts the charge.  It cannot flake
    beside busy loops: between two lines the child is charged its 0.3 s of sleep and its own
    CPU time (its waits for a CPU are not charged), five times less than the budget; and a
    watcher (this process) that itself waited for a CPU reads the lines written meanwhile
    before it may call a hang (test_a_late_watcher_reads_the_progress_it_missed).  The second
    half (a token that never changes) is a hang on any machine: 2.4 s of sleep, charged in
    full, against 1.5 s."""
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


def test_a_late_watcher_reads_the_progress_it_missed(tmp_path, monkeypatch):
    """The watcher (this process) waited for a CPU itself while the child wrote a line: time
    it did not run looks charged to the child (wall time less the child's own waits), so it
    must read what is there before it calls a hang.  Simulated deterministically: the first
    charge is taken once the child has written its first line, and says the budget is spent."""
    marker = tmp_path / "written"
    code = ("import pathlib, sys, time\n"
            "print('a', flush=True)\n"
            f"pathlib.Path({str(marker)!r}).touch()\n"
            "time.sleep(0.3)\n"
            "print('b', flush=True)\n")
    real = patience.Patience.charged
    late = []

    def charged(self):
        if not late:
            late.append(True)
            for _ in range(100_000):        # wait on the condition, bounded by a count
                if marker.exists():
                    break
                time.sleep(0.01)
            return 600.0 + 1.0                  # as if it had not run for longer than that
        return real(self)

    monkeypatch.setattr(patience.Patience, "charged", charged)
    watched = patience.run_watched([sys.executable, "-c", code], budget=600.0)
    assert late and marker.exists()
    assert watched.hung is None and watched.returncode == 0, watched.hung
    assert watched.stdout.split() == ["a", "b"]
