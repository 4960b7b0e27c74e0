// qsbr-bench: the port's QSBR operations beside liburcu-qsbr and the hardware limit.
//
// A harness beside the port (never part of it): it links the port's sources as they are, built
// as a release build (-O2 -DNDEBUG, like CPython's), and measures in one process:
//
//   single thread  each operation three ways, side by side, in interleaved rounds:
//                  "port"  the port's function (CPython's code);
//                  "limit" the same loads, stores and read-modify-writes written inline with no
//                          QSBR around them (what the hardware needs for the operation's
//                          memory effect: the floor any implementation pays);
//                  "urcu"  liburcu-qsbr's counterpart, where one exists.
//   threads        R reader threads pass quiescent states in a loop (each reads the shared
//                  object first) while one writer replaces the object and reclaims the old one:
//                  "gp"      synchronous: advance, then poll until the goal is reached (port) /
//                            synchronize_rcu() (urcu); the grace-period latency, ns;
//                  "reclaim" asynchronous: retire with deferred_advance (3.13) or shared_next +
//                            an advance every 128 items (3.14), process the queue when a 254-item
//                            chunk is full, as CPython's obmalloc.c does (port) / call_rcu() +
//                            rcu_barrier() (urcu); objects reclaimed per second.
//
// Clock: clock_gettime(CLOCK_MONOTONIC), read once per sample of many iterations (each sample is
// calibrated to last >= the target time, 2 ms by default), so its ~20 ns cost is below 0.01 %.
// Many short samples rather than a few long ones: on a shared machine, the best of 15 samples of
// 2 ms is more often a sample that no other process interrupted than the best of 3 of 10 ms.
// rdtsc is not used: the TSC ticks at a constant rate, not the core clock, so it gives no cycle
// counts either, and it needs a calibration that CLOCK_MONOTONIC already does.  Hardware event
// counts (perf_event_open) would be free of noise, but virtual machines like the one this was
// written on expose no PMU, so the bench reports wall time and says how loaded the machine was.
// Against dead-code elimination: every operation touches atomics (never removed), each
// iteration ends with an asm volatile compiler barrier, and the port's extern functions are
// called through the library's own symbols (as CPython calls them); the limit's loops are
// noinline functions.
//
//   contention     C reader threads pass quiescent states in a tight loop (each a load of wr_seq)
//                  while one writer stores to its own line and takes goals with free_delayed()'s
//                  policy: the writer's ns per goal and the readers' ns per quiescent state (each
//                  thread's CPU time), for
//                  N = 1..C (the goal functions under contention; run it on a build with a fix
//                  of reference_c/fixes/ to compare, as `bench --fix` does).
//
// Output: a table (default) or JSON (-j).  Usage: qsbr-bench [-j] [-q] [-r ROUNDS]
//   [-t TARGET_MS] [-R MAX_READERS] [-d THREAD_MS] [-n ITEMS] [-C MAX_READERS] [-p]
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qsbr.h"

#ifdef QSBR_BENCH_URCU
#  define _LGPL_SOURCE          // liburcu's inline fast paths, as its users get them
#  include <urcu-qsbr.h>
#  ifndef QSBR_BENCH_URCU_VERSION
#    define QSBR_BENCH_URCU_VERSION "(version unknown)"
#  endif
#endif

#define BARRIER() __asm__ __volatile__("" ::: "memory")

#if defined(__x86_64__) || defined(__i386__)
#  define CPU_RELAX() __asm__ __volatile__("pause" ::: "memory")
#else
#  define CPU_RELAX() BARRIER()
#endif

#define MAX_ROUNDS 64
#define MAX_READERS 64

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double best, median;
    int n;
} stat_t;

static stat_t
summarize(double *samples, int n, bool higher_is_better)
{
    stat_t s = {0, 0, n};
    if (n == 0) {
        return s;
    }
    double sorted[MAX_ROUNDS];
    memcpy(sorted, samples, (size_t)n * sizeof(double));
    qsort(sorted, (size_t)n, sizeof(double), cmp_double);
    s.best = higher_is_better ? sorted[n - 1] : sorted[0];
    s.median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    return s;
}

// ---------------------------------------------------------------------------------------------
// Single-thread operations

// The state every variant works on.  The port's is a real interpreter with registered thread
// states; the limit's mirrors its layout (a shared counter, 64-byte slots).
static PyInterpreterState *interp;
static struct _qsbr_thread_state *me;        // the main thread's slot in `interp`

struct limit_slot {
    uint64_t seq;
    char pad[64 - sizeof(uint64_t)];
};
static struct {
    _Alignas(64) uint64_t wr_seq;
    _Alignas(64) uint64_t rd_seq;
    int deferrals;
} lim = {QSBR_INITIAL, QSBR_INITIAL, 0};
static _Alignas(64) struct limit_slot lim_me;

// Scan: one interpreter per size, every slot registered and attached at the current sequence.
static const int scan_sizes[] = {8, 16, 64, 256, 1024, 4096};
#define N_SCAN ((int)(sizeof(scan_sizes) / sizeof(scan_sizes[0])))
static struct {
    PyInterpreterState *interp;
    struct _qsbr_thread_state *me;
    struct limit_slot *lim_array;
    uint64_t lim_wr, lim_rd;
    uint64_t goal;                  // never reached: every poll scans
} scan[N_SCAN];

typedef void (*op_fn)(long n, int arg);

static void
port_quiescent(long n, int arg)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        _Py_qsbr_quiescent_state(me);
        BARRIER();
    }
}

static __attribute__((noinline)) void
limit_quiescent(long n, int arg)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        uint64_t seq = atomic_load_explicit((_Atomic uint64_t *)&lim.wr_seq,
                                            memory_order_acquire);
        atomic_store_explicit((_Atomic uint64_t *)&lim_me.seq, seq, memory_order_release);
        BARRIER();
    }
}

static void
port_attach_detach(long n, int arg)
{
    (void)arg;
    // The main thread is attached: detach first, attach again (the pair a blocking call makes).
    for (long i = 0; i < n; i++) {
        _Py_qsbr_detach(me);
        _Py_qsbr_attach(me);
        BARRIER();
    }
}

