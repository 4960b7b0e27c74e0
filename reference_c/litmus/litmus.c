// Hardware litmus tests for the orderings QSBR depends on (qsbr-conformance hazards).
//
// A harness beside the port, never inside its files: it is linked against either the port's
// own src/qsbr.c (one QSBR_PROFILE) or a CPython release's own Python/qsbr.c and
// Include/internal/pycore_qsbr.h built against the port's stand-ins (as `qsbr-conformance
// upstream` builds them).  The QSBR operations are the ones of that qsbr.c; only the protected
// pointer, the objects and the per-iteration synchronisation are this file's.
//
//   qsbr-litmus --list
//   qsbr-litmus SHAPE GOAL FENCE CONTROL ITERATIONS [RANGE [SEED]]
//
// SHAPE: stale-goal, retire-before-unlink, read-seqcst, read-acquire (--list describes each).
// GOAL: non-advancing (_Py_qsbr_deferred_advance with its counter reset, on 3.13.0-3.13.5;
// _Py_qsbr_shared_next on 3.13.6+ and 3.14) or advancing (_Py_qsbr_advance).  FENCE: 1 puts a
// seq_cst fence between the writer's unlink and its goal.  CONTROL: 1 runs the writer's part to
// its end before the reader's part starts (a spin barrier between them), where the forbidden
// outcome is impossible under any memory model: a non-zero count there is a broken harness.
// RANGE (default 64; 1: none) and SEED (default 1): before its racing part each side spins a
// number of empty iterations drawn from [0, RANGE) by a xorshift stream seeded with SEED, a new
// pair every iteration (litmus_core.h: the randomised offsets of the litmus7 tool), so that the
// alignment of the two racing parts that shows store buffering on this machine is sampled,
// whatever that alignment is.  The same arguments draw the same offsets.
//
// Two threads, pinned to two distinct CPUs of the process's affinity mask when it has two,
// meet at a spin barrier before and after each iteration's racing part (no sleeps: a waiter
// spins, yielding the CPU every few thousand spins so that a loaded machine still makes
// progress).  The run stops after ITERATIONS iterations, never on a clock.  On stdout:
//   RESULT <shape> <goal> <fence> <control> <iterations> <forbidden> <reached> <old_seen>
//          <freed_while_held> <poisoned_reads> <pinned> <range> <seed>
//   BAND <low> <high> <iterations> <forbidden>      (one line per band of the relative offset)
// forbidden: iterations with the forbidden outcome (see --list); reached: iterations where the
// goal was reached by the reader's quiescent state (stale-goal, retire-before-unlink) or by the
// writer's poll (read-*); old_seen: iterations where the reader loaded the old pointer;
// freed_while_held: iterations where the writer's poll then succeeded for the old object while
// the reader held it; poisoned_reads: iterations where the reader then read the old object
// after the writer had poisoned it (what a use-after-free looks like).  pinned: "cpuA,cpuB" or
// "none:<reason>".  A BAND line counts the iterations whose writer delay minus reader delay
// lay in [low, high], and the forbidden outcomes among them.  Exit status 0 after a run, 2 on
// bad usage, 1 when setup failed.
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsbr_pyport.h"
#include "pycore_lock.h"
#include "pycore_qsbr.h"
#include "pycore_tstate.h"

#include "litmus_core.h"


enum shape { STALE_GOAL, RETIRE_BEFORE_UNLINK, READ_SEQCST, READ_ACQUIRE, SHAPE_COUNT };

static const struct {
    const char *name;
    const char *what;
} SHAPES[SHAPE_COUNT] = {
    {"stale-goal",
     "writer: release-store the new pointer (the unlink), [fence], take the goal; reader: "
     "_Py_qsbr_advance, quiescent state, load the pointer.  Forbidden: the reader's quiescent "
     "state reaches the goal and the reader loaded the old pointer (store buffering)"},
    {"retire-before-unlink",
     "writer: take the goal, then release-store the new pointer (dict_merge's clone path: "
     "dictkeys_decref before set_keys); reader as in stale-goal.  Forbidden as in stale-goal: "
     "allowed even under sequential consistency"},
    {"read-seqcst",
     "reader: _Py_qsbr_attach, then a seq_cst load of the pointer (the first protected load); "
     "writer: release-store the new pointer, _Py_qsbr_advance, quiescent state, _Py_qsbr_poll.  "
     "Forbidden: the poll reached the goal and the reader loaded the old pointer"},
    {"read-acquire",
     "the same with an acquire first load (S-READ-1: allowed by C11; on hardware it needs an "
     "acquire load that may pass a release store, e.g. ARM64 LDAPR)"},
};

