// The port's concurrency torture (see qsbr_torture.h): the torture core (torture_core.h) in
// its port flavour, which calls the port's _Py_qsbr_* functions directly.
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qsbr_pyport.h"
#include "pycore_qsbr.h"
#include "pycore_tstate.h"
#include "qsbr_torture.h"

struct torture {
    const qsbr_torture_config *config;
    PyInterpreterState *interp;
    struct tobj *current;               // atomic
    _Atomic int stop;
    _Atomic int errors_seen;
    _Atomic int readers_running;
    _Atomic uint64_t reads, updates, frees, churn_cycles, max_pending;
    _Atomic uint64_t gp_latency_max, gp_latency_sum;
    _Atomic uint64_t errors_poisoned, errors_bad_magic, errors_too_old, errors_stall;
};

struct worker {
    struct torture *t;
    unsigned rng;
    int index;
    PyThreadState *ts;      // created by qsbr_torture_run() before the thread starts
    // Quiescent points passed (a quiescent state, a detach, a churn batch done): the stall
    // check counts these, not time, so a machine too busy to run a thread is not a stall.
    _Atomic uint64_t quiescent;
};

// The flavour: relaxed atomic reads and poisoning (the port's TSan build checks the port's
// own accesses; the C ABI driver is the one that makes the object's reads plain).
// TC_WORKER: the core's functions use its rng, so it is included once the struct is complete.
#define TC_WORKER struct worker
#define TC_LOAD_WORD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define TC_STORE_WORD(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#include "torture_core.h"

// ---------------------------------------------------------------------------------------------
// The core's hooks

static const struct tobj *
tc_load_current(struct worker *w)
{
    return _Py_atomic_load_ptr_acquire((void *const *)&w->t->current);
}

static void
tc_bad_object(struct worker *w, const struct tobj *o, enum tc_verdict verdict, uint64_t magic,
              const char *how)
{
    (void)o, (void)magic, (void)how;
    struct torture *t = w->t;
    atomic_fetch_add(verdict == TC_RECLAIMED ? &t->errors_poisoned
                     : verdict == TC_TOO_OLD ? &t->errors_too_old : &t->errors_bad_magic, 1);
    atomic_store(&t->errors_seen, 1);
}

static struct _qsbr_thread_state *
qsbr_of(struct worker *w)
{
    // Read again at each use: a growth moves the slot (and re-points the thread state).
    return ((_PyThreadStateImpl *)w->ts)->qsbr;
}

static bool
tc_poll(struct worker *w, uint64_t goal)
{
    return _Py_qsbr_poll(qsbr_of(w), goal);
}

static void
tc_advance(struct worker *w)
{
    (void)_Py_qsbr_advance(qsbr_of(w)->shared);
}

static void
tc_reclaimed(struct worker *w, struct tobj *o)
{
    struct torture *t = w->t;
    uint64_t now = atomic_load(&t->updates);
    tc_atomic_max(&t->gp_latency_max, now - o->retired_at);
    atomic_fetch_add(&t->gp_latency_sum, now - o->retired_at);
    atomic_fetch_add(&t->frees, 1);
}

// ---------------------------------------------------------------------------------------------
// The threads

static void *
reader_main(void *arg)
{
    struct worker *w = arg;
    struct torture *t = w->t;
    PyThreadState *ts = w->ts;
    _PyThreadState_Attach(ts);
    uint64_t reads = 0;
    while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
        reads += tc_read_section(w, 16, false, NULL);
        if (reads >= 1024) {
            atomic_fetch_add(&t->reads, reads);
            reads = 0;
        }
        unsigned r = tc_random(&w->rng) % 64;
        if (r < 40) {
            _Py_qsbr_quiescent_state(((_PyThreadStateImpl *)ts)->qsbr);
            atomic_fetch_add_explicit(&w->quiescent, 1, memory_order_relaxed);
        }
        else if (r < 42) {
            // A blocking call: detached, so it must not hold reclamation back.
            _PyThreadState_Detach(ts);
            atomic_fetch_add_explicit(&w->quiescent, 1, memory_order_relaxed);
            sched_yield();
            _PyThreadState_Attach(ts);
        }
        _Py_HandlePending(ts);
    }
    _PyThreadState_Detach(ts);
    PyThreadState_Delete(ts);
    atomic_fetch_add(&t->reads, reads);
    atomic_fetch_sub(&t->readers_running, 1);
    return NULL;
}

