// qsbr-cabi-litmus: the hardware litmus of the orderings QSBR depends on, against ANY library
// that exports the QSBR C ABI of include/qsbr_api.h, loaded at run time with dlopen().  A
// harness, not part of the port: the QSBR operations are the library's own exported
// qsbr_api_* functions (as `hazards --binary` drives an interpreter's compiled functions); only
// the protected pointer, the objects and the per-iteration synchronisation are this file's.
//
//   qsbr-cabi-litmus LIBRARY --list
//   qsbr-cabi-litmus LIBRARY SHAPE CONTROL ITERATIONS SEED
//
// SHAPE (--list describes each):
//   read-seqcst           reader: attach, then a seq_cst load of the pointer (its first
//                         protected load); writer (detached, so that its own slot does not
//                         hold the goal back): release-store the new pointer, advance, poll.  Forbidden: the poll reached the goal while the
//                         reader loaded the old pointer.  C11 forbids it when attach's store is
//                         seq_cst (S-ATTACH-1) and poll fences before its scan (S-POLL-1); with a
//                         release store in attach, x86-64 shows it (store buffering).
//   stale-goal            writer: release-store the new pointer, take the goal the profile's
//                         batching takes (deferred_advance on 3.13.0-3.13.5, shared_next on
//                         3.13.6+ and 3.14); reader: advance, quiescent state, load the pointer.
//                         Forbidden: the reader's quiescent state reached the goal while it
//                         loaded the old pointer.  Allowed by C11 and x86-TSO (a hazard of the
//                         callers, docs/semantics.md), shown here as a rate.
//   stale-goal-advancing  the same with advance() as the goal: an atomic read-modify-write, so
//                         forbidden under C11 (S-ADV-1) and on every machine.
//   retire-before-unlink  writer: take the goal, then release-store the new pointer; reader as
//                         in stale-goal.  Reachable even under sequential consistency.
//   read-reference        read-seqcst with the attach replaced by a release store of a flag
//                         (and the writer's flag load after its poll): the rate at which a
//                         release-store attach would show with this library's writer path,
//                         the reference rate of read-seqcst's decide rule.
//   sb-reference          no QSBR call: reader: release-store a flag, seq_cst load of the
//                         pointer; writer: release-store the pointer, seq_cst fence, load the
//                         flag.  Forbidden under SC, allowed by x86-TSO: the rate at which THIS
//                         machine shows store buffering under this protocol at all.
// CONTROL: 1 runs the writer's part to its end before the reader's part starts (a spin barrier
// between them), where the forbidden outcome is impossible under any memory model: a non-zero
// count there is a broken harness.  SEED: the offsets' seed (litmus_core.h's xorshift64*: both
// threads draw the same pair per iteration); each side spins a random 0..63 CPU-relax
// instructions before its racing part, so that the two parts meet at every offset (litmus7's
// technique), and a run is repeated with the same seed.
//
// Two threads, pinned to two distinct CPUs of the process's affinity mask when it has two,
// meet at a spin barrier before and after each iteration's racing part (no sleeps: a waiter
// spins, yielding every few thousand spins so that a loaded machine still makes progress).
// One line on stdout:
//   RESULT <shape> <control> <iterations> <forbidden> <reached> <old_seen> <freed_while_held>
//          <poisoned_reads> <pinned> <goal>
// as in reference_c/litmus/litmus.c.  Exit status 0 after a run, 2 bad usage, 65 the library
// cannot be loaded, 1 a library call failed (its status name on stderr).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsbr_api.h"

// ---------------------------------------------------------------------------------------------
// The per-iteration protocol: reference_c/litmus/litmus_core.h, the one litmus core shared with
// the port's litmus and the interpreter probe (two-thread spin barrier, seeded offset pairs,
// pinning).

#include "litmus_core.h"

// The offsets' range: 0..63 CPU-relax instructions (pause on x86-64, tens of cycles each),
// not lc_delay()'s empty loop: measured on a loaded 2-core AMD EPYC, the release-store attach
// showed through the reference port's checked calls at 1/27-1/50 of read-reference's rate
// with these, at 1/125 with lc_delay over 0..4095, so the decide rule's margin holds.
#define OFFSET_RANGE LC_DEFAULT_RANGE