#define LIVE 42
#define POISON 0xDEAD

struct object {
    _Atomic int value;
};

static struct object objects[2];
static struct object *_Atomic head;

static PyInterpreterState *interp;
static PyThreadState *writer_ts, *reader_ts;

static enum shape g_shape;
static int g_advancing, g_fence, g_control;
static unsigned long g_iterations;

// -- synchronisation and offsets (litmus_core.h) ---------------------------------------------

static struct lc_sync sync_state;
static uint64_t g_seed = 1;
static uint32_t g_range = LC_DEFAULT_RANGE;

static void
barrier_wait(int role, uint64_t *k)
{
    (void)lc_barrier(&sync_state, role, ++*k, NULL, NULL);
}

// -- per-iteration exchange (written before a barrier, read after it) --------------------------

static struct object *r_loaded;     // what the reader loaded
static uint64_t r_seq;              // the reader's sequence after its quiescent state
static uint64_t w_goal;
static int w_freed;                 // the writer's poll succeeded and it poisoned the old object

struct counts {
    unsigned long forbidden, reached, old_seen, freed_while_held, poisoned_reads;
};
static struct counts counts;
static struct lc_tally tally;

// -- pinning ----------------------------------------------------------------------------------

static int cpus[2] = {-1, -1};
static char pinned[160] = "";

static void
choose_cpus(void)
{
    char why[128];
    if (lc_choose_cpus(cpus, why, sizeof(why)) != 0) {
        snprintf(pinned, sizeof(pinned), "none:%s", why);
        return;
    }
    snprintf(pinned, sizeof(pinned), "%d,%d", cpus[0], cpus[1]);
}

static void
pin(int which)
{
    int err = lc_pin(cpus[which]);
    if (err != 0) {
        snprintf(pinned, sizeof(pinned), "none:pthread_setaffinity_np(%d) failed (%s)",
                 cpus[which], strerror(err));
    }
}

// -- the goal ---------------------------------------------------------------------------------

static uint64_t
take_goal(struct _qsbr_thread_state *qsbr)
{
    if (g_advancing) {
        return _Py_qsbr_advance(qsbr->shared);
    }
#if QSBR_DEFERRALS
    // The counter's state after an advance: this call takes the non-advancing path (the one
    // 9 calls in 10 take in CPython).
    qsbr->deferrals = 0;
    return _Py_qsbr_deferred_advance(qsbr);
#else
    return _Py_qsbr_shared_next(qsbr->shared);
#endif
}

// -- the two threads --------------------------------------------------------------------------

static void
writer_part(struct _qsbr_thread_state *qsbr)
{
    struct object *fresh = &objects[1];
    switch (g_shape) {
    case STALE_GOAL:
        atomic_store_explicit(&head, fresh, memory_order_release);     // the unlink
        if (g_fence) {
            atomic_thread_fence(memory_order_seq_cst);
        }
        w_goal = take_goal(qsbr);
        break;
    case RETIRE_BEFORE_UNLINK:
        w_goal = take_goal(qsbr);
        if (g_fence) {
            atomic_thread_fence(memory_order_seq_cst);
        }
        atomic_store_explicit(&head, fresh, memory_order_release);
        break;
    case READ_SEQCST:
    case READ_ACQUIRE:
        atomic_store_explicit(&head, fresh, memory_order_release);
        if (g_fence) {
            atomic_thread_fence(memory_order_seq_cst);
        }
        w_goal = take_goal(qsbr);
        _Py_qsbr_quiescent_state(qsbr);
        w_freed = _Py_qsbr_poll(qsbr, w_goal);
        break;
    default:
        break;
    }
}

