// Stand-in for the thread-state and interpreter machinery of CPython's Python/pystate.c that
// QSBR depends on: attach/detach (which call _Py_qsbr_attach/_Py_qsbr_detach), thread-state
// creation and deletion (which reserve/register/unregister), and a real per-interpreter
// stop-the-world, ported from upstream's stop_the_world()/start_the_world():
//   - the requester counts every other thread state of the interpreter;
//   - detached threads are switched atomically to "suspended" (they cannot attach until the
//     world restarts: _PyThreadState_Attach() parks on their state);
//   - attached threads get the "please stop" eval-breaker bit and park themselves at their
//     next safepoint (_Py_HandlePending), detaching QSBR while parked;
//   - the requester waits on an event, re-scanning every millisecond, until the count is zero.
#include <assert.h>
#include <sched.h>
#include <stdlib.h>

#include "qsbr_pyport.h"
#include "pycore_lock.h"
#include "pycore_qsbr.h"
#include "pycore_tstate.h"

#define HEAD_LOCK(interp)   PyMutex_LockFlags(&(interp)->head_mutex, _Py_LOCK_DONT_DETACH)
#define HEAD_UNLOCK(interp) PyMutex_Unlock(&(interp)->head_mutex)

static _Thread_local PyThreadState *current_tstate;

PyThreadState *
_PyThreadState_GET(void)
{
    return current_tstate;
}

PyInterpreterState *
PyInterpreterState_New(void)
{
    PyInterpreterState *interp = calloc(1, sizeof(*interp));
    if (interp == NULL) {
        return NULL;
    }
    // CPython's _PyRuntimeState_INIT / _PyInterpreterState_INIT static initialiser (S-SEQ-2).
    interp->qsbr.wr_seq = QSBR_INITIAL;
    interp->qsbr.rd_seq = QSBR_INITIAL;
    return interp;
}

static void remove_threadstate(PyThreadState *tstate);

// Does `tstate` own a slot of the current array?  (After _Py_qsbr_fini() its pointer is stale.)
static int
owns_live_slot(_PyThreadStateImpl *tstate)
{
    struct _qsbr_shared *shared = &tstate->base.interp->qsbr;
    uintptr_t p = (uintptr_t)tstate->qsbr, lo = (uintptr_t)shared->array;
    return tstate->qsbr != NULL && shared->array != NULL && p >= lo
           && p < lo + (uintptr_t)shared->size * sizeof(struct _qsbr_pad)
           && tstate->qsbr->allocated && tstate->qsbr->tstate == &tstate->base;
}

// As upstream's zapthreads(): every remaining thread state is deleted, which unregisters its
// QSBR state.
void
_QsbrStandin_ZapThreads(PyInterpreterState *interp)
{
    PyThreadState *tstate;
    while ((tstate = interp->threads.head) != NULL) {
        assert(tstate->state != _Py_THREAD_ATTACHED && "thread state still active");
        remove_threadstate(tstate);
        if (owns_live_slot((_PyThreadStateImpl *)tstate)) {
            _Py_qsbr_unregister(tstate);
        }
        free(tstate);
    }
}

void
PyInterpreterState_Delete(PyInterpreterState *interp)
{
    // As upstream: the thread states go (zapthreads) before _Py_qsbr_fini() frees the array.
    _QsbrStandin_ZapThreads(interp);
    _Py_qsbr_fini(interp);
    free(interp);
}

#if QSBR_TLBC_INDEX
int32_t
_Py_ReserveTLBCIndex(PyInterpreterState *interp)
{
    int left = _Py_atomic_load_int(&interp->tlbc_failures);
    while (left > 0) {
        if (_Py_atomic_compare_exchange_int(&interp->tlbc_failures, &left, left - 1)) {
            return -1;
        }
    }
    return __atomic_fetch_add(&interp->next_tlbc_index, 1, __ATOMIC_SEQ_CST);
}

void
_QsbrStandin_FailNextTLBCReservations(PyInterpreterState *interp, int count)
{
    _Py_atomic_store_int(&interp->tlbc_failures, count < 0 ? 0 : count);
}
#endif

