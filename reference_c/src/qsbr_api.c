// The checked, prefix-only API over the port (see include/qsbr_api.h).
//
// Each check reads the state that the matching upstream assertion reads, at a moment when the
// slot array cannot move: with the thread state pinned (a growth must stop the world first,
// and a pinned thread state holds it off) or with the shared mutex held (a growth holds it).
#include <sched.h>
#include <string.h>

#include "qsbr_pyport.h"
#include "pycore_pymem.h"
#include "pycore_qsbr.h"
#include "pycore_tstate.h"
#include "qsbr_api.h"

const int qsbr_api_profile = QSBR_PROFILE;

#define QSBR_STR_(x) #x
#define QSBR_STR(x) QSBR_STR_(x)

const char *
qsbr_api_version(void)
{
    // The port follows its profile's CPython release range line for line (src/qsbr.c).
    return "qsbr-conformance reference port, QSBR_PROFILE " QSBR_STR(QSBR_PROFILE);
}

void (*qsbr_api_test_after_check)(const char *operation, qsbr_api_tstate *tstate) = NULL;
static uint64_t lock_waits;

uint64_t
qsbr_api_test_lock_waits(void)
{
    return _Py_atomic_load_uint64(&lock_waits);
}

// The checked API's own locks (never upstream's): a thread state's api_mutex serializes every
// operation on it, and the interpreter's api_mutex makes register's and unregister's check and
// operation one step with respect to each other.  Upstream's functions take the QSBR mutex
// themselves, so the check cannot share that hold.  Order: thread state, interpreter, QSBR
// mutex.  Neither detaches while waiting: the caller is not attached here.
//
// They are spin locks (a waiter yields its CPU) released by a plain release store, not
// PyMutex: PyMutex_Unlock is a compare-exchange, a full barrier on x86-64, which would end
// every checked call (attach, quiescent_state, ...) with a fence that upstream's callers do not
// have, and the hardware litmus of the C ABI (harness/cabi_litmus.c) could then not show an
// attach whose store is weaker than seq_cst.  Contention is rare (two OS threads on one thread
// state, or register against unregister), so spinning costs nothing in practice.
static void
api_lock(PyMutex *m)
{
    uint8_t expected = _Py_UNLOCKED;
    if (_Py_atomic_compare_exchange_uint8(&m->_bits, &expected, _Py_LOCKED)) {
        return;
    }
    (void)_Py_atomic_add_uint64(&lock_waits, 1);
    for (;;) {
        while (_Py_atomic_load_uint8_relaxed(&m->_bits) != _Py_UNLOCKED) {
            sched_yield();
        }
        expected = _Py_UNLOCKED;
        if (_Py_atomic_compare_exchange_uint8(&m->_bits, &expected, _Py_LOCKED)) {
            return;
        }
    }
}

static void
api_unlock(PyMutex *m)
{
    _Py_atomic_store_uint8_release(&m->_bits, _Py_UNLOCKED);
}

static void
after_check(const char *operation, _PyThreadStateImpl *t)
{
    void (*hook)(const char *, qsbr_api_tstate *) = qsbr_api_test_after_check;
    if (hook != NULL) {
        hook(operation, (qsbr_api_tstate *)(void *)t);
    }
}

#define INTERP(h)   ((PyInterpreterState *)(void *)(h))
#define TSTATE(h)   ((_PyThreadStateImpl *)(void *)(h))
#define PUBLIC_TSTATE(t)  ((const qsbr_api_tstate *)(const void *)(t))