static void
reader_part(struct _qsbr_thread_state *qsbr)
{
    switch (g_shape) {
    case STALE_GOAL:
    case RETIRE_BEFORE_UNLINK:
        _Py_qsbr_advance(qsbr->shared);
        _Py_qsbr_quiescent_state(qsbr);
        r_loaded = atomic_load_explicit(&head, memory_order_acquire);
        r_seq = _Py_atomic_load_uint64_relaxed(&qsbr->seq);
        break;
    case READ_SEQCST:
        _Py_qsbr_attach(qsbr);
        r_loaded = atomic_load_explicit(&head, memory_order_seq_cst);
        break;
    case READ_ACQUIRE:
        _Py_qsbr_attach(qsbr);
        r_loaded = atomic_load_explicit(&head, memory_order_acquire);
        break;
    default:
        break;
    }
}

static void *
writer_main(void *arg)
{
    (void)arg;
    pin(0);
    _PyThreadState_Attach(writer_ts);
    struct _qsbr_thread_state *qsbr = ((_PyThreadStateImpl *)writer_ts)->qsbr;
    struct object *old = &objects[0];
    struct lc_offsets offsets;
    lc_offsets_init(&offsets, g_seed, g_range);
    uint64_t k = 0;
    for (unsigned long i = 0; i < g_iterations; i++) {
        uint32_t my_delay, their_delay;
        lc_next_pair(&offsets, &my_delay, &their_delay);
        atomic_store_explicit(&old->value, LIVE, memory_order_relaxed);
        atomic_store_explicit(&head, old, memory_order_relaxed);
        w_freed = 0;
        barrier_wait(0, &k);                        // (1) start together
        lc_delay(my_delay);
        writer_part(qsbr);
        if (g_control) {
            barrier_wait(0, &k);                    // control: the reader starts only now
        }
        barrier_wait(0, &k);                        // (2) both parts done
        int old_seen = r_loaded == old;
        int reached;
        if (g_shape == STALE_GOAL || g_shape == RETIRE_BEFORE_UNLINK) {
            reached = QSBR_LEQ(w_goal, r_seq);
            // The consequence: the writer's own quiescent state and poll, as its delayed-free
            // processing would run them; when the goal is reached it frees (poisons) the old
            // object.
            _Py_qsbr_quiescent_state(qsbr);
            if (_Py_qsbr_poll(qsbr, w_goal)) {
                w_freed = 1;
            }
        }
        else {
            reached = w_freed;
        }
        if (w_freed) {
            atomic_store_explicit(&old->value, POISON, memory_order_relaxed);
        }
        counts.reached += reached;
        counts.old_seen += old_seen;
        counts.forbidden += reached && old_seen;
        counts.freed_while_held += w_freed && old_seen;
        lc_tally_add(&tally, my_delay, their_delay, reached && old_seen);
        barrier_wait(0, &k);                        // (3) the reader reads what it holds
        barrier_wait(0, &k);                        // (4) done
    }
    _PyThreadState_Detach(writer_ts);
    return NULL;
}

static void *
reader_main(void *arg)
{
    (void)arg;
    pin(1);
    _PyThreadState_Attach(reader_ts);
    struct _qsbr_thread_state *qsbr = ((_PyThreadStateImpl *)reader_ts)->qsbr;
    int attaches = g_shape == READ_SEQCST || g_shape == READ_ACQUIRE;
    if (attaches) {
        _Py_qsbr_detach(qsbr);      // each iteration attaches QSBR itself
    }
    struct lc_offsets offsets;
    lc_offsets_init(&offsets, g_seed, g_range);
    uint64_t k = 0;
    for (unsigned long i = 0; i < g_iterations; i++) {
        uint32_t their_delay, my_delay;
        lc_next_pair(&offsets, &their_delay, &my_delay);
        barrier_wait(1, &k);                        // (1)
        if (g_control) {
            barrier_wait(1, &k);                    // control: after the writer's part
        }
        lc_delay(my_delay);
        reader_part(qsbr);
        barrier_wait(1, &k);                        // (2)
        barrier_wait(1, &k);                        // (3) the writer freed, or not
        // Still inside the read that loaded it: the object must be alive.
        if (atomic_load_explicit(&r_loaded->value, memory_order_relaxed) == POISON) {
            counts.poisoned_reads++;
        }
        if (attaches) {
            _Py_qsbr_detach(qsbr);
        }
        barrier_wait(1, &k);                        // (4)
    }
    if (attaches) {
        _Py_qsbr_attach(qsbr);
    }
    _PyThreadState_Detach(reader_ts);
    return NULL;
}

