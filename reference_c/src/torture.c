// The concurrency torture (see include/qsbr_torture.h).
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qsbr_pyport.h"
#include "pycore_qsbr.h"
#include "pycore_tstate.h"
#include "qsbr_torture.h"

#define MAGIC_ALIVE     0x51534252414c4956ULL   // "QSBRALIV"
#define MAGIC_DEAD      0xdeaddeaddeaddeadULL
#define QUARANTINE      256                     // freed objects kept poisoned before free()
#define PAYLOAD_WORDS   4

struct tobj {
    uint64_t magic;
    uint64_t pipe_count;                // 0: current or retired; 1: grace period completed
    uint64_t serial;
    uint64_t payload[PAYLOAD_WORDS];    // payload[i] == serial * (i + 1)
    uint64_t retired_at;                // global update count at retire
    uint64_t goal;
    struct tobj *next;
};

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

static unsigned
next_random(unsigned *state)
{
    // xorshift32: cheap, per thread, reproducible from the seed
    unsigned x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x ? x : 0x9e3779b9u;
}

static void
atomic_max(_Atomic uint64_t *target, uint64_t value)
{
    uint64_t seen = atomic_load(target);
    while (value > seen && !atomic_compare_exchange_weak(target, &seen, value)) {
    }
}

static struct tobj *
load_current(struct torture *t)
{
    return _Py_atomic_load_ptr_acquire((void *const *)&t->current);
}

static struct tobj *
new_object(uint64_t serial)
{
    struct tobj *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        abort();
    }
    o->serial = serial;
    for (int i = 0; i < PAYLOAD_WORDS; i++) {
        o->payload[i] = serial * (uint64_t)(i + 1);
    }
    o->magic = MAGIC_ALIVE;
    return o;
}

// A reader's check of one object it reached through the shared pointer while attached.
static void
check_object(struct torture *t, const struct tobj *o)
{
    uint64_t magic = __atomic_load_n(&o->magic, __ATOMIC_RELAXED);
    if (magic == MAGIC_DEAD) {
        atomic_fetch_add(&t->errors_poisoned, 1);
        atomic_store(&t->errors_seen, 1);
        return;
    }
    if (magic != MAGIC_ALIVE) {
        atomic_fetch_add(&t->errors_bad_magic, 1);
        atomic_store(&t->errors_seen, 1);
        return;
    }
    if (__atomic_load_n(&o->pipe_count, __ATOMIC_RELAXED) != 0) {
        atomic_fetch_add(&t->errors_too_old, 1);
        atomic_store(&t->errors_seen, 1);
        return;
    }
    for (int i = 0; i < PAYLOAD_WORDS; i++) {
        if (__atomic_load_n(&o->payload[i], __ATOMIC_RELAXED) != o->serial * (uint64_t)(i + 1)) {
            atomic_fetch_add(&t->errors_bad_magic, 1);
            atomic_store(&t->errors_seen, 1);
            return;
        }
    }
}