static __attribute__((noinline)) void
limit_attach_detach(long n, int arg)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        atomic_store_explicit((_Atomic uint64_t *)&lim_me.seq, QSBR_OFFLINE,
                              memory_order_release);
        uint64_t seq = atomic_load_explicit((_Atomic uint64_t *)&lim.wr_seq,
                                            memory_order_acquire);
        atomic_store((_Atomic uint64_t *)&lim_me.seq, seq);     // seq_cst, as attach needs
        BARRIER();
    }
}

static void
port_advance(long n, int arg)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        (void)_Py_qsbr_advance(me->shared);
        BARRIER();
    }
}

static __attribute__((noinline)) void
limit_advance(long n, int arg)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        (void)atomic_fetch_add((_Atomic uint64_t *)&lim.wr_seq, QSBR_INCR);
        BARRIER();
    }
}

#if QSBR_DEFERRALS
static void
port_deferred(long n, int arg)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        (void)_Py_qsbr_deferred_advance(me);
        BARRIER();
    }
}

static __attribute__((noinline)) void
limit_deferred(long n, int arg)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        if (++lim.deferrals < 10) {
            (void)(atomic_load_explicit((_Atomic uint64_t *)&lim.wr_seq, memory_order_acquire)
                   + QSBR_INCR);
        }
        else {
            lim.deferrals = 0;
            (void)atomic_fetch_add((_Atomic uint64_t *)&lim.wr_seq, QSBR_INCR);
        }
        BARRIER();
    }
}
#define DEFERRED_NAME "deferred_advance"
#else
static void
port_deferred(long n, int arg)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        (void)_Py_qsbr_shared_next(me->shared);
        BARRIER();
    }
}

static __attribute__((noinline)) void
limit_deferred(long n, int arg)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        (void)(atomic_load_explicit((_Atomic uint64_t *)&lim.wr_seq, memory_order_acquire)
               + QSBR_INCR);
        BARRIER();
    }
}
#define DEFERRED_NAME "shared_next"
#endif

static void
port_poll_reached(long n, int arg)
{
    (void)arg;
    uint64_t goal = _Py_atomic_load_uint64(&me->shared->rd_seq);
    for (long i = 0; i < n; i++) {
        if (!_Py_qsbr_poll(me, goal)) {
            abort();
        }
        BARRIER();
    }
}

static __attribute__((noinline)) void
limit_poll_reached(long n, int arg)
{
    (void)arg;
    uint64_t goal = atomic_load((_Atomic uint64_t *)&lim.rd_seq);
    for (long i = 0; i < n; i++) {
        if (!QSBR_LEQ(goal, atomic_load((_Atomic uint64_t *)&lim.rd_seq))) {
            abort();
        }
        BARRIER();
    }
}

static void
port_poll_scan(long n, int k)
{
    struct _qsbr_thread_state *q = scan[k].me;
    uint64_t goal = scan[k].goal;
    for (long i = 0; i < n; i++) {
        if (_Py_qsbr_poll(q, goal)) {
            abort();
        }
        BARRIER();
    }
}

// The same loads as qsbr_poll_scan(): rd_seq, the fence, wr_seq, every slot, rd_seq again.
static __attribute__((noinline)) bool
limit_scan_once(int k, uint64_t goal)
{
    if (QSBR_LEQ(goal, atomic_load((_Atomic uint64_t *)&scan[k].lim_rd))) {
        return true;
    }
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t min_seq = atomic_load((_Atomic uint64_t *)&scan[k].lim_wr);
    struct limit_slot *array = scan[k].lim_array;
    for (int i = 0, size = scan_sizes[k]; i != size; i++) {
        uint64_t seq = atomic_load((_Atomic uint64_t *)&array[i].seq);
        if (seq != QSBR_OFFLINE && QSBR_LT(seq, min_seq)) {
            min_seq = seq;
        }
    }
    uint64_t rd = atomic_load((_Atomic uint64_t *)&scan[k].lim_rd);
    if (QSBR_LT(rd, min_seq)) {
        (void)atomic_compare_exchange_strong((_Atomic uint64_t *)&scan[k].lim_rd, &rd, min_seq);
        rd = min_seq;
    }
    return QSBR_LEQ(goal, rd);
}

static void
limit_poll_scan(long n, int k)
{
    uint64_t goal = scan[k].goal;
    for (long i = 0; i < n; i++) {
        if (limit_scan_once(k, goal)) {
            abort();
        }
        BARRIER();
    }
}

// One deferred free, as CPython's _PyMem_FreeDelayed() and _PyMem_ProcessDelayed() do it in
// one thread (Objects/obmalloc.c): take the goal with the release's retire policy
// (port_retire_goal: deferred_advance on 3.13, shared_next + an advance every 128 items on
// 3.14), append (block, goal) to a 254-item buffer, and when it is full pass a quiescent state
// and poll every item, releasing those whose goal is reached.  A block is released to a
// free list, not to the allocator, so that the figure is QSBR's share of a deferred free.
// Built with a fix (qsbr-conformance bench --fix NAME), its port column is the fixed cost.
static uint64_t port_retire_goal(struct _qsbr_thread_state *q);

#define DEFERRED_CHUNK 254
static struct {
    void *block[DEFERRED_CHUNK];
    uint64_t goal[DEFERRED_CHUNK];
    int len;
    void *pool[2 * DEFERRED_CHUNK];
    int free;
} dfree;

static void
port_deferred_free(long n, int arg)
{
    (void)arg;
    if (dfree.free == 0 && dfree.len == 0) {
        static char blocks[2 * DEFERRED_CHUNK][64];
        for (int i = 0; i < 2 * DEFERRED_CHUNK; i++) {
            dfree.pool[dfree.free++] = blocks[i];
        }
    }
    for (long i = 0; i < n; i++) {
        void *block = dfree.pool[--dfree.free];
        dfree.block[dfree.len] = block;
        dfree.goal[dfree.len] = port_retire_goal(me);
        dfree.len++;
        if (dfree.len == DEFERRED_CHUNK) {
            _Py_qsbr_quiescent_state(me);
            int kept = 0;
            for (int j = 0; j < DEFERRED_CHUNK; j++) {
                if (_Py_qsbr_poll(me, dfree.goal[j])) {
                    dfree.pool[dfree.free++] = dfree.block[j];
                }
                else {
                    dfree.block[kept] = dfree.block[j];
                    dfree.goal[kept++] = dfree.goal[j];
                }
            }
            dfree.len = kept;
        }
        BARRIER();
    }
}