static int
usage(const char *argv0)
{
    fprintf(stderr, "usage: %s --list | SHAPE non-advancing|advancing FENCE(0|1) "
                    "CONTROL(0|1) ITERATIONS [RANGE [SEED]]\n", argv0);
    return 2;
}

static int
parse_unsigned(const char *text, unsigned long long max, unsigned long long *value)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (text[0] == '\0' || text[0] == '-' || *end != '\0' || errno != 0 || v > max) {
        return -1;
    }
    *value = v;
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int s = 0; s < SHAPE_COUNT; s++) {
            printf("%s\t%s\n", SHAPES[s].name, SHAPES[s].what);
        }
        printf("profile\t%d\n", QSBR_PROFILE);
        return 0;
    }
    if (argc < 6 || argc > 8) {
        return usage(argv[0]);
    }
    int s = 0;
    while (s < SHAPE_COUNT && strcmp(SHAPES[s].name, argv[1]) != 0) {
        s++;
    }
    if (s == SHAPE_COUNT) {
        fprintf(stderr, "%s: unknown shape '%s' (see --list)\n", argv[0], argv[1]);
        return 2;
    }
    g_shape = (enum shape)s;
    if (strcmp(argv[2], "advancing") == 0) {
        g_advancing = 1;
    }
    else if (strcmp(argv[2], "non-advancing") != 0) {
        return usage(argv[0]);
    }
    if ((strcmp(argv[3], "0") && strcmp(argv[3], "1"))
        || (strcmp(argv[4], "0") && strcmp(argv[4], "1"))) {
        return usage(argv[0]);
    }
    g_fence = argv[3][0] == '1';
    g_control = argv[4][0] == '1';
    unsigned long long value;
    if (parse_unsigned(argv[5], (unsigned long)-1, &value) != 0 || value == 0) {
        return usage(argv[0]);
    }
    g_iterations = (unsigned long)value;
    if (argc > 6) {
        if (parse_unsigned(argv[6], LC_MAX_RANGE, &value) != 0 || value == 0) {
            fprintf(stderr, "%s: RANGE must be 1..%u (1: no offsets)\n", argv[0], LC_MAX_RANGE);
            return 2;
        }
        g_range = (uint32_t)value;
    }
    if (argc > 7) {
        if (parse_unsigned(argv[7], (unsigned long long)-1, &value) != 0) {
            return usage(argv[0]);
        }
        g_seed = value;
    }
    tally.range = g_range;

    interp = PyInterpreterState_New();
    if (interp == NULL || (writer_ts = PyThreadState_New(interp)) == NULL
        || (reader_ts = PyThreadState_New(interp)) == NULL) {
        fprintf(stderr, "%s: could not create the interpreter and thread states\n", argv[0]);
        return 1;
    }
    atomic_store(&objects[0].value, LIVE);
    atomic_store(&objects[1].value, LIVE);
    choose_cpus();
    pthread_t threads[2];
    if (pthread_create(&threads[0], NULL, writer_main, NULL) != 0
        || pthread_create(&threads[1], NULL, reader_main, NULL) != 0) {
        fprintf(stderr, "%s: pthread_create failed\n", argv[0]);
        return 1;
    }
    pthread_join(threads[0], NULL);
    pthread_join(threads[1], NULL);
    PyThreadState_Delete(reader_ts);
    PyThreadState_Delete(writer_ts);
    PyInterpreterState_Delete(interp);
    printf("RESULT\t%s\t%s\t%d\t%d\t%lu\t%lu\t%lu\t%lu\t%lu\t%lu\t%s\t%u\t%llu\n",
           SHAPES[s].name, g_advancing ? "advancing" : "non-advancing", g_fence, g_control,
           g_iterations, counts.forbidden, counts.reached, counts.old_seen,
           counts.freed_while_held, counts.poisoned_reads, pinned, g_range,
           (unsigned long long)g_seed);
    lc_tally_print(&tally, stdout);
    return 0;
}
