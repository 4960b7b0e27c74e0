// Unit tests of every function of the port and every fact family (S-...), one OS thread.
#include <stdlib.h>
#include <string.h>

#include "qsbr.h"
#include "harness.h"

#define H(t)    ((qsbr_api_tstate *)(void *)(t))
#define I(i)    ((qsbr_api_interp *)(void *)(i))
#define IMPL(t) ((_PyThreadStateImpl *)(void *)(t))

static int64_t
slot_of(qsbr_api_tstate *t)
{
    int64_t index = -9;
    qsbr_api_tstate_slot(t, &index);
    return index;
}

// A thread state with a slot, through the checked API (reserve + register).
static qsbr_api_tstate *
registered(qsbr_api_interp *interp)
{
    qsbr_api_tstate *t = qsbr_api_tstate_new(interp);
    int64_t index = qsbr_api_reserve(interp);
    if (t == NULL || index < 0 || qsbr_api_register(t, index) != QSBR_OK) {
        abort();
    }
    return t;
}

static void
release(qsbr_api_tstate *t)
{
    int64_t index;
    if (qsbr_api_tstate_slot(t, &index) == QSBR_OK && index >= 0) {
        (void)qsbr_api_detach(t);
        if (qsbr_api_unregister(t) != QSBR_OK) {
            abort();
        }
    }
    if (qsbr_api_tstate_delete(t) != QSBR_OK) {
        abort();
    }
}

static void
test_constants(void)
{
    CHECK_EQ_U64(QSBR_OFFLINE, 0);
    CHECK_EQ_U64(QSBR_INITIAL, 1);
    CHECK_EQ_U64(QSBR_INCR, 2);
    PyInterpreterState *interp = PyInterpreterState_New();
    CHECK_EQ_U64(interp->qsbr.wr_seq, QSBR_INITIAL);
    CHECK_EQ_U64(interp->qsbr.rd_seq, QSBR_INITIAL);
    CHECK(interp->qsbr.array == NULL);
    CHECK_EQ_I64(interp->qsbr.size, 0);
    CHECK(interp->qsbr.freelist == NULL);
    PyInterpreterState_Delete(interp);
}

static void
test_wrap_safe_compare(void)
{
    const uint64_t top = UINT64_MAX;  // 2^64 - 1, odd
    CHECK(QSBR_LT(1, 3));
    CHECK(!QSBR_LT(3, 3));
    CHECK(QSBR_LEQ(3, 3));
    CHECK(!QSBR_LEQ(5, 3));
    // Across the wrap a plain `<` is wrong; the macros are not (S-SEQ-3).
    CHECK(QSBR_LT(top, 1));
    CHECK(!(top < 1));
    CHECK(QSBR_LT(top - 2, top));
    CHECK(!QSBR_LT(1, top));
    CHECK(QSBR_LEQ(top, 1));
    CHECK(qsbr_api_lt(top, 1) && qsbr_api_leq(top, 1) && !qsbr_api_lt(1, top));
}

static void
test_advance_wraps(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    CHECK_EQ_I64(qsbr_api_set_sequences(interp, UINT64_MAX - 2, UINT64_MAX - 2), QSBR_OK);
    CHECK_EQ_U64(qsbr_api_advance(interp), UINT64_MAX);       // S-ADV-1: returns the new value
    CHECK_EQ_U64(qsbr_api_advance(interp), 1);                // S-SEQ-3/4: 2^64-1 -> 1
    CHECK_EQ_U64(qsbr_api_shared_current(interp), 1);
    qsbr_api_tstate *t = registered(interp);
    CHECK_EQ_I64(qsbr_api_attach(t), QSBR_OK);
    bool reached = false;
    CHECK_EQ_I64(qsbr_api_poll(t, 1, &reached), QSBR_OK);
    CHECK(reached);                                           // rd_seq caught up across the wrap
    CHECK_EQ_I64(qsbr_api_poll(t, 3, &reached), QSBR_OK);
    CHECK(!reached);
    release(t);
    qsbr_api_interp_delete(interp);
}

static void
test_set_sequences_hook(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    CHECK_EQ_I64(qsbr_api_set_sequences(interp, 4, 1), QSBR_E_BAD_SEQUENCE);
    CHECK_EQ_I64(qsbr_api_set_sequences(interp, 5, 7), QSBR_E_BAD_SEQUENCE);
    CHECK_EQ_I64(qsbr_api_set_sequences(interp, 7, 5), QSBR_OK);
    qsbr_api_tstate *t = registered(interp);
    CHECK_EQ_I64(qsbr_api_set_sequences(interp, 9, 9), QSBR_E_NOT_FRESH);
    CHECK_EQ_U64(qsbr_api_shared_current(interp), 7);
    release(t);
    qsbr_api_interp_delete(interp);
}