static void
relax_delay(uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        LC_CPU_RELAX();
    }
}

static struct lc_sync sync_state;

static void
barrier_wait(int role, uint64_t *k)
{
    (void)lc_barrier(&sync_state, role, ++*k, NULL, NULL);
}

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
    if (cpus[which] < 0) {
        return;
    }
    int err = lc_pin(cpus[which]);
    if (err != 0) {
        snprintf(pinned, sizeof(pinned), "none:pinning to CPU %d failed (%s)", cpus[which],
                 strerror(err));
    }
}

// ---------------------------------------------------------------------------------------------
// The library

static struct {
    const int *profile;
    qsbr_api_interp *(*interp_new)(void);
    void (*interp_delete)(qsbr_api_interp *);
    qsbr_api_tstate *(*tstate_new)(qsbr_api_interp *);
    int (*tstate_delete)(qsbr_api_tstate *);
    int64_t (*reserve)(qsbr_api_interp *);
    int (*reg)(qsbr_api_tstate *, int64_t);
    int (*unregister)(qsbr_api_tstate *);
    int (*attach)(qsbr_api_tstate *);
    int (*detach)(qsbr_api_tstate *);
    int (*quiescent_state)(qsbr_api_tstate *);
    uint64_t (*advance)(qsbr_api_interp *);
    int (*poll)(qsbr_api_tstate *, uint64_t, bool *);
    int (*deferred_advance)(qsbr_api_tstate *, uint64_t *);
    int (*shared_next)(qsbr_api_interp *, uint64_t *);
    const char *(*status_name)(int);
} L;

static int
load_library(const char *path)
{
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        fprintf(stderr, "qsbr-cabi-litmus: cannot load %s: %s\n", path, dlerror());
        return -1;
    }
    int missing = 0;
#define SYM(field, name)                                                               \
    do {                                                                               \
        *(void **)(&L.field) = dlsym(handle, name);                                    \
        if (L.field == NULL) {                                                         \
            fprintf(stderr, "qsbr-cabi-litmus: %s does not export %s\n", path, name);  \
            missing = 1;                                                               \
        }                                                                              \
    } while (0)
    SYM(profile, "qsbr_api_profile");
    SYM(interp_new, "qsbr_api_interp_new");
    SYM(interp_delete, "qsbr_api_interp_delete");
    SYM(tstate_new, "qsbr_api_tstate_new");
    SYM(tstate_delete, "qsbr_api_tstate_delete");
    SYM(reserve, "qsbr_api_reserve");
    SYM(reg, "qsbr_api_register");
    SYM(unregister, "qsbr_api_unregister");
    SYM(attach, "qsbr_api_attach");
    SYM(detach, "qsbr_api_detach");
    SYM(quiescent_state, "qsbr_api_quiescent_state");
    SYM(advance, "qsbr_api_advance");
    SYM(poll, "qsbr_api_poll");
    SYM(deferred_advance, "qsbr_api_deferred_advance");
    SYM(shared_next, "qsbr_api_shared_next");
    SYM(status_name, "qsbr_api_status_name");
#undef SYM
    return missing ? -1 : 0;
}

static _Atomic int call_failed;

static void
check(int status, const char *what)
{
    if (status != 0 && !atomic_exchange(&call_failed, 1)) {
        fprintf(stderr, "qsbr-cabi-litmus: %s returned %s\n", what, L.status_name(status));
    }
}

// ---------------------------------------------------------------------------------------------
// The shapes

enum shape { READ_SEQCST, STALE_GOAL, STALE_GOAL_ADVANCING, RETIRE_BEFORE_UNLINK, SB_REFERENCE,
             READ_REFERENCE, SHAPE_COUNT };