static void
decrement_stoptheworld_countdown(struct _stoptheworld_state *stw)
{
    assert(stw->thread_countdown > 0);
    if (--stw->thread_countdown == 0) {
        _PyEvent_Notify(&stw->stop_event);
    }
}

// Link a detached thread state into its interpreter (caller holds HEAD_LOCK).
static void
add_threadstate(PyInterpreterState *interp, PyThreadState *tstate)
{
    tstate->interp = interp;
    // A thread state created during a stop-the-world starts suspended, so the requester's
    // count stays right and it cannot run until the world restarts (as upstream).
    tstate->state = interp->stoptheworld.requested ? _Py_THREAD_SUSPENDED
                                                   : _Py_THREAD_DETACHED;
    tstate->next = interp->threads.head;
    if (tstate->next != NULL) {
        tstate->next->prev = tstate;
    }
    interp->threads.head = tstate;
}

static void
remove_threadstate(PyThreadState *tstate)
{
    PyInterpreterState *interp = tstate->interp;
    HEAD_LOCK(interp);
    if (tstate->prev) {
        tstate->prev->next = tstate->next;
    }
    else {
        interp->threads.head = tstate->next;
    }
    if (tstate->next) {
        tstate->next->prev = tstate->prev;
    }
    if (tstate->state != _Py_THREAD_SUSPENDED) {
        // Any ongoing stop-the-world request should not wait for us because
        // our thread is getting deleted.
        if (interp->stoptheworld.requested) {
            decrement_stoptheworld_countdown(&interp->stoptheworld);
        }
    }
    HEAD_UNLOCK(interp);
}

PyThreadState *
_QsbrStandin_ThreadState_Alloc(PyInterpreterState *interp)
{
    _PyThreadStateImpl *tstate = calloc(1, sizeof(*tstate));
    if (tstate == NULL) {
        return NULL;
    }
    HEAD_LOCK(interp);
    add_threadstate(interp, &tstate->base);
    HEAD_UNLOCK(interp);
    return &tstate->base;
}

void
_QsbrStandin_ThreadState_Free(PyThreadState *tstate)
{
    remove_threadstate(tstate);
    free(tstate);
}

PyThreadState *
PyThreadState_New(PyInterpreterState *interp)
{
    // As upstream's new_threadstate(): reserve before linking (so a growth's stop-the-world
    // does not wait for a thread state that cannot run yet), register after.
    _PyThreadStateImpl *tstate = calloc(1, sizeof(*tstate));
    if (tstate == NULL) {
        return NULL;
    }
    Py_ssize_t qsbr_idx = _Py_qsbr_reserve(interp);
    if (qsbr_idx < 0) {
        free(tstate);
        return NULL;
    }
#if QSBR_TLBC_INDEX
    // 3.14.7's order: the TLBC index after the QSBR slot, and on failure only the thread state
    // is freed, so the reserved slot stays allocated and unowned for good (gh-155363).
    int32_t tlbc_idx = _Py_ReserveTLBCIndex(interp);
    if (tlbc_idx < 0) {
        free(tstate);
        return NULL;
    }
#endif
    HEAD_LOCK(interp);
    add_threadstate(interp, &tstate->base);
    HEAD_UNLOCK(interp);
    // Must be called with lock unlocked to avoid lock ordering deadlocks.
    _Py_qsbr_register(tstate, interp, qsbr_idx);
#if QSBR_TLBC_INDEX
    tstate->tlbc_index = tlbc_idx;
#endif
    return &tstate->base;
}

void
PyThreadState_Delete(PyThreadState *tstate)
{
    assert(tstate != current_tstate);
    remove_threadstate(tstate);
    _Py_qsbr_unregister(tstate);
    free(tstate);
}

static int
tstate_try_attach(PyThreadState *tstate)
{
    int expected = _Py_THREAD_DETACHED;
    return _Py_atomic_compare_exchange_int(&tstate->state, &expected, _Py_THREAD_ATTACHED);
}

static void
tstate_set_detached(PyThreadState *tstate, int detached_state)
{
    assert(_Py_atomic_load_int_relaxed(&tstate->state) == _Py_THREAD_ATTACHED);
    _Py_atomic_store_int(&tstate->state, detached_state);
}