static void
test_layout(void)
{
    // S-SLOT-2: also pinned at compile time by qsbr_layout.c; printed here for the log.
    long n = qsbr_api_layout_count();
    CHECK(n >= 12);
    for (long i = 0; i < n; i++) {
        printf("    layout[%d]: %-58s = %ld\n", qsbr_api_profile, qsbr_api_layout_name(i),
               qsbr_api_layout(qsbr_api_layout_name(i)));
    }
    CHECK_EQ_I64(qsbr_api_layout("sizeof(struct _qsbr_pad)"), 64);
#if QSBR_DEFERRALS
    CHECK_EQ_I64(qsbr_api_layout("sizeof(struct _qsbr_thread_state)"), 40);
    CHECK_EQ_I64(qsbr_api_layout("offsetof(struct _qsbr_thread_state, allocated)"), 28);
#else
    CHECK_EQ_I64(qsbr_api_layout("sizeof(struct _qsbr_thread_state)"), 64);
    CHECK_EQ_I64(qsbr_api_layout("offsetof(struct _qsbr_thread_state, allocated)"), 49);
#endif
#if QSBR_ALIGNED_ARRAY
    CHECK_EQ_I64(qsbr_api_layout("sizeof(struct _qsbr_shared)"), 56);
    CHECK_EQ_I64(qsbr_api_layout("offsetof(struct _qsbr_shared, array_raw)"), 24);
#else
    CHECK_EQ_I64(qsbr_api_layout("sizeof(struct _qsbr_shared)"), 48);
    CHECK_EQ_I64(qsbr_api_layout("offsetof(struct _qsbr_shared, array_raw)"), -1);
#endif
    CHECK_EQ_I64(qsbr_api_layout("no such field"), -1);
}

static void
test_reserve_order_and_growth(void)
{
    PyInterpreterState *interp = PyInterpreterState_New();
    // S-SLOT-3 + S-FREE-2: 0 -> 8, then 7, 6, ..., 0; the 9th grows to 16 and returns 15.
    for (int64_t expect = 7; expect >= 0; expect--) {
        CHECK_EQ_I64(_Py_qsbr_reserve(interp), expect);
        CHECK_EQ_I64(interp->qsbr.size, 8);
    }
    CHECK_EQ_I64(_Py_qsbr_reserve(interp), 15);
    CHECK_EQ_I64(interp->qsbr.size, 16);
    for (int64_t expect = 14; expect >= 8; expect--) {
        CHECK_EQ_I64(_Py_qsbr_reserve(interp), expect);
    }
    CHECK_EQ_I64(_Py_qsbr_reserve(interp), 31);
    CHECK_EQ_I64(interp->qsbr.size, 32);
    // S-FREE-1: pop marks allocated and sets the back pointer, leaves seq alone.
    struct _qsbr_thread_state *s = &interp->qsbr.array[31].qsbr;
    CHECK(s->allocated && s->shared == &interp->qsbr && s->freelist_next == NULL);
    CHECK(s->tstate == NULL && s->seq == 0);
    CHECK(_Py_qsbr_reserve(interp) == 30);
    PyInterpreterState_Delete(interp);
}

static void
test_growth_repoints_and_copies(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    PyInterpreterState *raw = (PyInterpreterState *)(void *)interp;
    qsbr_api_tstate *t[9];
    for (int i = 0; i < 8; i++) {
        t[i] = registered(interp);
    }
    CHECK_EQ_I64(qsbr_api_attach(t[3]), QSBR_OK);
    (void)qsbr_api_advance(interp);
#if QSBR_DEFERRALS
    uint64_t goal;
    CHECK_EQ_I64(qsbr_api_deferred_advance(t[5], &goal), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_deferred_advance(t[5], &goal), QSBR_OK);
#endif
    struct _qsbr_pad *old_array = raw->qsbr.array;
    uint64_t seq3 = IMPL(t[3])->qsbr->seq;
    t[8] = registered(interp);                            // growth to 16
    CHECK(raw->qsbr.array != old_array);
    CHECK_EQ_I64(raw->qsbr.size, 16);
    for (int i = 0; i < 9; i++) {
        // S-SLOT-3: every registered thread state points at its slot in the new array.
        int64_t index = slot_of(t[i]);
        CHECK(index >= 0);
        CHECK(IMPL(t[i])->qsbr == &raw->qsbr.array[index].qsbr);
        CHECK(raw->qsbr.array[index].qsbr.tstate == &IMPL(t[i])->base);
    }
    CHECK_EQ_I64(slot_of(t[0]), 7);
    CHECK_EQ_I64(slot_of(t[8]), 15);
    CHECK_EQ_U64(IMPL(t[3])->qsbr->seq, seq3);           // copied byte for byte
#if QSBR_DEFERRALS
    CHECK_EQ_I64(IMPL(t[5])->qsbr->deferrals, 2);        // S-DEF-3: growth copies the count
#endif
    for (int i = 0; i < 9; i++) {
        release(t[i]);
    }
    qsbr_api_interp_delete(interp);
}