static void *
idle_main(void *arg)
{
    // Attaches, reads once, detaches and stays detached until the end, like a thread blocked
    // in I/O.  A detach that leaves `seq` set would hold every later goal back (a stall).
    struct worker *w = arg;
    struct torture *t = w->t;
    PyThreadState *ts = w->ts;
    _PyThreadState_Attach(ts);
    tc_check_object(w, tc_load_current(w), NULL);
    _PyThreadState_Detach(ts);
    while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
        struct timespec pause = {0, 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    PyThreadState_Delete(ts);
    atomic_fetch_sub(&t->readers_running, 1);
    return NULL;
}

static void *
writer_main(void *arg)
{
    struct worker *w = arg;
    struct torture *t = w->t;
    const qsbr_torture_config *c = t->config;
    PyThreadState *ts = w->ts;
    _PyThreadState_Attach(ts);
    struct tc_retired retired;
    memset(&retired, 0, sizeof(retired));

    while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
        uint64_t serial = atomic_fetch_add(&t->updates, 1) + 1;
        struct tobj *fresh = tc_new_object(serial);
        struct tobj *old = __atomic_exchange_n(&t->current, fresh, __ATOMIC_ACQ_REL);

        // Retire the unlinked object with a goal (S-SAFE-1).
        struct _qsbr_thread_state *qsbr = qsbr_of(w);
        if (c->batching && (tc_random(&w->rng) & 1)) {
#if QSBR_DEFERRALS
            old->goal = _Py_qsbr_deferred_advance(qsbr);
#else
            old->goal = _Py_qsbr_shared_next(qsbr->shared);
#endif
        }
        else {
            old->goal = _Py_qsbr_advance(qsbr->shared);
        }
        old->retired_at = serial;
        tc_retire(&retired, old);
        tc_atomic_max(&t->max_pending, retired.pending);

        // The writer holds no pointer across updates: a quiescent state for itself.
        _Py_qsbr_quiescent_state(qsbr);
        atomic_fetch_add_explicit(&w->quiescent, 1, memory_order_relaxed);

        // Free what the poll allows, oldest first (advancing once past 64 pending).
        tc_reclaim(w, &retired, 64);
        _Py_HandlePending(ts);
        if (c->max_updates && serial >= c->max_updates) {
            atomic_store(&t->stop, 1);
        }
    }
    // At the end, free what is left once no reader runs any more.  (Waiting for the grace
    // periods instead could hang forever on a broken port, which the stall check reports.)
    _PyThreadState_Detach(ts);
    while (atomic_load(&t->readers_running) > 0) {
        sched_yield();
    }
    (void)tc_drain(&retired);
    PyThreadState_Delete(ts);
    return NULL;
}

static void *
churn_main(void *arg)
{
    struct worker *w = arg;
    struct torture *t = w->t;
    PyThreadState *batch[48];
    while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
        int n = 1 + (int)(tc_random(&w->rng) % 48);
        int made = 0;
        for (; made < n; made++) {
            batch[made] = PyThreadState_New(t->interp);
            if (batch[made] == NULL) {
                break;
            }
            if (tc_random(&w->rng) % 4 == 0) {
                // A short-lived thread that reads: it holds the shared object for a moment.
                _PyThreadState_Attach(batch[made]);
                (void)tc_hold_across_yield(w, NULL);
                _Py_HandlePending(batch[made]);
                _PyThreadState_Detach(batch[made]);
            }
        }
        while (made > 0) {
            PyThreadState_Delete(batch[--made]);
        }
        atomic_fetch_add(&t->churn_cycles, (uint64_t)n);
        atomic_fetch_add_explicit(&w->quiescent, 1, memory_order_relaxed);
    }
    atomic_fetch_sub(&t->readers_running, 1);
    return NULL;
}

// Updates without a free, on top of stall_ms without one, that make a stall (S-SAFE-2), and
// the quiescent points every reader, writer and churner must have passed meanwhile.
#define STALL_UPDATES 1000
#define STALL_QUIESCENT 8

// Thread i's role: readers, then writers, then churners, then the idle thread.
static void *(*role_of(const qsbr_torture_config *config, int i, int nthreads))(void *)
{
    if (i < config->readers) {
        return reader_main;
    }
    if (i < config->readers + config->writers) {
        return writer_main;
    }
    return i < nthreads - 1 ? churn_main : idle_main;
}

static int
all_passed_quiescent_points(const qsbr_torture_config *config, struct worker *workers,
                            const uint64_t *since, int nthreads)
{
    for (int i = 0; i < nthreads; i++) {
        if (role_of(config, i, nthreads) != idle_main
            && atomic_load(&workers[i].quiescent) - since[i] < STALL_QUIESCENT) {
            return 0;
        }
    }
    return 1;
}

static void
collect(struct torture *t, qsbr_torture_stats *s, double elapsed)
{
    s->reads = atomic_load(&t->reads);
    s->updates = atomic_load(&t->updates);
    s->frees = atomic_load(&t->frees);
    s->churn_cycles = atomic_load(&t->churn_cycles);
    s->max_pending = atomic_load(&t->max_pending);
    s->gp_latency_max = atomic_load(&t->gp_latency_max);
    s->gp_latency_sum = atomic_load(&t->gp_latency_sum);
    s->errors_poisoned = atomic_load(&t->errors_poisoned);
    s->errors_bad_magic = atomic_load(&t->errors_bad_magic);
    s->errors_too_old = atomic_load(&t->errors_too_old);
    s->errors_stall = atomic_load(&t->errors_stall);
    s->elapsed = elapsed;
}

void
qsbr_torture_default_config(qsbr_torture_config *config)
{
    memset(config, 0, sizeof(*config));
    config->readers = 4;
    config->writers = 2;
    config->churners = 1;
    config->seconds = 2.0;
    config->batching = 1;
    config->seed = 1;
    config->stall_ms = 2000;
}

