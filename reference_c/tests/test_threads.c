// Tests with real threads: growth under stop-the-world while other threads attach, detach,
// advance and poll; and the replay of gh-115103 (unregister racing with a growth).
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qsbr.h"
#include "qsbr_api.h"
#include "harness.h"

#define IMPL(t) ((_PyThreadStateImpl *)(void *)(t))

static void
sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

struct stress {
    PyInterpreterState *interp;
    int iterations;
    _Atomic int failures;
    _Atomic int workers_running;
};

static void *
stress_worker(void *arg)
{
    struct stress *st = arg;
    PyThreadState *ts = PyThreadState_New(st->interp);
    if (ts == NULL) {
        atomic_fetch_add(&st->failures, 1);
        return NULL;
    }
    _PyThreadState_Attach(ts);
    struct _qsbr_shared *shared = &st->interp->qsbr;
    uint64_t goal = 0;
    for (int i = 0; i < st->iterations; i++) {
        struct _qsbr_thread_state *q = IMPL(ts)->qsbr;
        uint64_t seq = _Py_atomic_load_uint64(&q->seq);
        if (seq == 0 || (seq & 1) == 0) {
            atomic_fetch_add(&st->failures, 1);          // attached slot must hold an odd seq
        }
        switch (i % 5) {
            case 0:
                goal = _Py_qsbr_advance(shared);
                break;
            case 1:
#if QSBR_DEFERRALS
                goal = _Py_qsbr_deferred_advance(q);
#else
                goal = _Py_qsbr_shared_next(shared);
#endif
                break;
            case 2:
                (void)_Py_qsbr_poll(q, goal);
                break;
            case 3:
                _Py_qsbr_quiescent_state(q);
                break;
            default:
                // Blocking call: detach and re-attach, as around a blocking syscall.
                _PyThreadState_Detach(ts);
                sched_yield();
                _PyThreadState_Attach(ts);
                break;
        }
        uint64_t rd = _Py_atomic_load_uint64(&shared->rd_seq);
        uint64_t wr = _Py_atomic_load_uint64(&shared->wr_seq);
        if ((wr & 1) == 0 || QSBR_LT(wr, rd)) {
            atomic_fetch_add(&st->failures, 1);
        }
        _Py_HandlePending(ts);  // safepoint: lets a growth stop the world
    }
    _PyThreadState_Detach(ts);
    PyThreadState_Delete(ts);
    atomic_fetch_sub(&st->workers_running, 1);
    return NULL;
}

static void *
churn_worker(void *arg)
{
    // Creates and deletes batches of thread states: the array grows past 8, 16 and 32 while
    // the stress workers run, and freed slots are reused.
    struct stress *st = arg;
    PyThreadState *batch[40];
    // At least one whole batch, however the threads are scheduled (a loaded machine may
    // finish the workers first): 40 thread states at once grow the array to 64.
    do {
        int n = 0;
        for (; n < 40; n++) {
            batch[n] = PyThreadState_New(st->interp);
            if (batch[n] == NULL) {
                atomic_fetch_add(&st->failures, 1);
                break;
            }
        }
        while (n > 0) {
            PyThreadState_Delete(batch[--n]);
        }
    } while (atomic_load(&st->workers_running) > 0);
    return NULL;
}