static void
test_unregister_lifo(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    PyInterpreterState *raw = (PyInterpreterState *)(void *)interp;
    qsbr_api_tstate *a = registered(interp), *b = registered(interp), *c = registered(interp);
    CHECK_EQ_I64(slot_of(a), 7);
    CHECK_EQ_I64(slot_of(b), 6);
    CHECK_EQ_I64(slot_of(c), 5);
    CHECK_EQ_I64(qsbr_api_unregister(a), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_unregister(c), QSBR_OK);
    // S-UNREG-1: cleared fields; S-FREE-3: pushed on the head.
    struct _qsbr_thread_state *s7 = &raw->qsbr.array[7].qsbr;
    CHECK(!s7->allocated && s7->tstate == NULL && s7->seq == 0);
    CHECK(IMPL(a)->qsbr == NULL);
    CHECK(raw->qsbr.freelist == &raw->qsbr.array[5].qsbr);
    CHECK_EQ_I64(qsbr_api_reserve(interp), 5);
    CHECK_EQ_I64(qsbr_api_reserve(interp), 7);
    CHECK_EQ_I64(qsbr_api_reserve(interp), 4);
    CHECK_EQ_I64(qsbr_api_tstate_delete(a), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_tstate_delete(c), QSBR_OK);
    release(b);
    qsbr_api_interp_delete(interp);
}

static void
test_reserve_out_of_memory(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    PyInterpreterState *raw = (PyInterpreterState *)(void *)interp;
    long live = qsbr_api_mem_live_blocks();
    qsbr_api_mem_fail_next(1);
    CHECK_EQ_I64(qsbr_api_reserve(interp), -1);             // S-FREE-4
    CHECK(raw->qsbr.array == NULL && raw->qsbr.size == 0 && raw->qsbr.freelist == NULL);
    CHECK_EQ_I64(qsbr_api_mem_live_blocks(), live);
    CHECK_EQ_I64(qsbr_api_reserve(interp), 7);              // next reserve is normal
    for (int i = 0; i < 7; i++) {
        (void)qsbr_api_reserve(interp);
    }
    struct _qsbr_pad *before = raw->qsbr.array;
    qsbr_api_mem_fail_next(1);
    CHECK_EQ_I64(qsbr_api_reserve(interp), -1);             // failed growth: nothing changes
    CHECK(raw->qsbr.array == before && raw->qsbr.size == 8 && raw->qsbr.freelist == NULL);
    CHECK_EQ_I64(qsbr_api_reserve(interp), 15);
    qsbr_api_interp_delete(interp);
    CHECK_EQ_I64(qsbr_api_mem_live_blocks(), live);
}

static void
test_attach_detach_quiescent(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    qsbr_api_tstate *t = registered(interp);
    struct _qsbr_thread_state *s = IMPL(t)->qsbr;
    CHECK_EQ_U64(s->seq, 0);
    CHECK_EQ_I64(qsbr_api_attach(t), QSBR_OK);              // S-ATTACH-1
    CHECK_EQ_U64(s->seq, 1);
    (void)qsbr_api_advance(interp);
    (void)qsbr_api_advance(interp);
    CHECK_EQ_U64(s->seq, 1);
    CHECK_EQ_I64(qsbr_api_quiescent_state(t), QSBR_OK);     // S-QS-1
    CHECK_EQ_U64(s->seq, 5);
    CHECK_EQ_I64(qsbr_api_detach(t), QSBR_OK);              // S-DETACH-1
    CHECK_EQ_U64(s->seq, 0);
    CHECK_EQ_I64(qsbr_api_quiescent_state(t), QSBR_OK);     // legal while detached
    CHECK_EQ_U64(s->seq, 5);
    CHECK_EQ_I64(qsbr_api_detach(t), QSBR_OK);
    release(t);
    qsbr_api_interp_delete(interp);
}