static const struct {
    const char *name;
    const char *what;
} SHAPES[SHAPE_COUNT] = {
    {"read-seqcst", "reader: attach, seq_cst load of the pointer; writer (detached): "
     "release-store the new pointer, advance, poll.  Forbidden: the poll reached the goal while the "
     "reader loaded the old pointer (S-ATTACH-1, S-POLL-1, S-SAFE-1)"},
    {"stale-goal", "writer: release-store the new pointer, take the profile's non-advancing goal "
     "(deferred_advance / shared_next); reader: advance, quiescent state, load the pointer.  "
     "Forbidden: the reader's quiescent state reached the goal while it loaded the old pointer "
     "(allowed by C11 and x86-TSO: a hazard of the callers)"},
    {"stale-goal-advancing", "the same with advance() as the goal (an atomic RMW: forbidden)"},
    {"retire-before-unlink", "writer: take the goal, then release-store the new pointer; reader "
     "as in stale-goal (reachable even under sequential consistency)"},
    {"sb-reference", "no QSBR call: reader: store a flag, seq_cst load of the pointer; writer: "
     "store the pointer, seq_cst fence, load the flag.  Forbidden under SC, allowed by x86-TSO: "
     "how often this machine shows store buffering under this protocol"},
    {"read-reference", "read-seqcst with the attach replaced by a release store of a flag: "
     "reader: store the flag, seq_cst load of the pointer; writer (detached): release-store the "
     "new pointer, advance, poll, seq_cst load of the flag.  Forbidden under SC, allowed by C11 "
     "and x86-TSO: the rate at which an attach whose store is only a release would show, with "
     "this library's own writer path"},
};

#define LIVE 42
#define POISON 0xDEAD

struct object {
    _Atomic int value;
};

static struct object objects[2];
static struct object *_Atomic head;
static _Atomic int flag;                // sb-reference

static qsbr_api_interp *interp;
static qsbr_api_tstate *writer_ts, *reader_ts;
static enum shape g_shape;
static int g_control;
static unsigned long g_iterations;
static uint32_t g_seed;
static const char *g_goal = "advancing";

// written before a barrier, read after it
static struct object *r_loaded;
static uint64_t r_floor;                // the reader's own advance: its seq is at least this
static uint64_t w_goal;
static int w_freed, w_flag;

static struct {
    unsigned long forbidden, reached, old_seen, freed_while_held, poisoned_reads;
} counts;

static bool
leq(uint64_t a, uint64_t b)
{
    return (int64_t)(a - b) <= 0;
}

static uint64_t
take_goal(int advancing)
{
    uint64_t goal = 0;
    if (advancing) {
        return L.advance(interp);
    }
    int p = *L.profile;
    if (p == 31300 || p == 31303 || p == 313) {
        // Nine calls in ten take the non-advancing path; the tenth advances (an RMW, which
        // orders the unlink and cannot show the outcome): the rate is a lower bound.
        check(L.deferred_advance(writer_ts, &goal), "deferred_advance");
    }
    else {
        check(L.shared_next(interp, &goal), "shared_next");
    }
    return goal;
}

static void
writer_part(void)
{
    struct object *fresh = &objects[1];
    switch (g_shape) {
    case READ_SEQCST:
        // The writer is detached here (its own seq does not hold the goal back), so nothing
        // but advance's read-modify-write and poll's own fence stands between the unlink and
        // the scan: the shortest path a caller can take.
        atomic_store_explicit(&head, fresh, memory_order_release);         // the unlink
        w_goal = L.advance(interp);
        {
            bool done = false;
            check(L.poll(writer_ts, w_goal, &done), "poll");
            w_freed = done;
        }
        break;
    case STALE_GOAL:
    case STALE_GOAL_ADVANCING:
        atomic_store_explicit(&head, fresh, memory_order_release);
        w_goal = take_goal(g_shape == STALE_GOAL_ADVANCING);
        break;
    case RETIRE_BEFORE_UNLINK:
        w_goal = take_goal(0);
        atomic_store_explicit(&head, fresh, memory_order_release);
        break;
    case SB_REFERENCE:
        atomic_store_explicit(&head, fresh, memory_order_release);
        atomic_thread_fence(memory_order_seq_cst);
        w_flag = atomic_load_explicit(&flag, memory_order_seq_cst);
        break;
    case READ_REFERENCE:
        atomic_store_explicit(&head, fresh, memory_order_release);
        w_goal = L.advance(interp);
        {
            bool done = false;
            check(L.poll(writer_ts, w_goal, &done), "poll");
        }
        w_flag = atomic_load_explicit(&flag, memory_order_seq_cst);
        break;
    default:
        break;
    }
}