static void
tstate_wait_attach(PyThreadState *tstate)
{
    do {
        int expected = _Py_THREAD_SUSPENDED;
        // Wait until we're switched out of SUSPENDED to DETACHED.
        if (_PyParkingLot_Park(&tstate->state, &expected, sizeof(tstate->state),
                               /*timeout=*/-1, NULL, /*detach=*/0) == Py_PARK_AGAIN) {
            // Not suspended but not attachable either: another pin holds it.
            sched_yield();
        }
        // Once we're back in DETACHED we can re-attach
    } while (!tstate_try_attach(tstate));
}

void
_PyThreadState_Attach(PyThreadState *tstate)
{
    assert(current_tstate == NULL && "non-NULL old thread state");
    current_tstate = tstate;
    if (!tstate_try_attach(tstate)) {
        tstate_wait_attach(tstate);
    }
    _Py_qsbr_attach(((_PyThreadStateImpl *)tstate)->qsbr);
}

static void
detach_thread(PyThreadState *tstate, int detached_state)
{
    assert(_Py_atomic_load_int_relaxed(&tstate->state) == _Py_THREAD_ATTACHED);
    assert(tstate == current_tstate);
    _Py_qsbr_detach(((_PyThreadStateImpl *)tstate)->qsbr);
    tstate_set_detached(tstate, detached_state);
    current_tstate = NULL;
}

void
_PyThreadState_Detach(PyThreadState *tstate)
{
    detach_thread(tstate, _Py_THREAD_DETACHED);
}

void
_PyThreadState_Suspend(PyThreadState *tstate)
{
    PyInterpreterState *interp = tstate->interp;
    assert(_Py_atomic_load_int_relaxed(&tstate->state) == _Py_THREAD_ATTACHED);

    HEAD_LOCK(interp);
    int requested = interp->stoptheworld.requested;
    HEAD_UNLOCK(interp);

    if (!requested) {
        // Switch directly to "detached" if there is no active stop-the-world request.
        detach_thread(tstate, _Py_THREAD_DETACHED);
        return;
    }

    // Switch to "suspended" state.
    detach_thread(tstate, _Py_THREAD_SUSPENDED);

    // Decrease the count of remaining threads needing to park.
    HEAD_LOCK(interp);
    decrement_stoptheworld_countdown(&interp->stoptheworld);
    HEAD_UNLOCK(interp);
}

void
_Py_HandlePending(PyThreadState *tstate)
{
    uintptr_t bits = _Py_atomic_load_uintptr_relaxed(&tstate->eval_breaker);
    if (bits & _PY_EVAL_PLEASE_STOP_BIT) {
        _Py_atomic_and_uintptr(&tstate->eval_breaker, ~_PY_EVAL_PLEASE_STOP_BIT);
        _PyThreadState_Suspend(tstate);
        // The attach blocks until the stop-the-world event is complete.
        _PyThreadState_Attach(tstate);
    }
}

void
_QsbrStandin_ThreadState_Pin(PyThreadState *tstate)
{
    if (!tstate_try_attach(tstate)) {
        tstate_wait_attach(tstate);
    }
    // Pinned, the thread state counts as this OS thread's current one, so upstream's
    // assertions in _Py_qsbr_poll() hold for a driver that runs it.
    current_tstate = tstate;
}

void
_QsbrStandin_ThreadState_Unpin(PyThreadState *tstate)
{
    assert(current_tstate == tstate);
    current_tstate = NULL;
    // As upstream's _PyThreadState_Detach(): no lock.  A stop-the-world requester that counted
    // this thread state parks it on its next scan (it rescans every millisecond).  Taking the
    // thread-list lock here would order every caller's accesses with every other caller's, and
    // hide the memory-order bugs of a QSBR operation from ThreadSanitizer.  A release store,
    // not upstream's seq_cst one: the requester's compare-exchange acquires it all the same,
    // and a full barrier here (an xchg on x86-64) would end every checked call with a fence
    // that upstream's callers do not have, hiding from the hardware litmus
    // (harness/cabi_litmus.c) an attach whose store is weaker than seq_cst.
    assert(_Py_atomic_load_int_relaxed(&tstate->state) == _Py_THREAD_ATTACHED);
    _Py_atomic_store_int_release(&tstate->state, _Py_THREAD_DETACHED);
}