static void
test_deferred_batching(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    qsbr_api_tstate *t = registered(interp);
#if QSBR_DEFERRALS
    uint64_t goal = 0;
    // S-DEF-1: calls 1..9 return wr_seq + 2 without advancing, call 10 advances.
    for (int i = 1; i <= 9; i++) {
        CHECK_EQ_I64(qsbr_api_deferred_advance(t, &goal), QSBR_OK);
        CHECK_EQ_U64(goal, 3);
        CHECK_EQ_U64(qsbr_api_shared_current(interp), 1);
        CHECK_EQ_I64(IMPL(t)->qsbr->deferrals, i);
    }
    CHECK_EQ_I64(qsbr_api_deferred_advance(t, &goal), QSBR_OK);
    CHECK_EQ_U64(goal, 3);
    CHECK_EQ_U64(qsbr_api_shared_current(interp), 3);
    CHECK_EQ_I64(IMPL(t)->qsbr->deferrals, 0);
    // S-DEF-3: the count stays in the slot across unregister and a new owner.
    CHECK_EQ_I64(qsbr_api_deferred_advance(t, &goal), QSBR_OK);
    int64_t index = slot_of(t);
    CHECK_EQ_I64(qsbr_api_unregister(t), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_reserve(interp), index);
    CHECK_EQ_I64(qsbr_api_register(t, index), QSBR_OK);
    CHECK_EQ_I64(IMPL(t)->qsbr->deferrals, 1);
    uint64_t next;
    CHECK_EQ_I64(qsbr_api_shared_next(interp, &next), QSBR_E_UNSUPPORTED);
#else
    uint64_t next = 0;
    bool flag = true;
    // S-DEF-2: shared_next does not advance; should_process reads the flag.
    CHECK_EQ_I64(qsbr_api_shared_next(interp, &next), QSBR_OK);
    CHECK_EQ_U64(next, 3);
    CHECK_EQ_U64(qsbr_api_shared_current(interp), 1);
    CHECK_EQ_I64(qsbr_api_should_process(t, &flag), QSBR_OK);
    CHECK(!flag);
    CHECK_EQ_I64(qsbr_api_set_bookkeeping(t, 3, 4096, 8192, true), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_should_process(t, &flag), QSBR_OK);
    CHECK(flag);
    struct _qsbr_thread_state *s = IMPL(t)->qsbr;
    CHECK(s->deferred_count == 3 && s->deferred_memory == 4096 && s->deferred_page_memory == 8192);
    CHECK_EQ_I64(qsbr_api_deferred_advance(t, &next), QSBR_E_UNSUPPORTED);
#  if QSBR_ALIGNED_ARRAY
    // S-SLOT-2 (3.14.4+): the array is 64-byte aligned inside the over-allocated block.
    PyInterpreterState *raw = (PyInterpreterState *)(void *)interp;
    CHECK((uintptr_t)raw->qsbr.array % 64 == 0);
    CHECK((uintptr_t)raw->qsbr.array - (uintptr_t)raw->qsbr.array_raw < 64);
#  endif
#endif
    release(t);
    qsbr_api_interp_delete(interp);
}