static const struct {
    const char *name;
    const char *message;
} status_text[QSBR_STATUS_COUNT] = {
    [QSBR_OK] = {"OK", "success"},
    [QSBR_E_NO_MEMORY] = {"NO_MEMORY", "out of memory"},
    [QSBR_E_NOT_REGISTERED] = {"NOT_REGISTERED",
        "the thread state has no QSBR slot (register it first)"},
    [QSBR_E_STALE_SLOT] = {"STALE_SLOT",
        "the thread state's QSBR slot was released by fini or after_fork"},
    [QSBR_E_ALREADY_REGISTERED] = {"ALREADY_REGISTERED",
        "the thread state is already registered to a QSBR slot"},
    [QSBR_E_INDEX_OUT_OF_RANGE] = {"INDEX_OUT_OF_RANGE",
        "the slot index is outside the QSBR array"},
    [QSBR_E_SLOT_NOT_RESERVED] = {"SLOT_NOT_RESERVED",
        "the slot is not reserved (allocated)"},
    [QSBR_E_SLOT_OWNED] = {"SLOT_OWNED",
        "the slot is already registered to another thread state"},
    [QSBR_E_ALREADY_ATTACHED] = {"ALREADY_ATTACHED",
        "attach on a slot that is already attached (seq != 0)"},
    [QSBR_E_NOT_ATTACHED] = {"NOT_ATTACHED",
        "detach on a slot that is already detached (seq == 0)"},
    [QSBR_E_STILL_ATTACHED] = {"STILL_ATTACHED",
        "unregister of a slot that is still attached (detach first)"},
    [QSBR_E_STILL_REGISTERED] = {"STILL_REGISTERED",
        "the thread state still owns a QSBR slot (unregister first)"},
    [QSBR_E_BAD_SEQUENCE] = {"BAD_SEQUENCE",
        "sequences must be odd, with rd_seq at or before wr_seq"},
    [QSBR_E_NOT_FRESH] = {"NOT_FRESH",
        "sequences can only be set before the QSBR array exists"},
    [QSBR_E_CORRUPT] = {"CORRUPT",
        "the QSBR freelist does not link slots of the current array"},
    [QSBR_E_BUFFER_TOO_SMALL] = {"BUFFER_TOO_SMALL",
        "the snapshot buffers are smaller than the state"},
    [QSBR_E_UNSUPPORTED] = {"UNSUPPORTED",
        "the operation is not part of this QSBR profile's API"},
};

const char *
qsbr_api_status_name(int status)
{
    if (status < 0 || status >= QSBR_STATUS_COUNT) {
        return "UNKNOWN";
    }
    return status_text[status].name;
}

const char *
qsbr_api_status_message(int status)
{
    if (status < 0 || status >= QSBR_STATUS_COUNT) {
        return "unknown status";
    }
    return status_text[status].message;
}

bool
qsbr_api_lt(uint64_t a, uint64_t b)
{
    return QSBR_LT(a, b);
}

bool
qsbr_api_leq(uint64_t a, uint64_t b)
{
    return QSBR_LEQ(a, b);
}

// The index that `qsbr` has in the current array, or -1 if it is not one of its slots.
// Compares addresses as integers: a stale pointer may point into a freed block.
static int64_t
index_in_array(struct _qsbr_shared *shared, const struct _qsbr_thread_state *qsbr)
{
    uintptr_t p = (uintptr_t)qsbr;
    uintptr_t lo = (uintptr_t)shared->array;
    uintptr_t bytes = (uintptr_t)shared->size * sizeof(struct _qsbr_pad);
    if (shared->array == NULL || p < lo || p - lo >= bytes
        || (p - lo) % sizeof(struct _qsbr_pad) != 0) {
        return -1;
    }
    return (int64_t)((p - lo) / sizeof(struct _qsbr_pad));
}

// The slot index of `t` as its own pointer designates it (QSBR_API_NO_SLOT/STALE_SLOT).
// The array must be stable: caller pinned `t` or holds the shared mutex.
static int64_t
slot_index_of(_PyThreadStateImpl *t)
{
    if (t->qsbr == NULL) {
        return QSBR_API_NO_SLOT;
    }
    struct _qsbr_shared *shared = &t->base.interp->qsbr;
    int64_t index = index_in_array(shared, t->qsbr);
    if (index < 0 || !t->qsbr->allocated || t->qsbr->tstate != &t->base) {
        return QSBR_API_STALE_SLOT;
    }
    return index;
}