static void
reader_part(void)
{
    switch (g_shape) {
    case READ_SEQCST:
        check(L.attach(reader_ts), "attach");
        r_loaded = atomic_load_explicit(&head, memory_order_seq_cst);
        break;
    case STALE_GOAL:
    case STALE_GOAL_ADVANCING:
    case RETIRE_BEFORE_UNLINK:
        r_floor = L.advance(interp);
        check(L.quiescent_state(reader_ts), "quiescent_state");
        r_loaded = atomic_load_explicit(&head, memory_order_acquire);
        break;
    case SB_REFERENCE:
    case READ_REFERENCE:
        atomic_store_explicit(&flag, 1, memory_order_release);
        r_loaded = atomic_load_explicit(&head, memory_order_seq_cst);
        break;
    default:
        break;
    }
}

static bool
qsbr_shape(void)
{
    return g_shape != SB_REFERENCE;
}

static void *
writer_main(void *arg)
{
    (void)arg;
    pin(0);
    struct lc_offsets offsets;
    lc_offsets_init(&offsets, g_seed, OFFSET_RANGE);
    uint64_t k = 0;
    struct object *old = &objects[0];
    int attached = qsbr_shape() && g_shape != READ_SEQCST && g_shape != READ_REFERENCE;
    if (attached) {
        check(L.attach(writer_ts), "attach");
    }
    for (unsigned long i = 0; i < g_iterations; i++) {
        uint32_t my_delay, their_delay;
        lc_next_pair(&offsets, &my_delay, &their_delay);
        atomic_store_explicit(&old->value, LIVE, memory_order_relaxed);
        atomic_store_explicit(&head, old, memory_order_relaxed);
        atomic_store_explicit(&flag, 0, memory_order_relaxed);
        w_freed = 0, w_flag = 0;
        if (g_shape == READ_SEQCST) {
            // A poll of a goal not reached yet scans every slot, as a reclaimer that keeps
            // polling does: the reader's slot line is then shared with this CPU, so the
            // reader's attach store must wait for an invalidation (it sits in its store
            // buffer), as it would in a program whose reclaimer scans.  Without it the line is
            // the reader's own (its detach wrote it) and the store drains at once.
            bool done = false;
            check(L.poll(writer_ts, w_goal + 2, &done), "poll");
        }
        barrier_wait(0, &k);                        // (0) set up; the reader warms its cache
        barrier_wait(0, &k);                        // (1) start together
        if (!g_control) {
            relax_delay(my_delay);
        }
        writer_part();
        if (g_control) {
            barrier_wait(0, &k);                    // control: the reader starts only now
        }
        barrier_wait(0, &k);                        // (2) both parts done
        int old_seen = r_loaded == old;
        int reached;
        if (g_shape == READ_SEQCST) {
            reached = w_freed;
        }
        else if (g_shape == SB_REFERENCE || g_shape == READ_REFERENCE) {
            reached = !w_flag;                      // the writer did not see the reader's store
        }
        else {
            // The reader's quiescent state stored a wr_seq at least its own advance's result.
            reached = leq(w_goal, r_floor);
            // The consequence, as a delayed-free pass would run it.
            bool done = false;
            check(L.quiescent_state(writer_ts), "quiescent_state");
            check(L.poll(writer_ts, w_goal, &done), "poll");
            w_freed = done;
        }
        if (w_freed) {
            atomic_store_explicit(&old->value, POISON, memory_order_relaxed);
        }
        counts.reached += (unsigned long)reached;
        counts.old_seen += (unsigned long)old_seen;
        counts.forbidden += (unsigned long)(reached && old_seen);
        counts.freed_while_held += (unsigned long)(w_freed && old_seen);
        (void)their_delay;
        barrier_wait(0, &k);                        // (3) the reader reads what it holds
        barrier_wait(0, &k);                        // (4) done
    }
    if (attached) {
        check(L.detach(writer_ts), "detach");
    }
    return NULL;
}