static void
test_poll_and_goal(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    PyInterpreterState *raw = (PyInterpreterState *)(void *)interp;
    qsbr_api_tstate *reader = registered(interp), *writer = registered(interp);
    qsbr_api_tstate *idle = registered(interp);
    bool r = false;
    CHECK_EQ_I64(qsbr_api_attach(reader), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_attach(writer), QSBR_OK);
    uint64_t goal = qsbr_api_advance(interp);               // 3
    CHECK_EQ_U64(goal, 3);
    CHECK_EQ_I64(qsbr_api_goal_reached(writer, goal, &r), QSBR_OK);   // S-GOAL-1: no scan
    CHECK(!r);
    CHECK_EQ_I64(qsbr_api_poll(writer, goal, &r), QSBR_OK);           // S-POLL-1
    CHECK(!r);                                   // both attached at 1 hold rd_seq at 1
    CHECK_EQ_U64(raw->qsbr.rd_seq, 1);
    CHECK_EQ_I64(qsbr_api_quiescent_state(writer), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_poll(writer, goal, &r), QSBR_OK);
    CHECK(!r);                                   // the reader still holds it (S-POLL-2)
    CHECK_EQ_I64(qsbr_api_quiescent_state(reader), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_goal_reached(writer, goal, &r), QSBR_OK);
    CHECK(!r);                                   // goal_reached never scans
    CHECK_EQ_I64(qsbr_api_poll(writer, goal, &r), QSBR_OK);
    CHECK(r);
    CHECK_EQ_U64(raw->qsbr.rd_seq, 3);
    CHECK_EQ_I64(qsbr_api_goal_reached(writer, goal, &r), QSBR_OK);
    CHECK(r);
    // A detached thread never holds reclamation back; with none attached rd_seq reaches wr_seq.
    goal = qsbr_api_advance(interp);
    CHECK_EQ_I64(qsbr_api_detach(reader), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_detach(writer), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_poll(idle, goal, &r), QSBR_OK);
    CHECK(r);
    CHECK_EQ_U64(raw->qsbr.rd_seq, raw->qsbr.wr_seq);
    // rd_seq never moves backwards: a slot that attaches at an old value after a scan
    // cannot exist (attach reads wr_seq), and the CAS only moves forward.
    uint64_t before = raw->qsbr.rd_seq;
    CHECK_EQ_I64(qsbr_api_attach(reader), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_poll(reader, before + 2, &r), QSBR_OK);
    CHECK(!r);
    CHECK_EQ_U64(raw->qsbr.rd_seq, before);
    release(reader);
    release(writer);
    release(idle);
    qsbr_api_interp_delete(interp);
}

static void
test_fini(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    PyInterpreterState *raw = (PyInterpreterState *)(void *)interp;
    long live = qsbr_api_mem_live_blocks();
    qsbr_api_tstate *t = registered(interp);
    (void)qsbr_api_advance(interp);
    CHECK_EQ_I64(qsbr_api_fini(interp), QSBR_OK);                       // S-FINI-1
    CHECK(raw->qsbr.array == NULL && raw->qsbr.size == 0 && raw->qsbr.freelist == NULL);
    CHECK_EQ_U64(raw->qsbr.wr_seq, 3);
    CHECK_EQ_U64(raw->qsbr.rd_seq, 1);
    CHECK_EQ_I64(qsbr_api_mem_live_blocks(), live);
    CHECK_EQ_I64(qsbr_api_attach(t), QSBR_E_STALE_SLOT);                // rejected, no crash
    CHECK_EQ_I64(qsbr_api_unregister(t), QSBR_E_STALE_SLOT);
    CHECK_EQ_I64(qsbr_api_fini(interp), QSBR_OK);                       // harmless twice
    CHECK_EQ_I64(qsbr_api_reserve(interp), 7);                          // starts again
    CHECK_EQ_I64(slot_of(t), QSBR_API_STALE_SLOT);
    CHECK_EQ_I64(qsbr_api_tstate_delete(t), QSBR_OK);
    qsbr_api_interp_delete(interp);
}

static void
test_after_fork_in_process(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    PyInterpreterState *raw = (PyInterpreterState *)(void *)interp;
    qsbr_api_tstate *t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = registered(interp);                      // slots 7, 6, 5, 4
    }
    CHECK_EQ_I64(qsbr_api_attach(t[1]), QSBR_OK);       // slot 6 stays attached at 1
    CHECK_EQ_I64(qsbr_api_attach(t[3]), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_unregister(t[3]), QSBR_E_STILL_ATTACHED);
    CHECK_EQ_I64(qsbr_api_detach(t[3]), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_unregister(t[3]), QSBR_OK);   // freelist: 4, 3, 2, 1, 0
    PyMutex_Lock(&raw->qsbr.mutex);                      // held by a thread "gone" in the child
    CHECK_EQ_I64(qsbr_api_after_fork(t[2]), QSBR_OK);   // S-FORK-1, caller owns slot 5
    // Freed in index order 6, 7 on top of the old freelist: head 7, then 6, then 4, 3, ...
    int64_t expect[] = {7, 6, 4, 3, 2, 1, 0};
    struct _qsbr_thread_state *p = raw->qsbr.freelist;
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        CHECK(p == &raw->qsbr.array[expect[i]].qsbr);
        p = p ? p->freelist_next : NULL;
    }
    CHECK(p == NULL);
    CHECK(!PyMutex_IsLocked(&raw->qsbr.mutex));          // re-initialised
    CHECK_EQ_U64(raw->qsbr.array[6].qsbr.seq, 1);        // stale seq kept
    CHECK(raw->qsbr.array[5].qsbr.allocated);            // caller untouched
    CHECK_EQ_I64(slot_of(t[0]), QSBR_API_STALE_SLOT);
    CHECK_EQ_I64(qsbr_api_attach(t[1]), QSBR_E_STALE_SLOT);
    // The stale seq holds rd_seq back: a port driven without stop-the-world shows it.
    uint64_t goal = qsbr_api_advance(interp);
    bool r = true;
    CHECK_EQ_I64(qsbr_api_poll(t[2], goal, &r), QSBR_OK);
    CHECK(!r);
    CHECK_EQ_I64(qsbr_api_reserve(interp), 7);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_I64(qsbr_api_tstate_delete(t[i]), i == 2 ? QSBR_E_STILL_REGISTERED : QSBR_OK);
    }
    release(t[2]);
    qsbr_api_interp_delete(interp);
}