static int
checked_slot(_PyThreadStateImpl *t, struct _qsbr_thread_state **out)
{
    int64_t index = slot_index_of(t);
    if (index == QSBR_API_NO_SLOT) {
        return QSBR_E_NOT_REGISTERED;
    }
    if (index == QSBR_API_STALE_SLOT) {
        return QSBR_E_STALE_SLOT;
    }
    *out = t->qsbr;
    return QSBR_OK;
}

qsbr_api_interp *
qsbr_api_interp_new(void)
{
    return (qsbr_api_interp *)(void *)PyInterpreterState_New();
}

void
qsbr_api_interp_delete(qsbr_api_interp *interp)
{
    PyInterpreterState_Delete(INTERP(interp));
}

int
qsbr_api_set_sequences(qsbr_api_interp *interp, uint64_t wr_seq, uint64_t rd_seq)
{
    struct _qsbr_shared *shared = &INTERP(interp)->qsbr;
    int status = QSBR_OK;
    PyMutex_Lock(&shared->mutex);
    if (shared->size != 0) {
        status = QSBR_E_NOT_FRESH;
    }
    else if (wr_seq % 2 == 0 || rd_seq % 2 == 0 || !QSBR_LEQ(rd_seq, wr_seq)) {
        status = QSBR_E_BAD_SEQUENCE;
    }
    else {
        _Py_atomic_store_uint64(&shared->wr_seq, wr_seq);
        _Py_atomic_store_uint64(&shared->rd_seq, rd_seq);
    }
    PyMutex_Unlock(&shared->mutex);
    return status;
}

qsbr_api_tstate *
qsbr_api_tstate_new(qsbr_api_interp *interp)
{
    return (qsbr_api_tstate *)(void *)_QsbrStandin_ThreadState_Alloc(INTERP(interp));
}

int
qsbr_api_tstate_delete(qsbr_api_tstate *handle)
{
    _PyThreadStateImpl *t = TSTATE(handle);
    struct _qsbr_shared *shared = &t->base.interp->qsbr;
    api_lock(&t->api_mutex);
    PyMutex_Lock(&shared->mutex);
    int64_t index = slot_index_of(t);
    PyMutex_Unlock(&shared->mutex);
    api_unlock(&t->api_mutex);
    if (index >= 0) {
        return QSBR_E_STILL_REGISTERED;
    }
    _QsbrStandin_ThreadState_Free(&t->base);
    return QSBR_OK;
}

int64_t
qsbr_api_reserve(qsbr_api_interp *interp)
{
    return _Py_qsbr_reserve(INTERP(interp));
}

int
qsbr_api_register(qsbr_api_tstate *handle, int64_t index)
{
    _PyThreadStateImpl *t = TSTATE(handle);
    PyInterpreterState *interp = t->base.interp;
    struct _qsbr_shared *shared = &interp->qsbr;
    int status = QSBR_OK;

    api_lock(&t->api_mutex);
    api_lock(&interp->api_mutex);
    PyMutex_Lock(&shared->mutex);
    int64_t current = slot_index_of(t);
    if (current >= 0) {
        status = QSBR_E_ALREADY_REGISTERED;
    }
    else if (current == QSBR_API_STALE_SLOT) {
        status = QSBR_E_STALE_SLOT;
    }
    else if (index < 0 || index >= shared->size) {
        status = QSBR_E_INDEX_OUT_OF_RANGE;
    }
    else if (!shared->array[index].qsbr.allocated) {
        status = QSBR_E_SLOT_NOT_RESERVED;
    }
    else if (shared->array[index].qsbr.tstate != NULL) {
        status = QSBR_E_SLOT_OWNED;
    }
    PyMutex_Unlock(&shared->mutex);

    if (status == QSBR_OK) {
        after_check("register", t);
        _Py_qsbr_register(t, interp, index);
    }
    api_unlock(&interp->api_mutex);
    api_unlock(&t->api_mutex);
    return status;
}

