"""The spec's worked examples, run against both shipped implementations (oracle and bridge).

Each test names the facts it pins down; these are the same facts the differential run checks,
stated here as fixed, readable scenarios.
"""

import pytest

from conformance import errors
from conformance.model.adapter import STALE

U64 = (1 << 64) - 1


def registered(interp):
    t = interp.new_thread_state()
    interp.register(t, interp.reserve())
    return t


def test_fresh_state(interp):
    # S-SEQ-1, S-SEQ-2, S-SLOT-3: both sequences start at QSBR_INITIAL, no array.
    snap = interp.snapshot()
    assert (snap.wr_seq, snap.rd_seq, snap.size, snap.slots, snap.freelist) == (1, 1, 0, (), ())


def test_reserve_order_and_growth(interp):
    # S-FREE-2 example: 7, 6, ..., 0, then growth to 16 hands out 15, 14, ...
    assert [interp.reserve() for _ in range(8)] == [7, 6, 5, 4, 3, 2, 1, 0]
    assert interp.snapshot().size == 8
    assert [interp.reserve() for _ in range(3)] == [15, 14, 13]
    snap = interp.snapshot()
    assert snap.size == 16
    assert snap.freelist == (12, 11, 10, 9, 8)
    assert [interp.reserve() for _ in range(6)][-1] == 31     # S-SLOT-3: 16 -> 32


def test_unregister_is_lifo(interp):
    # S-FREE-3, S-UNREG-1
    a, b, c = registered(interp), registered(interp), registered(interp)
    interp.unregister(a)
    interp.unregister(c)
    snap = interp.snapshot()
    assert snap.freelist[:3] == (5, 7, 4)
    assert snap.slots[7].allocated is False and snap.slots[7].owner is None
    assert snap.threads[a] is None and snap.threads[b] == 6
    assert interp.reserve() == 5


def test_growth_keeps_owners(interp):
    # S-SLOT-3: growth copies slots and re-points every registered thread state.
    threads = [registered(interp) for _ in range(8)]
    interp.attach(threads[2])
    ninth = registered(interp)
    snap = interp.snapshot()
    assert snap.size == 16
    assert [snap.threads[t] for t in threads] == [7, 6, 5, 4, 3, 2, 1, 0]
    assert snap.threads[ninth] == 15
    assert snap.slots[5].seq == 1 and snap.slots[5].owner == threads[2]


def test_out_of_memory_changes_nothing(interp):
    # S-FREE-4
    interp.fail_next_allocations(1)
    before = interp.snapshot()
    assert interp.reserve() == -1
    assert interp.snapshot() == before
    assert interp.reserve() == 7


def test_attach_detach_quiescent(interp):
    # S-ATTACH-1, S-DETACH-1, S-QS-1
    t = registered(interp)
    interp.attach(t)
    interp.advance()
    assert interp.snapshot().slots[7].seq == 1
    interp.quiescent_state(t)
    assert interp.snapshot().slots[7].seq == 3
    interp.detach(t)
    assert interp.snapshot().slots[7].seq == 0
    interp.quiescent_state(t)           # legal while detached: looks attached at wr_seq
    assert interp.snapshot().slots[7].seq == 3


def test_poll_waits_for_every_reader(interp):
    # S-POLL-1, S-POLL-2, S-GOAL-1
    reader, writer = registered(interp), registered(interp)
    interp.attach(reader)
    interp.attach(writer)
    goal = interp.advance()
    assert goal == 3                                            # S-ADV-1
    assert interp.poll(writer, goal) is False
    interp.quiescent_state(writer)
    assert interp.poll(writer, goal) is False                   # the reader holds it
    interp.quiescent_state(reader)
    assert interp.goal_reached(writer, goal) is False           # no scan
    assert interp.poll(writer, goal) is True
    assert interp.snapshot().rd_seq == 3
    assert interp.goal_reached(writer, goal) is True


def test_detached_threads_never_hold_reclamation(interp):
    # S-POLL-2: with nothing attached rd_seq catches up with wr_seq.
    t = registered(interp)
    for _ in range(5):
        interp.advance()
    assert interp.poll(t, 11) is True
    assert interp.snapshot().rd_seq == 11


def test_wrap_around(implementation, interp):
    # S-SEQ-3, S-SEQ-4: across 2^64 the comparisons and the poll stay right.
    interp.set_sequences(U64 - 2, U64 - 2)
    t = registered(interp)
    interp.attach(t)
    assert interp.advance() == U64
    assert interp.advance() == 1
    assert interp.poll(t, 1) is False          # t still reads at 2^64 - 3
    interp.quiescent_state(t)
    assert interp.poll(t, 1) is True
    assert implementation.qsbr_lt(U64, 1) and not implementation.qsbr_lt(1, U64)
    assert implementation.qsbr_leq(U64, U64)


