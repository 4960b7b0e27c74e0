"""The bridge under real Python threads and a real os.fork().

On free-threaded builds (3.13t, 3.14t) the bridge must not re-enable the GIL, and Python
threads then call into the port truly in parallel.  On GIL builds the same tests still run
concurrently in C, since every call into the port releases the GIL.
"""

import os
import sys
import sysconfig
import threading
import warnings

import pytest
import watched

from conformance.model.oracle import OracleInterpreter
from conformance.reference import reference_port

FREE_THREADED = sysconfig.get_config_var("Py_GIL_DISABLED") == 1
needs_free_threading = pytest.mark.requires("free_threaded")


@needs_free_threading
@pytest.mark.free_threading
@pytest.mark.parametrize("module", ["cython_bridge._qsbr313", "cython_bridge._qsbr314"])
def test_importing_the_bridge_keeps_the_gil_disabled(module, tmp_path):
    # A fresh interpreter, so nothing imported earlier can have re-enabled the GIL.  An
    # extension without Py_mod_gil = Py_MOD_GIL_NOT_USED would re-enable it (with a warning).
    code = (f"import sys, warnings; warnings.simplefilter('error'); import {module}; "
            "print(sys._is_gil_enabled())")
    # Run outside the source tree, so the installed package is imported, not the sources.
    proc = watched.run([sys.executable, "-c", code], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def _invariants(snap):
    assert snap.wr_seq % 2 == 1
    for slot in snap.slots:
        if slot.seq:
            assert ((slot.seq - snap.rd_seq) & ((1 << 64) - 1)) < (1 << 63)
    unallocated = {i for i, s in enumerate(snap.slots) if not s.allocated}
    assert set(snap.freelist) == unallocated and len(snap.freelist) == len(unallocated)
    for handle, slot in snap.threads.items():
        if isinstance(slot, int):
            assert snap.slots[slot].owner == handle


@pytest.mark.parametrize("profile", ["3.13", "3.14"])
def test_python_threads_hammer_one_interpreter(profile):
    interp = reference_port(profile).new_interpreter()
    workers, rounds, held = 8, 40, 3           # 24 thread states at once: growth to 32
    barrier = threading.Barrier(workers + 1)
    all_registered = threading.Barrier(workers)     # every round holds 24 slots at once
    errors = []
    stop = threading.Event()

    def worker():
        try:
            barrier.wait()
            for _ in range(rounds):
                handles = [interp.new_thread_state() for _ in range(held)]
                for h in handles:
                    index = interp.reserve()
                    assert index >= 0
                    interp.register(h, index)
                    interp.attach(h)
                all_registered.wait()
                for step in range(20):
                    h = handles[step % held]
                    goal = interp.advance()
                    interp.quiescent_state(h)
                    if profile == "3.13":
                        interp.deferred_advance(h)
                    else:
                        interp.shared_next()
                    interp.poll(h, goal)
                    interp.goal_reached(h, goal)
                    if step % 7 == 0:
                        interp.detach(h)
                        interp.attach(h)
                for h in handles:
                    interp.detach(h)
                    interp.unregister(h)
                    interp.delete_thread_state(h)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            stop.set()
            all_registered.abort()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    snapshots = 0
    while any(t.is_alive() for t in threads):
        _invariants(interp.snapshot())          # consistent: taken with the world stopped
        snapshots += 1
        if stop.is_set():
            break
    for t in threads:
        t.join()
    assert errors == []
    final = interp.snapshot()
    _invariants(final)
    assert final.size >= 32
    assert not any(s.allocated for s in final.slots)
    assert final.threads == {}
    assert snapshots > 0
    if FREE_THREADED:
        assert sys._is_gil_enabled() is False
    interp.close()


@pytest.mark.requires("fork")
@pytest.mark.parametrize("profile", ["3.13", "3.14"])
def test_os_fork_with_threads_alive(profile):
    """S-FORK-1 from Python: fork while other threads hold slots; the child's state equals the
    oracle's after_fork prediction, and the parent is untouched."""
    interp = reference_port(profile).new_interpreter()
    model = OracleInterpreter(profile)
    main = interp.new_thread_state()
    model_main = model.new_thread_state()
    interp.register(main, interp.reserve())
    model.register(model_main, model.reserve())

    ready, release = threading.Barrier(4), threading.Event()
    handles = {}

    def holder(name, attach):
        h = interp.new_thread_state()
        interp.register(h, interp.reserve())
        if attach:
            interp.attach(h)
        handles[name] = h
        ready.wait()
        while not release.is_set():
            if attach:
                interp.quiescent_state(h)
            release.wait(0.001)

    threads = [threading.Thread(target=holder, args=(n, a))
               for n, a in (("reader", True), ("idle", False), ("busy", True))]
    for t in threads:
        t.start()
    ready.wait()

    # Replay on the model what the port holds now: same slots, same attached sequences.
    before = interp.snapshot()
    mirror = {main: model_main}
    # In reservation order: a fresh freelist hands out 6, 5, 4, whichever thread got there
    # first (the order the threads stored their handles may differ under load).
    for h in sorted(handles.values(), key=lambda h: -before.threads[h]):
        mh = model.new_thread_state()
        mirror[h] = mh
        index = before.threads[h]
        assert model.reserve() == index
        model.register(mh, index)
    for index, slot in enumerate(before.slots):
        model.slots[index].seq = slot.seq
    model.after_fork(model_main)
    expected = model.snapshot()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # fork() with threads alive
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            interp.after_fork_in_child(main)
            got = interp.snapshot()
            ok = (got.freelist == expected.freelist
                  and [s.seq for s in got.slots] == [s.seq for s in expected.slots]
                  and [s.allocated for s in got.slots] == [s.allocated for s in expected.slots]
                  and got.threads[main] == expected.threads[model_main]
                  and all(got.threads[h] == "stale" for h in handles.values()))
            # the slots of vanished threads are reusable: reserve hands out the list head
            ok = ok and interp.reserve() == expected.freelist[0]
            if not ok:
                print(f"child: got {got}, expected {expected}", file=sys.stderr)
            code = 0 if ok else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    release.set()
    for t in threads:
        t.join()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    after = interp.snapshot()
    assert all(isinstance(after.threads[h], int) for h in handles.values())
    assert after.freelist == before.freelist