static void
test_misuse_is_rejected(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    PyInterpreterState *raw = (PyInterpreterState *)(void *)interp;
    qsbr_api_tstate *t = qsbr_api_tstate_new(interp);
    qsbr_api_tstate *u = qsbr_api_tstate_new(interp);
    bool r;
    uint64_t g;
    CHECK_EQ_I64(qsbr_api_attach(t), QSBR_E_NOT_REGISTERED);
    CHECK_EQ_I64(qsbr_api_detach(t), QSBR_E_NOT_REGISTERED);
    CHECK_EQ_I64(qsbr_api_quiescent_state(t), QSBR_E_NOT_REGISTERED);
    CHECK_EQ_I64(qsbr_api_poll(t, 3, &r), QSBR_E_NOT_REGISTERED);
    CHECK_EQ_I64(qsbr_api_goal_reached(t, 3, &r), QSBR_E_NOT_REGISTERED);
    CHECK_EQ_I64(qsbr_api_unregister(t), QSBR_E_NOT_REGISTERED);
    CHECK_EQ_I64(qsbr_api_after_fork(t), QSBR_E_NOT_REGISTERED);
    CHECK_EQ_I64(qsbr_api_register(t, 0), QSBR_E_INDEX_OUT_OF_RANGE);  // no array yet
    int64_t index = qsbr_api_reserve(interp);
    CHECK_EQ_I64(qsbr_api_register(t, 8), QSBR_E_INDEX_OUT_OF_RANGE);
    CHECK_EQ_I64(qsbr_api_register(t, -1), QSBR_E_INDEX_OUT_OF_RANGE);
    CHECK_EQ_I64(qsbr_api_register(t, 0), QSBR_E_SLOT_NOT_RESERVED);
    CHECK_EQ_I64(qsbr_api_register(t, index), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_register(t, index), QSBR_E_ALREADY_REGISTERED);
    CHECK_EQ_I64(qsbr_api_register(u, index), QSBR_E_SLOT_OWNED);
    CHECK_EQ_I64(qsbr_api_detach(t), QSBR_E_NOT_ATTACHED);
    CHECK_EQ_I64(qsbr_api_attach(t), QSBR_OK);
    uint64_t seq = IMPL(t)->qsbr->seq;
    CHECK_EQ_I64(qsbr_api_attach(t), QSBR_E_ALREADY_ATTACHED);
    CHECK_EQ_U64(IMPL(t)->qsbr->seq, seq);                  // unchanged
    CHECK_EQ_I64(qsbr_api_unregister(t), QSBR_E_STILL_ATTACHED);
    CHECK_EQ_I64(qsbr_api_tstate_delete(t), QSBR_E_STILL_REGISTERED);
    CHECK(raw->qsbr.array[index].qsbr.tstate == &IMPL(t)->base);
#if QSBR_DEFERRALS
    CHECK_EQ_I64(qsbr_api_deferred_advance(u, &g), QSBR_E_NOT_REGISTERED);
#else
    CHECK_EQ_I64(qsbr_api_should_process(u, &r), QSBR_E_NOT_REGISTERED);
    (void)g;
#endif
    CHECK(strcmp(qsbr_api_status_name(QSBR_E_SLOT_OWNED), "SLOT_OWNED") == 0);
    CHECK(strstr(qsbr_api_status_message(QSBR_E_STILL_ATTACHED), "detach") != NULL);
    CHECK(strcmp(qsbr_api_status_name(999), "UNKNOWN") == 0);
    release(t);
    release(u);
    qsbr_api_interp_delete(interp);
}