void
_QsbrStandin_AfterFork(PyThreadState *survivor)
{
    PyInterpreterState *interp = survivor->interp;
    _PyMutex_at_fork_reinit(&interp->head_mutex);
    _PyMutex_at_fork_reinit(&interp->stoptheworld.mutex);
    interp->stoptheworld.requested = 0;
    interp->stoptheworld.world_stopped = 0;
    interp->stoptheworld.thread_countdown = 0;
    interp->stoptheworld.requester = NULL;
    for (PyThreadState *t = interp->threads.head; t != NULL; t = t->next) {
        if (t != survivor) {
            _Py_atomic_store_int(&t->state, _Py_THREAD_DETACHED);
            _Py_atomic_and_uintptr(&t->eval_breaker, 0);
        }
    }
}

// Try to transition threads atomically from the "detached" state to the
// "suspended" state. Returns true if all threads are suspended.
static bool
park_detached_threads(struct _stoptheworld_state *stw, PyInterpreterState *interp)
{
    int num_parked = 0;
    for (PyThreadState *t = interp->threads.head; t != NULL; t = t->next) {
        int state = _Py_atomic_load_int_relaxed(&t->state);
        if (state == _Py_THREAD_DETACHED) {
            // Atomically transition to "suspended" if in "detached" state.
            if (_Py_atomic_compare_exchange_int(&t->state, &state, _Py_THREAD_SUSPENDED)) {
                num_parked++;
            }
        }
        else if (state == _Py_THREAD_ATTACHED && t != stw->requester) {
            _Py_atomic_or_uintptr(&t->eval_breaker, _PY_EVAL_PLEASE_STOP_BIT);
        }
    }
    stw->thread_countdown -= num_parked;
    assert(stw->thread_countdown >= 0);
    return num_parked > 0 && stw->thread_countdown == 0;
}

void
_PyEval_StopTheWorld(PyInterpreterState *interp)
{
    struct _stoptheworld_state *stw = &interp->stoptheworld;
    PyMutex_Lock(&stw->mutex);

    HEAD_LOCK(interp);
    stw->requested = 1;
    stw->thread_countdown = 0;
    stw->stop_event = (PyEvent){0};  // zero-initialize (unset)
    stw->requester = _PyThreadState_GET();  // may be NULL

    for (PyThreadState *t = interp->threads.head; t != NULL; t = t->next) {
        if (t != stw->requester) {
            // Count all the other threads (we don't wait on ourself).
            stw->thread_countdown++;
        }
    }

    if (stw->thread_countdown == 0) {
        HEAD_UNLOCK(interp);
        stw->world_stopped = 1;
        return;
    }

    for (;;) {
        // Switch threads that are detached to the suspended state
        bool stopped_all_threads = park_detached_threads(stw, interp);
        HEAD_UNLOCK(interp);

        if (stopped_all_threads) {
            break;
        }

        PyTime_t wait_ns = 1000 * 1000;  // 1ms (as upstream)
        if (PyEvent_WaitTimed(&stw->stop_event, wait_ns, /*detach=*/0)) {
            assert(stw->thread_countdown == 0);
            break;
        }

        HEAD_LOCK(interp);
    }
    stw->world_stopped = 1;
}

void
_PyEval_StartTheWorld(PyInterpreterState *interp)
{
    struct _stoptheworld_state *stw = &interp->stoptheworld;
    assert(PyMutex_IsLocked(&stw->mutex));

    HEAD_LOCK(interp);
    stw->requested = 0;
    stw->world_stopped = 0;
    // Switch threads back to the detached state.
    for (PyThreadState *t = interp->threads.head; t != NULL; t = t->next) {
        if (t != stw->requester) {
            assert(_Py_atomic_load_int_relaxed(&t->state) == _Py_THREAD_SUSPENDED);
            _Py_atomic_store_int(&t->state, _Py_THREAD_DETACHED);
            _PyParkingLot_UnparkAll(&t->state);
        }
    }
    stw->requester = NULL;
    HEAD_UNLOCK(interp);
    PyMutex_Unlock(&stw->mutex);
}