static void *
reader_main(void *arg)
{
    (void)arg;
    pin(1);
    struct lc_offsets offsets;
    lc_offsets_init(&offsets, g_seed, OFFSET_RANGE);
    uint64_t k = 0;
    int attaches = g_shape == READ_SEQCST;
    if (qsbr_shape() && !attaches && g_shape != READ_REFERENCE) {
        check(L.attach(reader_ts), "attach");
    }
    for (unsigned long i = 0; i < g_iterations; i++) {
        uint32_t their_delay, my_delay;
        lc_next_pair(&offsets, &their_delay, &my_delay);
        (void)their_delay;
        barrier_wait(1, &k);                        // (0)
        // Warm: the pointer's line shared in this CPU's cache, so that the racing load hits
        // it before the writer's invalidation arrives (else the load's own miss would fetch
        // the writer's new value and hide every reordering of the stores before it).
        (void)atomic_load_explicit(&head, memory_order_relaxed);
        (void)atomic_load_explicit(&flag, memory_order_relaxed);
        barrier_wait(1, &k);                        // (1)
        if (g_control) {
            barrier_wait(1, &k);                    // control: after the writer's part
        }
        else {
            relax_delay(my_delay);
        }
        reader_part();
        barrier_wait(1, &k);                        // (2)
        barrier_wait(1, &k);                        // (3) the writer freed, or not
        if (atomic_load_explicit(&r_loaded->value, memory_order_relaxed) == POISON) {
            counts.poisoned_reads++;
        }
        if (attaches) {
            check(L.detach(reader_ts), "detach");
        }
        barrier_wait(1, &k);                        // (4)
    }
    if (qsbr_shape() && !attaches && g_shape != READ_REFERENCE) {
        check(L.detach(reader_ts), "detach");
    }
    return NULL;
}

static qsbr_api_tstate *
registered(void)
{
    qsbr_api_tstate *t = L.tstate_new(interp);
    if (t == NULL) {
        return NULL;
    }
    int64_t index = L.reserve(interp);
    if (index < 0 || L.reg(t, index) != 0) {
        return NULL;
    }
    return t;
}

static int
usage(const char *argv0)
{
    fprintf(stderr, "usage: %s LIBRARY --list | LIBRARY SHAPE CONTROL(0|1) ITERATIONS SEED\n",
            argv0);
    return 2;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[2], "--list") == 0) {
        for (int s = 0; s < SHAPE_COUNT; s++) {
            printf("%s\t%s\n", SHAPES[s].name, SHAPES[s].what);
        }
        return 0;
    }
    if (argc != 6) {
        return usage(argv[0]);
    }
    int s = 0;
    while (s < SHAPE_COUNT && strcmp(SHAPES[s].name, argv[2]) != 0) {
        s++;
    }
    if (s == SHAPE_COUNT) {
        fprintf(stderr, "%s: unknown shape '%s' (see --list)\n", argv[0], argv[2]);
        return 2;
    }
    g_shape = (enum shape)s;
    if (strcmp(argv[3], "0") && strcmp(argv[3], "1")) {
        return usage(argv[0]);
    }
    g_control = argv[3][0] == '1';
    char *end;
    errno = 0;
    g_iterations = strtoul(argv[4], &end, 10);
    if (*end != '\0' || errno != 0 || g_iterations == 0 || argv[4][0] == '-') {
        return usage(argv[0]);
    }
    g_seed = (uint32_t)strtoul(argv[5], &end, 10);
    if (*end != '\0') {
        return usage(argv[0]);
    }
    if (load_library(argv[1]) != 0) {
        return 65;
    }
    if (g_shape == STALE_GOAL || g_shape == RETIRE_BEFORE_UNLINK) {
        int p = *L.profile;
        g_goal = (p == 31300 || p == 31303 || p == 313) ? "deferred_advance" : "shared_next";
    }
    else if (g_shape == SB_REFERENCE) {
        g_goal = "none";
    }
    interp = L.interp_new();
    if (interp == NULL || (writer_ts = registered()) == NULL
        || (reader_ts = registered()) == NULL) {
        fprintf(stderr, "%s: could not create the interpreter and two registered thread "
                "states\n", argv[0]);
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
    L.unregister(reader_ts);
    L.unregister(writer_ts);
    L.tstate_delete(reader_ts);
    L.tstate_delete(writer_ts);
    L.interp_delete(interp);
    if (atomic_load(&call_failed)) {
        return 1;
    }
    printf("RESULT\t%s\t%d\t%lu\t%lu\t%lu\t%lu\t%lu\t%lu\t%s\t%s\n", SHAPES[s].name, g_control,
           g_iterations, counts.forbidden, counts.reached, counts.old_seen,
           counts.freed_while_held, counts.poisoned_reads, pinned, g_goal);
    return 0;
}