static void
test_snapshot(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    qsbr_api_tstate *a = registered(interp), *b = registered(interp);
    qsbr_api_tstate *loose = qsbr_api_tstate_new(interp);
    CHECK_EQ_I64(qsbr_api_attach(b), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_unregister(a), QSBR_OK);
    int64_t slots_cap, threads_cap;
    qsbr_api_snapshot_capacity(interp, &slots_cap, &threads_cap);
    CHECK_EQ_I64(slots_cap, 8);
    CHECK_EQ_I64(threads_cap, 3);
    qsbr_api_slot slots[8];
    int64_t freelist[8];
    qsbr_api_thread threads[3];
    qsbr_api_snapshot snap;
    CHECK_EQ_I64(qsbr_api_snapshot_read(interp, &snap, slots, freelist, 8, threads, 3), QSBR_OK);
    CHECK_EQ_U64(snap.wr_seq, 1);
    CHECK_EQ_I64(snap.size, 8);
    CHECK_EQ_I64(snap.freelist_len, 7);
    CHECK_EQ_I64(freelist[0], 7);
    CHECK_EQ_I64(freelist[1], 5);
    CHECK(slots[6].allocated && slots[6].owner == b && slots[6].seq == 1);
    CHECK(!slots[7].allocated && slots[7].owner == NULL);
    CHECK_EQ_I64(snap.thread_count, 3);
    CHECK(threads[0].tstate == loose && threads[0].slot == QSBR_API_NO_SLOT);
    CHECK(threads[1].tstate == b && threads[1].slot == 6);
    CHECK_EQ_I64(qsbr_api_snapshot_read(interp, &snap, slots, freelist, 4, threads, 3),
                 QSBR_E_BUFFER_TOO_SMALL);
    CHECK_EQ_I64(qsbr_api_tstate_delete(a), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_tstate_delete(loose), QSBR_OK);
    release(b);
    qsbr_api_interp_delete(interp);
}

static void
test_threadstate_lifecycle(void)
{
    // The CPython-shaped path: PyThreadState_New reserves + registers, Delete unregisters.
    PyInterpreterState *interp = PyInterpreterState_New();
    PyThreadState *main_ts = PyThreadState_New(interp);
    CHECK(IMPL(main_ts)->qsbr == &interp->qsbr.array[7].qsbr);   // main thread owns slot 7
    for (int round = 0; round < 3; round++) {
        PyThreadState *worker = PyThreadState_New(interp);
        CHECK(IMPL(worker)->qsbr == &interp->qsbr.array[6].qsbr);  // reused each time
        _PyThreadState_Attach(worker);
        CHECK(_PyThreadState_GET() == worker);
        CHECK_EQ_U64(IMPL(worker)->qsbr->seq, interp->qsbr.wr_seq);
        uint64_t goal = _Py_qsbr_advance(&interp->qsbr);
        CHECK(!_Py_qsbr_poll(IMPL(worker)->qsbr, goal));
        _Py_qsbr_quiescent_state(IMPL(worker)->qsbr);
        CHECK(_Py_qsbr_poll(IMPL(worker)->qsbr, goal));
        _PyThreadState_Detach(worker);
        CHECK(_PyThreadState_GET() == NULL);
        PyThreadState_Delete(worker);
    }
    PyThreadState_Delete(main_ts);
    PyInterpreterState_Delete(interp);
}

static void
test_mutex_basics(void)
{
    PyMutex m = {0};
    CHECK(!PyMutex_IsLocked(&m));
    PyMutex_Lock(&m);
    CHECK(PyMutex_IsLocked(&m));
    PyMutex_Unlock(&m);
    CHECK(!PyMutex_IsLocked(&m));
    PyMutex_Lock(&m);
    _PyMutex_at_fork_reinit(&m);
    CHECK(!PyMutex_IsLocked(&m));
    PyEvent e = {0};
    CHECK(!PyEvent_WaitTimed(&e, 1000, 0));          // times out
    _PyEvent_Notify(&e);
    CHECK(PyEvent_WaitTimed(&e, -1, 0));
}