// One whole grace period in one thread: advance, own quiescent state, poll (scans 8 slots).
static void
port_grace_period(long n, int arg)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        uint64_t goal = _Py_qsbr_advance(me->shared);
        _Py_qsbr_quiescent_state(me);
        if (!_Py_qsbr_poll(me, goal)) {
            abort();
        }
        BARRIER();
    }
}

#ifdef QSBR_BENCH_URCU
static void
urcu_quiescent(long n, int arg)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        rcu_quiescent_state();
        BARRIER();
    }
}

static void
urcu_offline_online(long n, int arg)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        rcu_thread_offline();
        rcu_thread_online();
        BARRIER();
    }
}

// synchronize_rcu() from an offline registered thread with no other reader: a grace period.
static void
urcu_grace_period(long n, int arg)
{
    (void)arg;
    rcu_thread_offline();
    for (long i = 0; i < n; i++) {
        synchronize_rcu();
        BARRIER();
    }
    rcu_thread_online();
}
#endif

typedef struct {
    const char *name;
    const char *what;
    op_fn port, limit, urcu;
    int arg;
    int slots;          // scan size, or 0
    long iterations;    // calibrated
    double samples[3][MAX_ROUNDS];
} op_t;

#define MAX_OPS 24
static op_t ops[MAX_OPS];
static int n_ops;

static void
add_op(const char *name, const char *what, op_fn port, op_fn limit, op_fn urcu, int arg,
       int slots)
{
    op_t *op = &ops[n_ops++];
    memset(op, 0, sizeof(*op));
    op->name = name;
    op->what = what;
    op->port = port;
    op->limit = limit;
    op->urcu = urcu;
    op->arg = arg;
    op->slots = slots;
}

static double
sample(op_fn fn, long n, int arg)
{
    uint64_t t0 = now_ns();
    fn(n, arg);
    return (double)(now_ns() - t0) / (double)n;
}

static long
calibrate(op_fn fn, int arg, double target_ns)
{
    long n = 64;
    for (;;) {
        uint64_t t0 = now_ns();
        fn(n, arg);
        double elapsed = (double)(now_ns() - t0);
        if (elapsed >= target_ns || n >= (1L << 34)) {
            // scale to the target (with a margin), never below what was just run
            double scaled = (double)n * target_ns / (elapsed > 1 ? elapsed : 1) * 1.1;
            return scaled > (double)n ? (long)scaled : n;
        }
        n *= 4;
    }
}

static void
setup_single(void)
{
    interp = PyInterpreterState_New();
    PyThreadState *ts = PyThreadState_New(interp);
    if (interp == NULL || ts == NULL) {
        fprintf(stderr, "qsbr-bench: out of memory\n");
        exit(1);
    }
    _PyThreadState_Attach(ts);
    me = ((_PyThreadStateImpl *)ts)->qsbr;
    atomic_store((_Atomic uint64_t *)&lim_me.seq, QSBR_INITIAL);

    for (int k = 0; k < N_SCAN; k++) {
        int size = scan_sizes[k];
        PyInterpreterState *in = PyInterpreterState_New();
        PyThreadState **states = calloc((size_t)size, sizeof(*states));
        scan[k].lim_array = aligned_alloc(64, (size_t)size * sizeof(struct limit_slot));
        if (in == NULL || states == NULL || scan[k].lim_array == NULL) {
            fprintf(stderr, "qsbr-bench: out of memory\n");
            exit(1);
        }
        for (int i = 0; i < size; i++) {
            states[i] = PyThreadState_New(in);
            if (states[i] == NULL) {
                fprintf(stderr, "qsbr-bench: out of memory\n");
                exit(1);
            }
        }
        if (in->qsbr.size != size) {
            fprintf(stderr, "qsbr-bench: %d thread states made %zd slots\n", size,
                    (size_t)in->qsbr.size);
            exit(1);
        }
        // Every slot attached at the current sequence (the states are attached in QSBR terms
        // only: no OS thread runs them, so nothing else touches this interpreter).
        for (int i = 0; i < size; i++) {
            _Py_qsbr_attach(((_PyThreadStateImpl *)states[i])->qsbr);
            scan[k].lim_array[i].seq = QSBR_INITIAL;
        }
        scan[k].interp = in;
        scan[k].me = ((_PyThreadStateImpl *)states[0])->qsbr;
        scan[k].lim_wr = scan[k].lim_rd = QSBR_INITIAL;
        scan[k].goal = QSBR_INITIAL + QSBR_INCR;
        free(states);       // the interpreter keeps them; the process exits with them
    }
}

static void
build_ops(void)
{
    op_fn no_urcu = NULL;
#ifdef QSBR_BENCH_URCU
    add_op("quiescent_state", "_Py_qsbr_quiescent_state | rcu_quiescent_state",
           port_quiescent, limit_quiescent, urcu_quiescent, 0, 0);
    add_op("attach_detach", "_Py_qsbr_detach+attach | rcu_thread_offline+online",
           port_attach_detach, limit_attach_detach, urcu_offline_online, 0, 0);
#else
    add_op("quiescent_state", "_Py_qsbr_quiescent_state", port_quiescent, limit_quiescent,
           no_urcu, 0, 0);
    add_op("attach_detach", "_Py_qsbr_detach+attach", port_attach_detach, limit_attach_detach,
           no_urcu, 0, 0);
#endif
    add_op("advance", "_Py_qsbr_advance", port_advance, limit_advance, no_urcu, 0, 0);
#if QSBR_DEFERRALS
    add_op(DEFERRED_NAME, "_Py_qsbr_deferred_advance", port_deferred, limit_deferred, no_urcu,
           0, 0);
#else
    add_op(DEFERRED_NAME, "_Py_qsbr_shared_next", port_deferred, limit_deferred, no_urcu, 0, 0);
#endif
    add_op("poll_no_scan", "_Py_qsbr_poll, goal reached", port_poll_reached, limit_poll_reached,
           no_urcu, 0, 0);
    add_op("deferred_free", "goal (retire policy) + enqueue + quiescent/poll per 254-item chunk",
           port_deferred_free, NULL, no_urcu, 0, 0);
    static char names[N_SCAN][32];
    for (int k = 0; k < N_SCAN; k++) {
        snprintf(names[k], sizeof(names[k]), "poll_scan_%d", scan_sizes[k]);
        add_op(names[k], "_Py_qsbr_poll, goal not reached: a full scan", port_poll_scan,
               limit_poll_scan, no_urcu, k, scan_sizes[k]);
    }
#ifdef QSBR_BENCH_URCU
    add_op("grace_period_1thread", "advance+quiescent+poll | synchronize_rcu, no other reader",
           port_grace_period, NULL, urcu_grace_period, 0, 0);
#else
    add_op("grace_period_1thread", "advance+quiescent+poll", port_grace_period, NULL, no_urcu,
           0, 0);
#endif
}