int
qsbr_api_unregister(qsbr_api_tstate *handle)
{
    _PyThreadStateImpl *t = TSTATE(handle);
    struct _qsbr_shared *shared = &t->base.interp->qsbr;
    struct _qsbr_thread_state *qsbr;

    api_lock(&t->api_mutex);
    api_lock(&t->base.interp->api_mutex);
    PyMutex_Lock(&shared->mutex);
    int status = checked_slot(t, &qsbr);
    if (status == QSBR_OK && _Py_atomic_load_uint64(&qsbr->seq) != QSBR_OFFLINE) {
        status = QSBR_E_STILL_ATTACHED;
    }
    PyMutex_Unlock(&shared->mutex);

    if (status == QSBR_OK) {
        after_check("unregister", t);
        _Py_qsbr_unregister(&t->base);
    }
    api_unlock(&t->base.interp->api_mutex);
    api_unlock(&t->api_mutex);
    return status;
}

// Run `body` on the slot of a pinned thread state, after the checks every slot operation shares.
#define WITH_PINNED_SLOT(handle, qsbr, body)                    \
    do {                                                        \
        _PyThreadStateImpl *t_ = TSTATE(handle);                \
        struct _qsbr_thread_state *qsbr;                        \
        api_lock(&t_->api_mutex);                               \
        _QsbrStandin_ThreadState_Pin(&t_->base);                \
        int status_ = checked_slot(t_, &qsbr);                  \
        if (status_ == QSBR_OK) {                               \
            body                                                \
        }                                                       \
        _QsbrStandin_ThreadState_Unpin(&t_->base);              \
        api_unlock(&t_->api_mutex);                         \
        return status_;                                         \
    } while (0)

int
qsbr_api_attach(qsbr_api_tstate *handle)
{
    WITH_PINNED_SLOT(handle, qsbr, {
        if (_Py_atomic_load_uint64(&qsbr->seq) != QSBR_OFFLINE) {
            status_ = QSBR_E_ALREADY_ATTACHED;
        }
        else {
            _Py_qsbr_attach(qsbr);
        }
    });
}

int
qsbr_api_detach(qsbr_api_tstate *handle)
{
    WITH_PINNED_SLOT(handle, qsbr, {
        if (_Py_atomic_load_uint64(&qsbr->seq) == QSBR_OFFLINE) {
            status_ = QSBR_E_NOT_ATTACHED;
        }
        else {
            _Py_qsbr_detach(qsbr);
        }
    });
}

int
qsbr_api_quiescent_state(qsbr_api_tstate *handle)
{
    WITH_PINNED_SLOT(handle, qsbr, {
        _Py_qsbr_quiescent_state(qsbr);
    });
}

int
qsbr_api_poll(qsbr_api_tstate *handle, uint64_t goal, bool *result)
{
    WITH_PINNED_SLOT(handle, qsbr, {
        *result = _Py_qsbr_poll(qsbr, goal);
    });
}

int
qsbr_api_goal_reached(qsbr_api_tstate *handle, uint64_t goal, bool *result)
{
    WITH_PINNED_SLOT(handle, qsbr, {
        *result = _Py_qbsr_goal_reached(qsbr, goal);
    });
}

uint64_t
qsbr_api_advance(qsbr_api_interp *interp)
{
    return _Py_qsbr_advance(&INTERP(interp)->qsbr);
}

uint64_t
qsbr_api_shared_current(qsbr_api_interp *interp)
{
    return _Py_qsbr_shared_current(&INTERP(interp)->qsbr);
}

#if QSBR_DEFERRALS
int
qsbr_api_deferred_advance(qsbr_api_tstate *handle, uint64_t *goal)
{
    WITH_PINNED_SLOT(handle, qsbr, {
        *goal = _Py_qsbr_deferred_advance(qsbr);
    });
}