static void
test_gh155363_tlbc_failure_after_reserve(void)
{
#if QSBR_TLBC_INDEX
    // gh-155363, replayed on 3.14.7's new_threadstate(): the QSBR slot is reserved, then
    // _Py_ReserveTLBCIndex() fails and only the thread state is freed.
    PyInterpreterState *interp = PyInterpreterState_New();
    PyThreadState *first = PyThreadState_New(interp);           // slot 7 of 8
    struct _qsbr_shared *shared = &interp->qsbr;
    struct _qsbr_thread_state *next_free = shared->freelist;    // slot 6: the next reserve's
    _QsbrStandin_FailNextTLBCReservations(interp, 1);
    CHECK(PyThreadState_New(interp) == NULL);
    // 3.14.7: the slot stays allocated, unowned and off the freelist for good.
    CHECK(next_free->allocated && next_free->tstate == NULL);
    CHECK(shared->freelist != next_free);
    for (struct _qsbr_thread_state *p = shared->freelist; p != NULL; p = p->freelist_next) {
        CHECK(p != next_free);
    }
    PyThreadState *second = PyThreadState_New(interp);
    CHECK(second != NULL);
    PyThreadState_Delete(second);
    PyThreadState_Delete(first);
    PyInterpreterState_Delete(interp);
#endif
}

static void
test_interpreter_delete_unregisters_remaining_threads(void)
{
    // As upstream's zapthreads(): deleting an interpreter deletes its remaining thread states
    // (unregistering them) before _Py_qsbr_fini().  (Under ASan, a leak of the thread states is
    // reported too.)
    PyInterpreterState *interp = PyInterpreterState_New();
    PyThreadState *a = PyThreadState_New(interp), *b = PyThreadState_New(interp);
    CHECK(a != NULL && b != NULL);
    struct _qsbr_shared *shared = &interp->qsbr;
    struct _qsbr_thread_state *sa = ((_PyThreadStateImpl *)a)->qsbr;
    struct _qsbr_thread_state *sb = ((_PyThreadStateImpl *)b)->qsbr;
    CHECK(sa->allocated && sa->tstate == a && sb->allocated && sb->tstate == b);
    _QsbrStandin_ZapThreads(interp);          // what PyInterpreterState_Delete does first
    CHECK(interp->threads.head == NULL);
    CHECK(!sa->allocated && sa->tstate == NULL && !sb->allocated && sb->tstate == NULL);
    CHECK(shared->freelist == sa);            // unregistered head first: a, then b (LIFO)
    CHECK(sa->freelist_next == sb);
    PyInterpreterState_Delete(interp);
}

const test_case unit_tests[] = {
    {"gh155363_tlbc_failure_after_reserve", "S-RES-1 gh-155363",
     test_gh155363_tlbc_failure_after_reserve},
    {"interpreter_delete_unregisters_remaining_threads", "S-UNREG-1 S-FINI-1",
     test_interpreter_delete_unregisters_remaining_threads},
    {"constants_and_fresh_state", "S-SEQ-1 S-SEQ-2", test_constants},
    {"wrap_safe_compare", "S-SEQ-3", test_wrap_safe_compare},
    {"advance_wraps", "S-SEQ-3 S-SEQ-4 S-ADV-1", test_advance_wraps},
    {"set_sequences_hook", "S-SEQ-2", test_set_sequences_hook},
    {"layout", "S-SLOT-1 S-SLOT-2", test_layout},
    {"reserve_order_and_growth", "S-SLOT-3 S-FREE-1 S-FREE-2 S-RES-1", test_reserve_order_and_growth},
    {"growth_repoints_and_copies", "S-SLOT-3 S-DEF-3", test_growth_repoints_and_copies},
    {"unregister_lifo", "S-FREE-3 S-UNREG-1 S-REG-1", test_unregister_lifo},
    {"reserve_out_of_memory", "S-FREE-4", test_reserve_out_of_memory},
    {"attach_detach_quiescent", "S-ATTACH-1 S-DETACH-1 S-QS-1", test_attach_detach_quiescent},
    {"deferred_batching", "S-DEF-1 S-DEF-2 S-DEF-3", test_deferred_batching},
    {"poll_and_goal", "S-GOAL-1 S-POLL-1 S-POLL-2", test_poll_and_goal},
    {"fini", "S-FINI-1", test_fini},
    {"after_fork_in_process", "S-FORK-1", test_after_fork_in_process},
    {"misuse_is_rejected", "asserts-only preconditions", test_misuse_is_rejected},
    {"snapshot", "observable state", test_snapshot},
    {"threadstate_lifecycle", "S-RES-1 S-REG-1 S-UNREG-1", test_threadstate_lifecycle},
    {"mutex_basics", "stand-in", test_mutex_basics},
    {NULL, NULL, NULL},
};