static void
run_single(int rounds, double target_ns)
{
    // Warm-up and calibration (on the port's variant; the others run the same count).
    for (int i = 0; i < n_ops; i++) {
        op_t *op = &ops[i];
        op->iterations = calibrate(op->port, op->arg, target_ns);
        if (op->limit) {
            op->limit(op->iterations / 4 + 1, op->arg);
        }
        if (op->urcu) {
            long n = calibrate(op->urcu, op->arg, target_ns);
            // synchronize_rcu is ~1000x slower than the rest: let it keep its own count
            op->iterations = n < op->iterations ? n : op->iterations;
        }
    }
    // Interleaved rounds: every variant of every operation once per round, the order of the
    // variants rotating from round to round.
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n_ops; i++) {
            op_t *op = &ops[i];
            op_fn fns[3] = {op->port, op->limit, op->urcu};
            for (int j = 0; j < 3; j++) {
                int v = (j + r) % 3;
                if (fns[v]) {
                    op->samples[v][r] = sample(fns[v], op->iterations, op->arg);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Threads: readers pass quiescent states while one writer reclaims.

typedef struct object {
    uint64_t value;
#ifdef QSBR_BENCH_URCU
    struct rcu_head head;
#endif
} object_t;

static object_t *_Atomic shared_object;
static atomic_bool stop_readers;
static atomic_int readers_ready;
static bool pin_threads;
static int n_cpus = 1;

static void
pin_to(int cpu)
{
    if (!pin_threads) {
        return;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % n_cpus, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static object_t *
new_object(uint64_t value)
{
    object_t *obj = malloc(sizeof(*obj));
    if (obj == NULL) {
        fprintf(stderr, "qsbr-bench: out of memory\n");
        exit(1);
    }
    obj->value = value;
    return obj;
}

typedef struct {
    int index;
    PyThreadState *tstate;      // port readers
    uint64_t sink;
    uint64_t count;             // contention: quiescent states passed
    uint64_t cpu_ns;            // contention: the thread's CPU time in its loop
} reader_t;

static void *
port_reader(void *arg)
{
    reader_t *r = arg;
    pin_to(1 + r->index);
    _PyThreadState_Attach(r->tstate);
    struct _qsbr_thread_state *q = ((_PyThreadStateImpl *)r->tstate)->qsbr;
    atomic_fetch_add(&readers_ready, 1);
    uint64_t sink = 0;
    while (!atomic_load_explicit(&stop_readers, memory_order_relaxed)) {
        object_t *obj = atomic_load_explicit(&shared_object, memory_order_acquire);
        sink += obj->value;
        _Py_qsbr_quiescent_state(q);
    }
    r->sink = sink;
    _PyThreadState_Detach(r->tstate);
    return NULL;
}

#ifdef QSBR_BENCH_URCU
static void *
urcu_reader(void *arg)
{
    reader_t *r = arg;
    pin_to(1 + r->index);
    rcu_register_thread();
    atomic_fetch_add(&readers_ready, 1);
    uint64_t sink = 0;
    while (!atomic_load_explicit(&stop_readers, memory_order_relaxed)) {
        rcu_read_lock();
        object_t *obj = rcu_dereference(shared_object);
        sink += obj->value;
        rcu_read_unlock();
        rcu_quiescent_state();
    }
    r->sink = sink;
    rcu_unregister_thread();
    return NULL;
}
#endif

typedef struct {
    double gp_ns[MAX_ROUNDS];           // median grace-period latency of the round
    double reclaim_per_s[MAX_ROUNDS];
    long grace_periods[MAX_ROUNDS];
} thread_samples_t;

typedef struct {
    int readers;
    thread_samples_t v[2];      // 0 port, 1 urcu
} thread_row_t;

static thread_row_t thread_rows[MAX_READERS];
static int n_thread_rows;

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

#define MAX_GP 200000
static uint64_t gp_lat[MAX_GP];

static double
median_u64(uint64_t *v, long n)
{
    qsort(v, (size_t)n, sizeof(uint64_t), cmp_u64);
    return n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
}

// A retired object and the goal that frees it (CPython's _mem_work_item).
typedef struct {
    object_t *ptr;
    uint64_t goal;
} work_item_t;
#define WORK_ITEMS_PER_CHUNK 254

typedef struct {
    int readers;
    double duration_ns;
    long items;
    reader_t reader[MAX_READERS];
    pthread_t thread[MAX_READERS];
} run_t;

static void
start_readers(run_t *run, void *(*body)(void *), PyInterpreterState *in)
{
    atomic_store(&stop_readers, false);
    atomic_store(&readers_ready, 0);
    // Every thread state first: a reservation that grows the array stops the world, which
    // would wait forever for a reader spinning with no safepoint.
    for (int i = 0; i < run->readers; i++) {
        run->reader[i].index = i;
        run->reader[i].tstate = in != NULL ? PyThreadState_New(in) : NULL;
        if (in != NULL && run->reader[i].tstate == NULL) {
            fprintf(stderr, "qsbr-bench: out of memory\n");
            exit(1);
        }
    }
    for (int i = 0; i < run->readers; i++) {
        if (pthread_create(&run->thread[i], NULL, body, &run->reader[i]) != 0) {
            fprintf(stderr, "qsbr-bench: cannot start a reader thread\n");
            exit(1);
        }
    }
    // Wait until every reader runs (an event count, not a sleep).
    while (atomic_load(&readers_ready) < run->readers) {
        sched_yield();
    }
}

static void
stop_readers_and_join(run_t *run)
{
    atomic_store(&stop_readers, true);
    for (int i = 0; i < run->readers; i++) {
        pthread_join(run->thread[i], NULL);
        if (run->reader[i].tstate != NULL) {
            PyThreadState_Delete(run->reader[i].tstate);
        }
    }
}

// How the port's writer waits between polls that fail.  CPython never spins on a poll (it
// polls again at its next chance); a writer that spun would take the CPU from the very readers
// it waits for whenever threads outnumber CPUs.  So: spin 100 polls, then yield between polls,
// as liburcu's synchronize_rcu() spins RCU_QS_ACTIVE_ATTEMPTS (100) times before it sleeps.
static void
wait_a_little(int polls)
{
    if (polls < 100) {
        CPU_RELAX();
    }
    else {
        sched_yield();
    }
}

// The writer's retire policy, as CPython's free_delayed() (Objects/obmalloc.c).
static uint64_t
port_retire_goal(struct _qsbr_thread_state *q)
{
#if QSBR_DEFERRALS
    return _Py_qsbr_deferred_advance(q);
#else
    // should_advance_qsbr_for_free(): advance when more than QSBR_DEFERRED_LIMIT (127) items
    // are held (the memory limit, 1 MiB, is not reached by these small objects).
    if (++q->deferred_count > 127) {
        q->deferred_count = 0;
        q->should_process = true;
        return _Py_qsbr_advance(q->shared);
    }
    return _Py_qsbr_shared_next(q->shared);
#endif
}

static void
port_threads(run_t *run, thread_samples_t *out, int round)
{
    PyInterpreterState *in = PyInterpreterState_New();
    // Reserve every slot first (growth stops the world), then start the readers.
    PyThreadState *writer = PyThreadState_New(in);
    if (in == NULL || writer == NULL) {
        fprintf(stderr, "qsbr-bench: out of memory\n");
        exit(1);
    }
    pin_to(0);
    atomic_store(&shared_object, new_object(0));
    start_readers(run, port_reader, in);
    _PyThreadState_Attach(writer);
    struct _qsbr_thread_state *wq = ((_PyThreadStateImpl *)writer)->qsbr;

    // Synchronous: replace, advance, wait for the grace period, free.
    long g = 0;
    uint64_t start = now_ns();
    while (g < MAX_GP && (double)(now_ns() - start) < run->duration_ns) {
        object_t *old = atomic_exchange(&shared_object, new_object((uint64_t)g));
        uint64_t t0 = now_ns();
        uint64_t goal = _Py_qsbr_advance(wq->shared);
        _Py_qsbr_quiescent_state(wq);
        for (int polls = 0; !_Py_qsbr_poll(wq, goal); polls++) {
            wait_a_little(polls);
        }
        gp_lat[g++] = now_ns() - t0;
        free(old);
    }
    out->gp_ns[round] = median_u64(gp_lat, g);
    out->grace_periods[round] = g;

    // Asynchronous: retire each replaced object with a goal; process the queue each time a
    // chunk of 254 items has been retired; the writer passes a quiescent state per item.
    work_item_t *queue = malloc((size_t)run->items * sizeof(*queue));
    if (queue == NULL) {
        fprintf(stderr, "qsbr-bench: out of memory\n");
        exit(1);
    }
    long head = 0, tail = 0;
    start = now_ns();
    for (long i = 0; i < run->items; i++) {
        object_t *old = atomic_exchange(&shared_object, new_object((uint64_t)i));
        queue[tail].ptr = old;
        queue[tail].goal = port_retire_goal(wq);
        tail++;
        if (tail % WORK_ITEMS_PER_CHUNK == 0) {
            while (head < tail && _Py_qsbr_poll(wq, queue[head].goal)) {
                free(queue[head++].ptr);
            }
        }
        _Py_qsbr_quiescent_state(wq);
    }
    // Drain: whatever is still held needs a goal that will be reached.
    (void)_Py_qsbr_advance(wq->shared);
    int polls = 0;
    while (head < tail) {
        _Py_qsbr_quiescent_state(wq);
        if (_Py_qsbr_poll(wq, queue[head].goal)) {
            free(queue[head++].ptr);
            polls = 0;
        }
        else {
            wait_a_little(polls++);
        }
    }
    out->reclaim_per_s[round] = (double)run->items * 1e9 / (double)(now_ns() - start);
    free(queue);

    _PyThreadState_Detach(writer);
    stop_readers_and_join(run);
    free(atomic_load(&shared_object));
    PyThreadState_Delete(writer);
    PyInterpreterState_Delete(in);
}

#ifdef QSBR_BENCH_URCU
static void
free_object_cb(struct rcu_head *head)
{
    free(caa_container_of(head, object_t, head));
}

// The main thread is registered (the single-thread part) and offline here.
static void
urcu_threads(run_t *run, thread_samples_t *out, int round)
{
    pin_to(0);
    atomic_store(&shared_object, new_object(0));
    start_readers(run, urcu_reader, NULL);

    long g = 0;
    uint64_t start = now_ns();
    while (g < MAX_GP && (double)(now_ns() - start) < run->duration_ns) {
        object_t *old = rcu_xchg_pointer(&shared_object, new_object((uint64_t)g));
        uint64_t t0 = now_ns();
        synchronize_rcu();
        gp_lat[g++] = now_ns() - t0;
        free(old);
    }
    out->gp_ns[round] = median_u64(gp_lat, g);
    out->grace_periods[round] = g;

    rcu_thread_online();
    start = now_ns();
    for (long i = 0; i < run->items; i++) {
        object_t *old = rcu_xchg_pointer(&shared_object, new_object((uint64_t)i));
        call_rcu(&old->head, free_object_cb);
        rcu_quiescent_state();
    }
    rcu_thread_offline();
    rcu_barrier();
    out->reclaim_per_s[round] = (double)run->items * 1e9 / (double)(now_ns() - start);

    stop_readers_and_join(run);
    free(atomic_load(&shared_object));
}
#endif

static void
run_threads(int max_readers, int rounds, double duration_ns, long items)
{
    for (int readers = 1; readers <= max_readers; readers++) {
        thread_row_t *row = &thread_rows[n_thread_rows++];
        row->readers = readers;
        run_t run = {.readers = readers, .duration_ns = duration_ns, .items = items};
        for (int r = 0; r < rounds; r++) {
#ifdef QSBR_BENCH_URCU
            if (r % 2) {
                urcu_threads(&run, &row->v[1], r);
                port_threads(&run, &row->v[0], r);
                continue;
            }
            port_threads(&run, &row->v[0], r);
            urcu_threads(&run, &row->v[1], r);
#else
            port_threads(&run, &row->v[0], r);
#endif
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Contention: the goal functions under N threads reading wr_seq.
//
// N reader threads pass quiescent states in a tight loop (_Py_qsbr_quiescent_state: a load of
// wr_seq and a store of the thread's own seq, what every attached thread does at each
// eval-breaker check) while one writer, in a loop, stores to a line of its own (the unlink) and
// takes a goal with the retire policy of free_delayed() (port_retire_goal: the non-advancing goal,
// advancing every 128th item in 3.14 / every 10th in 3.13).  Each row reports the writer's ns per
// goal and the readers' ns per quiescent state, in each thread's own CPU time
// (CLOCK_THREAD_CPUTIME_ID: a loaded machine's scheduler stays out of it), and the overlap: the
// threads' CPU time over the wall time, 1 + N when each had a CPU all along, near 1 when they
// took turns (then the row measured no contention).  A fix of the
// non-advancing goal that writes wr_seq (an add-0 read-modify-write) takes its line exclusive at
// every goal and shows here as a slower reader; a fence costs the writer alone.  No reader is in
// a read-side section: the numbers are the cost of the QSBR bookkeeping itself, at a far higher
// rate than an interpreter's.

typedef struct {
    double goal_ns[MAX_ROUNDS];         // writer: ns per goal
    double reader_qs_ns[MAX_ROUNDS];    // readers: mean over readers of ns per quiescent state
    double overlap[MAX_ROUNDS];         // the threads' CPU time over the writer's wall time
    long goals[MAX_ROUNDS];
} contention_samples_t;

typedef struct {
    int readers;
    contention_samples_t s;
} contention_row_t;

static contention_row_t contention_rows[MAX_READERS];
static int n_contention_rows;
static _Alignas(64) uint64_t _Atomic unlink_slot;     // the writer's own line
static atomic_bool contention_go;                       // the writer's window has begun

// The calling thread's CPU time: on a loaded machine a thread is off its CPU for much of the
// wall time, and the wall time per operation would mostly measure the scheduler.
static uint64_t
thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *
contention_reader(void *arg)
{
    reader_t *r = arg;
    pin_to(1 + r->index);
    _PyThreadState_Attach(r->tstate);
    struct _qsbr_thread_state *q = ((_PyThreadStateImpl *)r->tstate)->qsbr;
    atomic_fetch_add(&readers_ready, 1);
    while (!atomic_load(&contention_go)) {      // count only within the writer's window
        _Py_qsbr_quiescent_state(q);
        CPU_RELAX();
    }
    uint64_t count = 0, cpu0 = thread_cpu_ns();
    while (!atomic_load_explicit(&stop_readers, memory_order_relaxed)) {
        _Py_qsbr_quiescent_state(q);
        BARRIER();
        count++;
    }
    r->cpu_ns = thread_cpu_ns() - cpu0;
    r->count = count;
    _PyThreadState_Detach(r->tstate);
    return NULL;
}

static void
contention_round(run_t *run, contention_samples_t *out, int round)
{
    PyInterpreterState *in = PyInterpreterState_New();
    PyThreadState *writer = PyThreadState_New(in);
    if (in == NULL || writer == NULL) {
        fprintf(stderr, "qsbr-bench: out of memory\n");
        exit(1);
    }
    pin_to(0);
    atomic_store(&contention_go, false);
    start_readers(run, contention_reader, in);
    _PyThreadState_Attach(writer);
    struct _qsbr_thread_state *wq = ((_PyThreadStateImpl *)writer)->qsbr;
    uint64_t sink = 0;
    long goals = 0;
    atomic_store(&contention_go, true);
    uint64_t start = now_ns(), elapsed = 0, cpu0 = thread_cpu_ns();
    do {
        for (int i = 0; i < 1024; i++) {
            atomic_store_explicit(&unlink_slot, (uint64_t)goals, memory_order_release);
            sink += port_retire_goal(wq);
            BARRIER();
            goals++;
        }
        elapsed = now_ns() - start;
    } while ((double)elapsed < run->duration_ns);
    uint64_t writer_cpu = thread_cpu_ns() - cpu0;
    atomic_store(&stop_readers, true);
    for (int i = 0; i < run->readers; i++) {
        pthread_join(run->thread[i], NULL);
    }
    double per_qs = 0, cpu = (double)writer_cpu;
    for (int i = 0; i < run->readers; i++) {
        uint64_t n = run->reader[i].count ? run->reader[i].count : 1;
        per_qs += (double)run->reader[i].cpu_ns / (double)n;
        cpu += (double)run->reader[i].cpu_ns;
        PyThreadState_Delete(run->reader[i].tstate);
    }
    // 1 + readers when every thread had a CPU of its own all along; about 1 or less when they
    // took turns on the CPUs (a loaded machine), where no contention was measured at all.
    out->overlap[round] = cpu / (double)elapsed;
    out->goal_ns[round] = (double)writer_cpu / (double)goals;
    out->reader_qs_ns[round] = per_qs / run->readers;
    out->goals[round] = goals + (long)(sink & 0);
    _PyThreadState_Detach(writer);
    PyThreadState_Delete(writer);
    PyInterpreterState_Delete(in);
}

static void
run_contention(int max_readers, int rounds, double duration_ns)
{
    for (int readers = 1; readers <= max_readers; readers++) {
        contention_row_t *row = &contention_rows[n_contention_rows++];
        row->readers = readers;
        run_t run = {.readers = readers, .duration_ns = duration_ns};
        for (int r = 0; r < rounds; r++) {
            contention_round(&run, &row->s, r);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output

static const char *variant_names[3] = {"port", "limit", "urcu"};

static void
json_stat(FILE *f, const char *key, stat_t s, const char *sep)
{
    if (s.n == 0) {
        fprintf(f, "\"%s\": null%s", key, sep);
    }
    else {
        fprintf(f, "\"%s\": {\"best\": %.4f, \"median\": %.4f}%s", key, s.best, s.median, sep);
    }
}

static void
print_json(int rounds, double target_ns, int thread_rounds, double duration_ns, long items)
{
    FILE *f = stdout;
    fprintf(f, "{\n  \"profile\": \"%s\",\n", QSBR_DEFERRALS ? "3.13" : "3.14");
    fprintf(f, "  \"clock\": \"CLOCK_MONOTONIC\",\n  \"unit\": \"ns/op\",\n");
    fprintf(f, "  \"cpus\": %d,\n  \"pinned\": %s,\n", n_cpus, pin_threads ? "true" : "false");
#ifdef QSBR_BENCH_URCU
    fprintf(f, "  \"urcu\": \"liburcu-qsbr %s\",\n", QSBR_BENCH_URCU_VERSION);
#else
    fprintf(f, "  \"urcu\": null,\n");
#endif
    fprintf(f, "  \"rounds\": %d,\n  \"target_ms\": %.3f,\n", rounds, target_ns / 1e6);
    fprintf(f, "  \"operations\": [\n");
    for (int i = 0; i < n_ops; i++) {
        op_t *op = &ops[i];
        fprintf(f, "    {\"name\": \"%s\", \"what\": \"%s\", \"slots\": %d, \"iterations\": %ld, ",
                op->name, op->what, op->slots, op->iterations);
        op_fn fns[3] = {op->port, op->limit, op->urcu};
        for (int v = 0; v < 3; v++) {
            stat_t s = summarize(op->samples[v], fns[v] ? rounds : 0, false);
            json_stat(f, variant_names[v], s, v < 2 ? ", " : "");
        }
        fprintf(f, "}%s\n", i + 1 < n_ops ? "," : "");
    }
    fprintf(f, "  ],\n  \"threads\": {\"rounds\": %d, \"duration_ms\": %.1f, \"items\": %ld, "
               "\"rows\": [\n", thread_rounds, duration_ns / 1e6, items);
    for (int i = 0; i < n_thread_rows; i++) {
        thread_row_t *row = &thread_rows[i];
        fprintf(f, "    {\"readers\": %d", row->readers);
        for (int v = 0; v < 2; v++) {
#ifndef QSBR_BENCH_URCU
            if (v == 1) {
                fprintf(f, ", \"urcu\": null");
                continue;
            }
#endif
            thread_samples_t *t = &row->v[v];
            long gps = 0;
            for (int r = 0; r < thread_rounds; r++) {
                gps += t->grace_periods[r];
            }
            fprintf(f, ", \"%s\": {", v ? "urcu" : "port");
            json_stat(f, "gp_latency_ns", summarize(t->gp_ns, thread_rounds, false), ", ");
            json_stat(f, "reclaim_per_s", summarize(t->reclaim_per_s, thread_rounds, true), ", ");
            fprintf(f, "\"grace_periods\": %ld}", gps);
        }
        fprintf(f, "}%s\n", i + 1 < n_thread_rows ? "," : "");
    }
    fprintf(f, "  ]},\n  \"contention\": {\"rounds\": %d, \"duration_ms\": %.1f, "
               "\"goal\": \"%s\", \"rows\": [\n", thread_rounds, duration_ns / 1e6,
            QSBR_DEFERRALS ? "_Py_qsbr_deferred_advance" : "_Py_qsbr_shared_next");
    for (int i = 0; i < n_contention_rows; i++) {
        contention_row_t *row = &contention_rows[i];
        long goals = 0;
        for (int r = 0; r < thread_rounds; r++) {
            goals += row->s.goals[r];
        }
        fprintf(f, "    {\"readers\": %d, ", row->readers);
        json_stat(f, "goal_ns", summarize(row->s.goal_ns, thread_rounds, false), ", ");
        json_stat(f, "reader_qs_ns", summarize(row->s.reader_qs_ns, thread_rounds, false), ", ");
        json_stat(f, "overlap", summarize(row->s.overlap, thread_rounds, true), ", ");
        fprintf(f, "\"goals\": %ld}%s\n", goals, i + 1 < n_contention_rows ? "," : "");
    }
    fprintf(f, "  ]}\n}\n");
}

static void
print_table(int rounds, int thread_rounds)
{
    printf("qsbr-bench, profile %s: best (median) of %d interleaved rounds, ns/op, "
           "CLOCK_MONOTONIC\n", QSBR_DEFERRALS ? "3.13" : "3.14", rounds);
#ifndef QSBR_BENCH_URCU
    printf("liburcu-qsbr: not found at build time (Debian: apt-get install liburcu-dev); "
           "its column is empty\n");
#endif
    printf("%-22s %18s %18s %18s %10s %10s\n", "operation", "port", "limit", "liburcu",
           "port/limit", "port/urcu");
    for (int i = 0; i < n_ops; i++) {
        op_t *op = &ops[i];
        op_fn fns[3] = {op->port, op->limit, op->urcu};
        stat_t s[3];
        char cell[3][32];
        for (int v = 0; v < 3; v++) {
            s[v] = summarize(op->samples[v], fns[v] ? rounds : 0, false);
            if (s[v].n) {
                snprintf(cell[v], sizeof(cell[v]), "%.2f (%.2f)", s[v].best, s[v].median);
            }
            else {
                snprintf(cell[v], sizeof(cell[v]), "-");
            }
        }
        char r1[16] = "-", r2[16] = "-";
        if (s[1].n) {
            snprintf(r1, sizeof(r1), "%.2f", s[0].best / s[1].best);
        }
        if (s[2].n) {
            snprintf(r2, sizeof(r2), "%.2f", s[0].best / s[2].best);
        }
        printf("%-22s %18s %18s %18s %10s %10s\n", op->name, cell[0], cell[1], cell[2], r1, r2);
    }
    printf("\nreaders passing quiescent states, one writer; %d CPUs; best (median) of %d rounds\n",
           n_cpus, thread_rounds);
    printf("%-8s %22s %22s %22s %22s\n", "readers", "port gp latency ns", "urcu gp latency ns",
           "port reclaimed/s", "urcu reclaimed/s");
    for (int i = 0; i < n_thread_rows; i++) {
        thread_row_t *row = &thread_rows[i];
        char cell[4][40];
        for (int v = 0; v < 2; v++) {
            stat_t gp = summarize(row->v[v].gp_ns, thread_rounds, false);
            stat_t rc = summarize(row->v[v].reclaim_per_s, thread_rounds, true);
#ifndef QSBR_BENCH_URCU
            if (v == 1) {
                gp.n = rc.n = 0;
            }
#endif
            if (gp.n) {
                snprintf(cell[v], sizeof(cell[v]), "%.0f (%.0f)", gp.best, gp.median);
                snprintf(cell[2 + v], sizeof(cell[2 + v]), "%.3g (%.3g)", rc.best, rc.median);
            }
            else {
                snprintf(cell[v], sizeof(cell[v]), "-");
                snprintf(cell[2 + v], sizeof(cell[2 + v]), "-");
            }
        }
        printf("%-8d %22s %22s %22s %22s\n", row->readers, cell[0], cell[1], cell[2], cell[3]);
    }
    if (n_contention_rows) {
        printf("\nthe goal under contention: one writer taking goals, N readers passing quiescent "
               "states; best (median) of %d rounds\n", thread_rounds);
        printf("%-8s %22s %22s %22s\n", "readers", "writer ns/goal", "reader ns/qs",
               "overlap");
    }
    for (int i = 0; i < n_contention_rows; i++) {
        contention_row_t *row = &contention_rows[i];
        stat_t g = summarize(row->s.goal_ns, thread_rounds, false);
        stat_t q = summarize(row->s.reader_qs_ns, thread_rounds, false);
        stat_t o = summarize(row->s.overlap, thread_rounds, true);
        char c1[40], c2[40], c3[40];
        snprintf(c1, sizeof(c1), "%.2f (%.2f)", g.best, g.median);
        snprintf(c2, sizeof(c2), "%.2f (%.2f)", q.best, q.median);
        snprintf(c3, sizeof(c3), "%.2f (%.2f) of %d", o.best, o.median, row->readers + 1);
        printf("%-8d %22s %22s %22s\n", row->readers, c1, c2, c3);
    }
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: qsbr-bench [-j] [-q] [-r ROUNDS] [-t TARGET_MS] [-R MAX_READERS] "
            "[-T THREAD_ROUNDS] [-d THREAD_MS] [-n ITEMS] [-C MAX_READERS] [-p]\n"
            "  -j  JSON on stdout instead of the table\n"
            "  -q  quick: 5 rounds of 0.5 ms samples, 1..2 readers, 2 thread rounds of 20 ms\n"
            "  -r  interleaved rounds per operation (default 15)\n"
            "  -t  time per sample, ms (default 2)\n"
            "  -R  reader threads: 1..R (default 4; 0 skips the threaded part)\n"
            "  -T  rounds of the threaded part (default 3)\n"
            "  -d  time of each grace-period latency run, ms (default 100)\n"
            "  -n  objects retired in each reclaim run (default 100000)\n"
            "  -C  contention: 1..C threads reading wr_seq beside one writer taking goals\n"
            "      (default: the CPU count, at most 64; 0 skips it; -T rounds of -d ms)\n"
            "  -p  pin the writer to CPU 0 and the readers to the next CPUs\n");
}

static bool
parse_number(const char *text, double low, double high, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || v < low || v > high) {
        return false;
    }
    *out = v;
    return true;
}

int
main(int argc, char **argv)
{
    bool json = false;
    double rounds = 15, target_ms = 2, max_readers = 4, thread_rounds = 3, duration_ms = 100;
    double items = 100000, max_contention = -1;
    int opt;
    while ((opt = getopt(argc, argv, "jqr:t:R:T:d:n:C:ph")) != -1) {
        bool ok = true;
        switch (opt) {
        case 'j': json = true; break;
        case 'q':
            rounds = 5; target_ms = 0.5; max_readers = 2; thread_rounds = 2; duration_ms = 20;
            items = 10000; max_contention = 2;
            break;
        case 'r': ok = parse_number(optarg, 1, MAX_ROUNDS, &rounds); break;
        case 't': ok = parse_number(optarg, 0.001, 10000, &target_ms); break;
        case 'R': ok = parse_number(optarg, 0, MAX_READERS, &max_readers); break;
        case 'T': ok = parse_number(optarg, 1, MAX_ROUNDS, &thread_rounds); break;
        case 'd': ok = parse_number(optarg, 0.1, 100000, &duration_ms); break;
        case 'n': ok = parse_number(optarg, 1, 1e8, &items); break;
        case 'C': ok = parse_number(optarg, 0, MAX_READERS, &max_contention); break;
        case 'p': pin_threads = true; break;
        case 'h': usage(); return 0;
        default: usage(); return 2;
        }
        if (!ok) {
            fprintf(stderr, "qsbr-bench: bad value for -%c: %s\n", opt, optarg);
            return 2;
        }
    }
    if (optind != argc) {
        usage();
        return 2;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n_cpus = cpus > 0 ? (int)cpus : 1;

#ifdef QSBR_BENCH_URCU
    rcu_register_thread();
#endif
    setup_single();
    build_ops();
    run_single((int)rounds, target_ms * 1e6);

    // The threaded part uses interpreters of its own; the main thread leaves `interp`.
    _PyThreadState_Detach(_PyThreadState_GET());
#ifdef QSBR_BENCH_URCU
    rcu_thread_offline();
#endif
    run_threads((int)max_readers, (int)thread_rounds, duration_ms * 1e6, (long)items);
    if (max_contention < 0) {
        max_contention = n_cpus < MAX_READERS ? n_cpus : MAX_READERS;
    }
    run_contention((int)max_contention, (int)thread_rounds, duration_ms * 1e6);

    if (json) {
        print_json((int)rounds, target_ms * 1e6, (int)thread_rounds, duration_ms * 1e6,
                   (long)items);
    }
    else {
        print_table((int)rounds, (int)thread_rounds);
    }
#ifdef QSBR_BENCH_URCU
    rcu_unregister_thread();
#endif
    return 0;
}