int
qsbr_api_shared_next(qsbr_api_interp *interp, uint64_t *goal)
{
    (void)interp, (void)goal;
    return QSBR_E_UNSUPPORTED;
}

int
qsbr_api_should_process(qsbr_api_tstate *handle, bool *result)
{
    (void)handle, (void)result;
    return QSBR_E_UNSUPPORTED;
}

int
qsbr_api_set_bookkeeping(qsbr_api_tstate *handle, int deferred_count,
                         size_t deferred_memory, size_t deferred_page_memory,
                         bool should_process)
{
    (void)handle, (void)deferred_count, (void)deferred_memory;
    (void)deferred_page_memory, (void)should_process;
    return QSBR_E_UNSUPPORTED;
}
#else
int
qsbr_api_deferred_advance(qsbr_api_tstate *handle, uint64_t *goal)
{
    (void)handle, (void)goal;
    return QSBR_E_UNSUPPORTED;
}

int
qsbr_api_shared_next(qsbr_api_interp *interp, uint64_t *goal)
{
    *goal = _Py_qsbr_shared_next(&INTERP(interp)->qsbr);
    return QSBR_OK;
}

int
qsbr_api_should_process(qsbr_api_tstate *handle, bool *result)
{
    WITH_PINNED_SLOT(handle, qsbr, {
        *result = _Py_qsbr_should_process(qsbr);
    });
}

int
qsbr_api_set_bookkeeping(qsbr_api_tstate *handle, int deferred_count,
                         size_t deferred_memory, size_t deferred_page_memory,
                         bool should_process)
{
    WITH_PINNED_SLOT(handle, qsbr, {
        qsbr->deferred_count = deferred_count;
        qsbr->deferred_memory = deferred_memory;
        qsbr->deferred_page_memory = deferred_page_memory;
        qsbr->should_process = should_process;
    });
}
#endif

int
qsbr_api_fini(qsbr_api_interp *handle)
{
    // CPython finalises when no other thread runs; here the mutex and a stopped world give a
    // driver with other threads the same guarantee.
    PyInterpreterState *interp = INTERP(handle);
    PyMutex_Lock(&interp->qsbr.mutex);
    _PyEval_StopTheWorld(interp);
    _Py_qsbr_fini(interp);
    _PyEval_StartTheWorld(interp);
    PyMutex_Unlock(&interp->qsbr.mutex);
    return QSBR_OK;
}

int
qsbr_api_after_fork(qsbr_api_tstate *handle)
{
    _PyThreadStateImpl *t = TSTATE(handle);
    struct _qsbr_thread_state *qsbr;
    // No lock: in a fork child the mutex may be held by a thread that no longer exists, and
    // after_fork is what re-initialises it.  Only the forking thread runs here.
    int status = checked_slot(t, &qsbr);
    if (status == QSBR_OK) {
        _Py_qsbr_after_fork(t);
    }
    return status;
}

int
qsbr_api_child_after_fork(qsbr_api_tstate *handle)
{
    _PyParkingLot_AfterFork();
    _QsbrStandin_AfterFork(&TSTATE(handle)->base);
    // The checked API's locks may be held by threads that do not exist in the child.
    PyInterpreterState *interp = TSTATE(handle)->base.interp;
    _PyMutex_at_fork_reinit(&interp->api_mutex);
    for (PyThreadState *p = interp->threads.head; p != NULL; p = p->next) {
        _PyMutex_at_fork_reinit(&((_PyThreadStateImpl *)p)->api_mutex);
    }
    return qsbr_api_after_fork(handle);
}

void
qsbr_api_snapshot_capacity(qsbr_api_interp *handle, int64_t *slots, int64_t *threads)
{
    PyInterpreterState *interp = INTERP(handle);
    PyMutex_Lock(&interp->qsbr.mutex);
    *slots = interp->qsbr.size;
    PyMutex_LockFlags(&interp->head_mutex, _Py_LOCK_DONT_DETACH);
    int64_t n = 0;
    for (PyThreadState *p = interp->threads.head; p != NULL; p = p->next) {
        n++;
    }
    PyMutex_Unlock(&interp->head_mutex);
    *threads = n;
    PyMutex_Unlock(&interp->qsbr.mutex);
}