def test_deferred_batching(implementation, interp):
    t = registered(interp)
    if implementation.profile == "3.13":
        # S-DEF-1: nine deferrals return wr_seq + 2, the tenth advances.
        assert [interp.deferred_advance(t) for _ in range(9)] == [3] * 9
        assert interp.snapshot().wr_seq == 1
        assert interp.deferred_advance(t) == 3
        assert interp.snapshot().wr_seq == 3
        # S-DEF-3: the count stays in the slot for its next owner.
        interp.deferred_advance(t)
        interp.unregister(t)
        u = registered(interp)
        assert dict(interp.snapshot().slots[7].bookkeeping) == {"deferrals": 1}
        assert interp.snapshot().threads[u] == 7
        with pytest.raises(errors.UnsupportedOperationError):
            interp.shared_next()
    else:
        # S-DEF-2
        assert interp.shared_next() == 3 and interp.snapshot().wr_seq == 1
        assert interp.should_process(t) is False
        interp.set_bookkeeping(t, 5, 4096, 0, True)
        assert interp.should_process(t) is True
        with pytest.raises(errors.UnsupportedOperationError):
            interp.deferred_advance(t)


def test_fini_and_restart(interp):
    # S-FINI-1
    t = registered(interp)
    interp.advance()
    interp.fini()
    snap = interp.snapshot()
    assert (snap.size, snap.freelist, snap.wr_seq, snap.rd_seq) == (0, (), 3, 1)
    assert snap.threads[t] == STALE
    with pytest.raises(errors.StaleSlotError):
        interp.attach(t)
    interp.fini()                                # harmless twice
    assert interp.reserve() == 7
    interp.delete_thread_state(t)


def test_after_fork(interp):
    # S-FORK-1: other allocated slots freed in index order on top of the freelist; seq kept.
    threads = [registered(interp) for _ in range(4)]      # slots 7, 6, 5, 4
    interp.attach(threads[1])
    interp.unregister(threads[3])
    interp.after_fork(threads[2])
    snap = interp.snapshot()
    assert snap.freelist == (7, 6, 4, 3, 2, 1, 0)
    assert snap.slots[6].seq == 1 and not snap.slots[6].allocated
    assert snap.threads[threads[0]] == STALE and snap.threads[threads[2]] == 5
    goal = interp.advance()
    interp.quiescent_state(threads[2])
    assert interp.poll(threads[2], goal) is False          # the stale seq holds it back


def _register(i, t):
    i.register(t, i.reserve())


def _attached(i, t):
    _register(i, t)
    i.attach(t)


# (name, setup that leaves a legal state, the misuse, the error it must raise)
MISUSE_CASES = [
    ("attach unregistered", lambda i, t: None, lambda i, t: i.attach(t),
     errors.NotRegisteredError),
    ("detach while detached", _register, lambda i, t: i.detach(t), errors.NotAttachedError),
    ("attach twice", _attached, lambda i, t: i.attach(t), errors.AlreadyAttachedError),
    ("unregister attached", _attached, lambda i, t: i.unregister(t),
     errors.StillAttachedError),
    ("register out of range", lambda i, t: i.reserve(), lambda i, t: i.register(t, 8),
     errors.IndexOutOfRangeError),
    ("register negative index", lambda i, t: i.reserve(), lambda i, t: i.register(t, -1),
     errors.IndexOutOfRangeError),
    ("register a free slot", lambda i, t: i.reserve(), lambda i, t: i.register(t, 0),
     errors.SlotNotReservedError),
    ("register twice", lambda i, t: (_register(i, t), i.reserve()),
     lambda i, t: i.register(t, 6), errors.AlreadyRegisteredError),
    ("delete registered", _register, lambda i, t: i.delete_thread_state(t),
     errors.StillRegisteredError),
    ("set sequences after growth", lambda i, t: i.reserve(), lambda i, t: i.set_sequences(5, 5),
     errors.NotFreshError),
    ("even sequence", lambda i, t: None, lambda i, t: i.set_sequences(4, 1),
     errors.BadSequenceError),
    ("rd_seq after wr_seq", lambda i, t: None, lambda i, t: i.set_sequences(5, 7),
     errors.BadSequenceError),
    ("goal outside 64 bits", _register, lambda i, t: i.poll(t, 1 << 64),
     errors.BadSequenceError),
    ("unknown thread state", lambda i, t: None, lambda i, t: i.attach(12345),
     errors.UnknownThreadStateError),
    ("poll after fini", lambda i, t: (_register(i, t), i.fini()), lambda i, t: i.poll(t, 1),
     errors.StaleSlotError),
]


@pytest.mark.parametrize("setup, misuse, error", [c[1:] for c in MISUSE_CASES],
                         ids=[c[0] for c in MISUSE_CASES])
def test_misuse_is_rejected_and_changes_nothing(interp, setup, misuse, error):
    t = interp.new_thread_state()
    setup(interp, t)
    before = interp.snapshot()
    with pytest.raises(error) as info:
        misuse(interp, t)
    assert isinstance(info.value, errors.QsbrMisuseError)
    assert str(info.value)                      # a message a person can read
    assert interp.snapshot() == before


def test_register_slot_owned_by_another(interp):
    t, u = interp.new_thread_state(), interp.new_thread_state()
    index = interp.reserve()
    interp.register(t, index)
    before = interp.snapshot()
    with pytest.raises(errors.SlotOwnedError):
        interp.register(u, index)
    assert interp.snapshot() == before