static void
test_threads_stress(void)
{
    enum { WORKERS = 4, CHURNERS = 2 };
    struct stress st = {.interp = PyInterpreterState_New(), .iterations = 20000};
    atomic_store(&st.workers_running, WORKERS);
    long live = _QsbrStandin_Mem_LiveBlocks();
    pthread_t th[WORKERS + CHURNERS];
    for (int i = 0; i < WORKERS; i++) {
        pthread_create(&th[i], NULL, stress_worker, &st);
    }
    for (int i = 0; i < CHURNERS; i++) {
        pthread_create(&th[WORKERS + i], NULL, churn_worker, &st);
    }
    for (int i = 0; i < WORKERS + CHURNERS; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK_EQ_I64(atomic_load(&st.failures), 0);
    struct _qsbr_shared *shared = &st.interp->qsbr;
    CHECK(shared->size >= 64);                      // grew past 8, 16, 32
    CHECK(shared->wr_seq & 1);
    Py_ssize_t free_count = 0;
    for (struct _qsbr_thread_state *p = shared->freelist; p; p = p->freelist_next) {
        free_count++;
    }
    CHECK_EQ_I64(free_count, shared->size);         // every slot returned
    for (Py_ssize_t i = 0; i < shared->size; i++) {
        CHECK(!shared->array[i].qsbr.allocated && shared->array[i].qsbr.seq == 0);
    }
    PyInterpreterState_Delete(st.interp);
    CHECK_EQ_I64(_QsbrStandin_Mem_LiveBlocks(), live);
}

struct gh115103 {
    PyInterpreterState *interp;
    PyThreadState *victim;
    Py_ssize_t reserved;
};

static void *
grow_thread(void *arg)
{
    struct gh115103 *g = arg;
    g->reserved = _Py_qsbr_reserve(g->interp);      // freelist empty: must grow
    return NULL;
}

static void *
unregister_thread(void *arg)
{
    struct gh115103 *g = arg;
    PyThreadState_Delete(g->victim);                // blocks on the mutex held by the growth
    return NULL;
}

static int
stop_requested(PyInterpreterState *interp)
{
    PyMutex_LockFlags(&interp->head_mutex, _Py_LOCK_DONT_DETACH);
    int requested = interp->stoptheworld.requested;
    PyMutex_Unlock(&interp->head_mutex);
    return requested;
}

static void
test_gh115103_unregister_during_growth(void)
{
    // gh-115103: _Py_qsbr_unregister() used tstate->qsbr read before taking the mutex.  Here
    // the unregistering thread queues on the mutex while a growth (holding it) waits for the
    // world to stop; the growth then moves the array.  The fixed code frees the slot in the new
    // array; the buggy one writes into the freed old array (ASan: heap-use-after-free) and
    // leaves the new slot allocated.
    struct gh115103 g = {.interp = PyInterpreterState_New()};
    PyThreadState *holder = PyThreadState_New(g.interp);     // slot 7, kept attached below
    g.victim = PyThreadState_New(g.interp);                  // slot 6
    Py_ssize_t victim_index = (struct _qsbr_pad *)IMPL(g.victim)->qsbr - g.interp->qsbr.array;
    PyThreadState *fill[6];
    for (int i = 0; i < 6; i++) {
        fill[i] = PyThreadState_New(g.interp);               // freelist now empty
    }
    _PyThreadState_Attach(holder);       // an attached thread delays the stop-the-world

    pthread_t grower, unregisterer;
    pthread_create(&grower, NULL, grow_thread, &g);
    while (!stop_requested(g.interp)) {
        sleep_us(100);
    }
    pthread_create(&unregisterer, NULL, unregister_thread, &g);
    // Wait until the unregistering thread is parked on the QSBR mutex.
    while (!(_Py_atomic_load_uint8(&g.interp->qsbr.mutex._bits) & _Py_HAS_PARKED)) {
        sleep_us(100);
    }
    _Py_HandlePending(holder);           // park: the world stops, the array grows
    pthread_join(grower, NULL);
    pthread_join(unregisterer, NULL);

    struct _qsbr_shared *shared = &g.interp->qsbr;
    CHECK_EQ_I64(g.reserved, 15);
    CHECK_EQ_I64(shared->size, 16);
    CHECK(!shared->array[victim_index].qsbr.allocated);
    CHECK(shared->array[victim_index].qsbr.tstate == NULL);
    CHECK(shared->freelist == &shared->array[victim_index].qsbr);
    CHECK(IMPL(holder)->qsbr == &shared->array[7].qsbr);

    _PyThreadState_Detach(holder);
    PyThreadState_Delete(holder);
    for (int i = 0; i < 6; i++) {
        PyThreadState_Delete(fill[i]);
    }
    PyInterpreterState_Delete(g.interp);
}

// The checked API's promise (qsbr_api.h): operations on one thread state are serialized.
// register and unregister check under the QSBR mutex and then call upstream's function, which
// takes the mutex again; a hook between the two runs a conflicting call from another thread and
// waits until that call has either returned or is waiting for the call in progress (counted by
// qsbr_api_test_lock_waits(): no timing).  A conflicting call that returns QSBR_OK in between is
// the race; the hook then undoes it, so that the operation's own asserts do not abort the run.
struct api_race {
    const char *operation;        // the operation the hook interposes on
    qsbr_api_interp *interp;
    qsbr_api_tstate *handle;      // the thread state the operation is on
    qsbr_api_tstate *other;       // register: another thread state
    int64_t index;                // register: the index both try to register
    int kind;                     // 0: attach(handle); 1: register(other, index)
    _Atomic int done;
    int result;
    int raced;                    // the conflicting call succeeded between check and operation
    pthread_t thread;
};

static struct api_race *the_race;

static void *
api_race_call(void *arg)
{
    struct api_race *r = arg;
    r->result = r->kind == 0 ? qsbr_api_attach(r->handle) : qsbr_api_register(r->other, r->index);
    atomic_store(&r->done, 1);
    return NULL;
}

static void
api_race_hook(const char *operation, qsbr_api_tstate *handle)
{
    struct api_race *r = the_race;
    if (r == NULL || handle != r->handle || strcmp(operation, r->operation) != 0) {
        return;
    }
    the_race = NULL;                                   // once
    uint64_t waits = qsbr_api_test_lock_waits();
    pthread_create(&r->thread, NULL, api_race_call, r);
    while (!atomic_load(&r->done) && qsbr_api_test_lock_waits() == waits) {
        sched_yield();
    }
    if (atomic_load(&r->done) && r->result == QSBR_OK) {
        r->raced = 1;
        if (r->kind == 0) {
            (void)qsbr_api_detach(r->handle);          // unregister's precondition again
        }
        else {
            (void)qsbr_api_unregister(r->other);       // frees the slot: reserve takes it back
            CHECK_EQ_I64(qsbr_api_reserve(r->interp), r->index);
        }
    }
}

static void
test_api_unregister_is_serialized_with_attach(void)
{
    qsbr_api_interp *interp = qsbr_api_interp_new();
    qsbr_api_tstate *t = qsbr_api_tstate_new(interp);
    CHECK_EQ_I64(qsbr_api_register(t, qsbr_api_reserve(interp)), QSBR_OK);
    struct api_race r = {.operation = "unregister", .interp = interp, .handle = t, .kind = 0};
    the_race = &r;
    qsbr_api_test_after_check = api_race_hook;
    CHECK_EQ_I64(qsbr_api_unregister(t), QSBR_OK);
    qsbr_api_test_after_check = NULL;
    pthread_join(r.thread, NULL);
    if (r.raced) {
        fprintf(stderr, "    attach succeeded between unregister's check and its operation\n");
    }
    CHECK(!r.raced);
    CHECK_EQ_I64(r.result, QSBR_E_NOT_REGISTERED);     // it ran after the unregister
    CHECK_EQ_I64(qsbr_api_tstate_delete(t), QSBR_OK);
    qsbr_api_interp_delete(interp);
}

static void
test_api_register_is_serialized(void)
{
    // Two thread states registering the same reserved slot: only one may own it.
    qsbr_api_interp *interp = qsbr_api_interp_new();
    qsbr_api_tstate *t = qsbr_api_tstate_new(interp), *u = qsbr_api_tstate_new(interp);
    int64_t index = qsbr_api_reserve(interp);
    struct api_race r = {.operation = "register", .interp = interp, .handle = t, .other = u,
                         .index = index, .kind = 1};
    the_race = &r;
    qsbr_api_test_after_check = api_race_hook;
    CHECK_EQ_I64(qsbr_api_register(t, index), QSBR_OK);
    qsbr_api_test_after_check = NULL;
    pthread_join(r.thread, NULL);
    if (r.raced) {
        fprintf(stderr, "    a second register of the slot succeeded between register's check "
                "and its operation\n");
    }
    CHECK(!r.raced);
    CHECK_EQ_I64(r.result, QSBR_E_SLOT_OWNED);
    CHECK_EQ_I64(qsbr_api_unregister(t), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_tstate_delete(t), QSBR_OK);
    CHECK_EQ_I64(qsbr_api_tstate_delete(u), QSBR_OK);
    qsbr_api_interp_delete(interp);
}

const test_case thread_tests[] = {
    {"threads_stress_with_growth", "S-SLOT-3 S-POLL-2 S-SAFE-2 S-RES-1", test_threads_stress},
    {"gh115103_unregister_during_growth", "S-UNREG-1 gh-115103",
     test_gh115103_unregister_during_growth},
    {"api_unregister_is_serialized_with_attach", "checked API",
     test_api_unregister_is_serialized_with_attach},
    {"api_register_is_serialized", "checked API", test_api_register_is_serialized},
    {NULL, NULL, NULL},
};