static void
read_slot(const struct _qsbr_thread_state *qsbr, qsbr_api_slot *out)
{
    memset(out, 0, sizeof(*out));
    out->seq = _Py_atomic_load_uint64(&qsbr->seq);
    out->allocated = qsbr->allocated;
    out->owner = PUBLIC_TSTATE(qsbr->tstate);
#if QSBR_DEFERRALS
    out->deferrals = qsbr->deferrals;
#else
    out->deferred_count = qsbr->deferred_count;
    out->deferred_memory = qsbr->deferred_memory;
    out->deferred_page_memory = qsbr->deferred_page_memory;
    out->should_process = qsbr->should_process;
#endif
}

int
qsbr_api_snapshot_read(qsbr_api_interp *handle, qsbr_api_snapshot *out,
                       qsbr_api_slot *slots, int64_t *freelist, int64_t slot_capacity,
                       qsbr_api_thread *threads, int64_t thread_capacity)
{
    PyInterpreterState *interp = INTERP(handle);
    struct _qsbr_shared *shared = &interp->qsbr;
    int status = QSBR_OK;

    PyMutex_Lock(&shared->mutex);
    _PyEval_StopTheWorld(interp);

    memset(out, 0, sizeof(*out));
    out->wr_seq = _Py_atomic_load_uint64(&shared->wr_seq);
    out->rd_seq = _Py_atomic_load_uint64(&shared->rd_seq);
    out->size = shared->size;
    if (shared->size > slot_capacity) {
        status = QSBR_E_BUFFER_TOO_SMALL;
        goto done;
    }
    for (Py_ssize_t i = 0; i < shared->size; i++) {
        read_slot(&shared->array[i].qsbr, &slots[i]);
    }
    // Walk at most `size` links: a longer walk means a cycle or a foreign pointer.
    for (struct _qsbr_thread_state *p = shared->freelist; p != NULL; p = p->freelist_next) {
        int64_t index = index_in_array(shared, p);
        if (index < 0 || out->freelist_len >= shared->size) {
            status = QSBR_E_CORRUPT;
            goto done;
        }
        freelist[out->freelist_len++] = index;
    }
    // Thread states newest first, as the interpreter links them.
    for (PyThreadState *p = interp->threads.head; p != NULL; p = p->next) {
        if (out->thread_count >= thread_capacity) {
            status = QSBR_E_BUFFER_TOO_SMALL;
            goto done;
        }
        threads[out->thread_count].tstate = PUBLIC_TSTATE(p);
        threads[out->thread_count].slot = slot_index_of((_PyThreadStateImpl *)p);
        out->thread_count++;
    }

done:
    _PyEval_StartTheWorld(interp);
    PyMutex_Unlock(&shared->mutex);
    return status;
}

const void *
qsbr_api_shared_address(qsbr_api_interp *interp)
{
    return &INTERP(interp)->qsbr;
}

int
qsbr_api_tstate_slot(qsbr_api_tstate *handle, int64_t *index)
{
    _PyThreadStateImpl *t = TSTATE(handle);
    struct _qsbr_shared *shared = &t->base.interp->qsbr;
    PyMutex_Lock(&shared->mutex);
    *index = slot_index_of(t);
    PyMutex_Unlock(&shared->mutex);
    if (*index == QSBR_API_STALE_SLOT) {
        return QSBR_E_STALE_SLOT;
    }
    return QSBR_OK;
}

void
qsbr_api_mem_fail_next(long count)
{
    _QsbrStandin_Mem_FailNext(count);
}

long
qsbr_api_mem_live_blocks(void)
{
    return _QsbrStandin_Mem_LiveBlocks();
}