static void *
reader_main(void *arg)
{
    struct worker *w = arg;
    struct torture *t = w->t;
    PyThreadState *ts = w->ts;
    _PyThreadState_Attach(ts);
    uint64_t reads = 0;
    while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
        // A read-side section: a pointer taken at its start is used until its end (as a reader
        // walking a structure would), with fresh loads in between and, sometimes, a yield
        // that lets writers run while the pointer is held.  No quiescent state inside.
        const struct tobj *held = load_current(t);
        int burst = 1 + (int)(next_random(&w->rng) % 16);
        for (int i = 0; i < burst; i++) {
            check_object(t, held);
            check_object(t, load_current(t));
            reads += 2;
            if ((next_random(&w->rng) & 7) == 0) {
                sched_yield();
            }
        }
        check_object(t, held);
        reads++;
        if (reads >= 1024) {
            atomic_fetch_add(&t->reads, reads);
            reads = 0;
        }
        unsigned r = next_random(&w->rng) % 64;
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
    check_object(t, load_current(t));
    _PyThreadState_Detach(ts);
    while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
        struct timespec pause = {0, 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    PyThreadState_Delete(ts);
    atomic_fetch_sub(&t->readers_running, 1);
    return NULL;
}

struct quarantine {
    struct tobj *slots[QUARANTINE];
    int next;
};

static void
release(struct quarantine *q, struct tobj *o)
{
    // Poison now, free() later: a reader that still holds the object sees MAGIC_DEAD.
    __atomic_store_n(&o->magic, MAGIC_DEAD, __ATOMIC_RELAXED);
    free(q->slots[q->next]);
    q->slots[q->next] = o;
    q->next = (q->next + 1) % QUARANTINE;
}

static void *
writer_main(void *arg)
{
    struct worker *w = arg;
    struct torture *t = w->t;
    const qsbr_torture_config *c = t->config;
    PyThreadState *ts = w->ts;
    _PyThreadState_Attach(ts);
    struct tobj *retired_head = NULL, *retired_tail = NULL;
    uint64_t pending = 0;
    struct quarantine q = {{NULL}, 0};

    while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
        uint64_t serial = atomic_fetch_add(&t->updates, 1) + 1;
        struct tobj *fresh = new_object(serial);
        struct tobj *old = __atomic_exchange_n(&t->current, fresh, __ATOMIC_ACQ_REL);

        // Retire the unlinked object with a goal (S-SAFE-1).
        struct _qsbr_thread_state *qsbr = ((_PyThreadStateImpl *)ts)->qsbr;
        if (c->batching && (next_random(&w->rng) & 1)) {
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
        old->next = NULL;
        if (retired_tail) {
            retired_tail->next = old;
        }
        else {
            retired_head = old;
        }
        retired_tail = old;
        pending++;
        atomic_max(&t->max_pending, pending);

        // The writer holds no pointer across updates: a quiescent state for itself.
        _Py_qsbr_quiescent_state(qsbr);
        atomic_fetch_add_explicit(&w->quiescent, 1, memory_order_relaxed);

        // Free what the poll allows, oldest first.  A goal from shared_next/deferred_advance
        // may not have been advanced to yet: advance once when the list grows long, as
        // CPython's allocator does when it processes its deferred frees.
        if (pending > 64 && !_Py_qsbr_poll(qsbr, retired_head->goal)) {
            (void)_Py_qsbr_advance(qsbr->shared);
        }
        while (retired_head && _Py_qsbr_poll(qsbr, retired_head->goal)) {
            struct tobj *o = retired_head;
            retired_head = o->next;
            if (!retired_head) {
                retired_tail = NULL;
            }
            // The grace period is over: a reader still inside a section would see this.
            __atomic_store_n(&o->pipe_count, 1, __ATOMIC_RELAXED);
            uint64_t now = atomic_load(&t->updates);
            atomic_max(&t->gp_latency_max, now - o->retired_at);
            atomic_fetch_add(&t->gp_latency_sum, now - o->retired_at);
            release(&q, o);
            atomic_fetch_add(&t->frees, 1);
            pending--;
        }
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
    while (retired_head) {
        struct tobj *o = retired_head;
        retired_head = o->next;
        release(&q, o);
    }
    for (int i = 0; i < QUARANTINE; i++) {
        free(q.slots[i]);
    }
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
        int n = 1 + (int)(next_random(&w->rng) % 48);
        int made = 0;
        for (; made < n; made++) {
            batch[made] = PyThreadState_New(t->interp);
            if (batch[made] == NULL) {
                break;
            }
            if (next_random(&w->rng) % 4 == 0) {
                // A short-lived thread that reads: it holds the shared object for a moment.
                _PyThreadState_Attach(batch[made]);
                const struct tobj *held = load_current(t);
                check_object(t, held);
                sched_yield();
                check_object(t, held);
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

static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
    t->current = new_object(0);

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
    double start = now_seconds(), last_progress = start, last_free_change = start;
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
        double now = now_seconds();
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
    collect(t, stats, now_seconds() - start);
    stats->array_size = t->interp->qsbr.size;

    free(t->current);
    PyInterpreterState_Delete(t->interp);
    free(t), free(threads), free(workers);
    if (qsbr_torture_errors(stats)) {
        return 1;
    }
    return stats->frees ? 0 : 2;
}