uint64_t
qsbr_torture_errors(const qsbr_torture_stats *s)
{
    return s->errors_poisoned + s->errors_bad_magic + s->errors_too_old + s->errors_stall;
}

int
qsbr_torture_run(const qsbr_torture_config *config, qsbr_torture_stats *stats)
{
    memset(stats, 0, sizeof(*stats));
    if (config->readers < 0 || config->writers < 1 || config->churners < 0
        || (config->seconds <= 0 && config->max_updates == 0)) {
        return -1;
    }
    struct torture *t = calloc(1, sizeof(*t));
    int nthreads = config->readers + config->writers + config->churners + 1;
    pthread_t *threads = calloc((size_t)nthreads, sizeof(*threads));
    struct worker *workers = calloc((size_t)nthreads, sizeof(*workers));
    if (t == NULL || threads == NULL || workers == NULL) {
        free(t), free(threads), free(workers);
        return -1;
    }
    t->config = config;
    // Every thread that reads objects: readers, churners (their short-lived thread states read
    // too) and the idle thread.  Writers free their leftovers only once all of them are gone.
    t->readers_running = config->readers + config->churners + 1;
    t->interp = PyInterpreterState_New();
    t->current = tc_new_object(0);

    int started = 0;
    for (int i = 0; i < nthreads; i++) {
        void *(*entry)(void *) = role_of(config, i, nthreads);
        workers[i] = (struct worker){t, (config->seed + 1) * 2654435761u + (unsigned)i * 40503u,
                                     i, NULL, 0};
        if (entry != churn_main) {
            // Created here, in order, before any churn: reader 0 owns slot 7, reader 1 slot 6,
            // and so on, so a scan that misses one end of the array misses a reader.
            workers[i].ts = PyThreadState_New(t->interp);
            if (workers[i].ts == NULL) {
                abort();
            }
        }
    }
    for (int i = 0; i < nthreads; i++) {
        void *(*entry)(void *) = role_of(config, i, nthreads);
        if (pthread_create(&threads[i], NULL, entry, &workers[i]) != 0) {
            // Threads never started will not count themselves out or delete their state.
            for (int j = i; j < nthreads; j++) {
                if (role_of(config, j, nthreads) != writer_main) {
                    atomic_fetch_sub(&t->readers_running, 1);
                }
                if (workers[j].ts != NULL) {
                    PyThreadState_Delete(workers[j].ts);
                }
            }
            atomic_store(&t->stop, 1);
            break;
        }
        started++;
    }

    // The monitor: progress, stall detection, the clock.
    double start = tc_now_seconds(), last_progress = start, last_free_change = start;
    uint64_t last_frees = 0, updates_at_last_free = 0;
    uint64_t *quiescent_at_last_free = calloc((size_t)nthreads, sizeof(uint64_t));
    if (quiescent_at_last_free == NULL) {
        abort();
    }
    int stall_ms = config->stall_ms > 0 ? config->stall_ms : 2000;
    int in_stall = 0;
    while (!atomic_load(&t->stop)) {
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
        double now = tc_now_seconds();
        uint64_t frees = atomic_load(&t->frees);
        uint64_t updates = atomic_load(&t->updates);
        if (frees != last_frees) {
            last_frees = frees;
            last_free_change = now;
            updates_at_last_free = updates;
            for (int i = 0; i < nthreads; i++) {
                quiescent_at_last_free[i] = atomic_load(&workers[i].quiescent);
            }
            in_stall = 0;
        }
        // A stall (S-SAFE-2) is counted in events, not in time alone: nothing was freed
        // while the writers made STALL_UPDATES updates and every thread that may hold a goal
        // back passed STALL_QUIESCENT quiescent points.  A thread the machine is too busy to
        // run (it may hold a goal back, legitimately) is not a stall.
        else if (!in_stall && (now - last_free_change) * 1000 > stall_ms
                 && updates - updates_at_last_free >= STALL_UPDATES
                 && all_passed_quiescent_points(config, workers, quiescent_at_last_free,
                                                nthreads)) {
            atomic_fetch_add(&t->errors_stall, 1);
            atomic_store(&t->errors_seen, 1);
            in_stall = 1;
        }
        if (config->progress && config->progress_ms > 0
            && (now - last_progress) * 1000 >= config->progress_ms) {
            last_progress = now;
            collect(t, stats, now - start);
            config->progress(stats, config->progress_arg);
        }
        if ((config->seconds > 0 && now - start >= config->seconds)
            || (config->stop_on_error && atomic_load(&t->errors_seen))) {
            atomic_store(&t->stop, 1);
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    free(quiescent_at_last_free);
    collect(t, stats, tc_now_seconds() - start);
    stats->array_size = t->interp->qsbr.size;

    free(t->current);
    PyInterpreterState_Delete(t->interp);
    free(t), free(threads), free(workers);
    if (qsbr_torture_errors(stats)) {
        return 1;
    }
    return stats->frees ? 0 : 2;
}
