// qsbr-cabi-torture: the concurrency torture against ANY library that exports the QSBR C ABI of
// include/qsbr_api.h, loaded at run time with dlopen().  It is a harness, not part of the port:
// it only calls qsbr_api_* functions, so a C, C++ or Rust port is tortured exactly like the
// reference port.  The objects, the read-side sections and the writers' reclamation are the
// torture core (torture_core.h) in its C ABI flavour, shared with the port's own torture.
//
//   qsbr-cabi-torture LIBRARY [-r readers] [-w writers] [-g reservers] [-k slots per reserver]
//                     [-c churn cycles per thread] [-u updates per round] [-n rounds] [-s seconds] [-S seed] [-x] [-q]
//                     [-H history-file] [-E history-rounds]
//
// The run is a sequence of rounds, each on a fresh interpreter (new interpreters for the whole
// run, so the slot array keeps growing from its first size while everything else runs):
//
//   1. advance race: every round thread calls advance() at once; the returned goals must be
//      distinct and wr_seq must have moved by exactly 2 per call (S-ADV-1, atomicity); then
//      the reserve race: writers and reservers reserve and register a few slots back to back,
//      so growths run while the others wait for the mutex, and readers stay attached reporting
//      quiescent states, so growths must stop them (S-RES-1: each index must be the slot
//      reserved, no slot is handed out twice, no registered thread state loses its slot);
//      then the churn (readers sleep at a barrier, so the churners have the CPUs): every
//      writer and reserver unregisters and re-registers its thread state -c times in step with
//      a partner, so that unregister's freelist push races the partner's reserve;
//   2. grace periods under growth: readers attached to the interpreter hold the shared object
//      across read-side sections and leave them either with a quiescent state or with a detach
//      (each in its own function, so a ThreadSanitizer report names which edge was missing);
//      writers unlink it (alternately an exchange, or a lock plus a release store that has no
//      full barrier before the goal is taken), take goals from advance() or, with no RMW at
//      all, from shared_next()/deferred_advance(), and poison and free an object only once
//      poll() allows; several reservers reserve and register slots at once, so the array grows
//      (stop-the-world) while readers and writers run, and check each index they get (S-RES-1);
//   3. liveness: once every reader has detached and one advance followed the last goal, each
//      writer's poll of every pending goal must be true (S-SAFE-2, S-POLL-2);
//   4. state (quiesced, when the library exports qsbr_api_snapshot_read): after the churn
//      (before the grace phase's growths rebuild the freelist), after the liveness check and
//      after every thread state was deleted, the snapshot must hold what docs/semantics.md
//      says (check_state: freelist plus allocated slots is the array, no slot
//      twice or lost, each registered thread state owns its slot, seq 0 when detached,
//      sequences odd and in order), so a freelist update lost to a race (an unregister
//      pushing without the mutex while reserves pop: the churn of step 1) fails the round
//      naming S-UNREG-1 / S-FREE-*;
//   5. resources: the library's live allocations (qsbr_api_mem_live_blocks, when exported) are
//      the same after the round's interpreter is deleted as before it was created (a growth
//      that leaks the old array: S-RES-1).
//
// Errors are printed as "error FACT: detail" lines (the first few of each fact); the last line
// is "result: PASS" or "result: FAIL ...".  Exit status: 0 no error and objects were freed,
// 1 errors, 2 nothing freed, 64 usage, 65 the library cannot be loaded.
//
// With -H, the first -E rounds (default 4) also record every operation of every thread state
// in a binary history that conformance/checks/contract.py judges (see there for the format):
// each operation is bracketed by two tickets from one global counter.  Those rounds run
// slower and with more barriers (each ticket is an atomic read-modify-write), so the other
// rounds are not recorded.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qsbr_api.h"

#define MAX_THREADS     64
#define ADVANCES_PER_THREAD 2048
#define NOINLINE __attribute__((noinline))

// ---------------------------------------------------------------------------------------------
// The library, through dlsym

static struct {
    void *handle;
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
    uint64_t (*shared_current)(qsbr_api_interp *);
    int (*poll)(qsbr_api_tstate *, uint64_t, bool *);
    int (*deferred_advance)(qsbr_api_tstate *, uint64_t *);
    int (*shared_next)(qsbr_api_interp *, uint64_t *);
    int (*tstate_slot)(qsbr_api_tstate *, int64_t *);
    const char *(*status_name)(int);
    long (*mem_live_blocks)(void);     // optional
    // optional: the state check after each round
    void (*snapshot_capacity)(qsbr_api_interp *, int64_t *, int64_t *);
    int (*snapshot_read)(qsbr_api_interp *, qsbr_api_snapshot *, qsbr_api_slot *, int64_t *,
                         int64_t, qsbr_api_thread *, int64_t);
    const char *(*version)(void);      // optional: qsbr_api_version
} L;

static int
load_library(const char *path)
{
    L.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (L.handle == NULL) {
        fprintf(stderr, "qsbr-cabi-torture: cannot load %s: %s\n", path, dlerror());
        return -1;
    }
    int missing = 0;
#define SYM(field, name)                                                          \
    do {                                                                          \
        *(void **)(&L.field) = dlsym(L.handle, name);                             \
        if (L.field == NULL) {                                                    \
            fprintf(stderr, "qsbr-cabi-torture: %s does not export %s\n", path, name); \
            missing = 1;                                                          \
        }                                                                         \
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
    SYM(shared_current, "qsbr_api_shared_current");
    SYM(poll, "qsbr_api_poll");
    SYM(deferred_advance, "qsbr_api_deferred_advance");
    SYM(shared_next, "qsbr_api_shared_next");
    SYM(tstate_slot, "qsbr_api_tstate_slot");
    SYM(status_name, "qsbr_api_status_name");
#undef SYM
    *(void **)(&L.mem_live_blocks) = dlsym(L.handle, "qsbr_api_mem_live_blocks");
    *(void **)(&L.snapshot_capacity) = dlsym(L.handle, "qsbr_api_snapshot_capacity");
    *(void **)(&L.snapshot_read) = dlsym(L.handle, "qsbr_api_snapshot_read");
    *(void **)(&L.version) = dlsym(L.handle, "qsbr_api_version");
    if (L.snapshot_read == NULL) {
        L.snapshot_capacity = NULL;
    }
    return missing ? -1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Errors, by fact

enum { F_SAFE1, F_SAFE2, F_ADV1, F_RES1, F_POLL2, F_REG1, F_UNREG1, F_FREE1, F_FREE3,
       F_DETACH1, F_SEQ2, F_HARNESS, F_COUNT };
static const char *const fact_name[F_COUNT] = {
    "S-SAFE-1", "S-SAFE-2", "S-ADV-1", "S-RES-1", "S-POLL-2", "S-REG-1", "S-UNREG-1",
    "S-FREE-1", "S-FREE-3", "S-DETACH-1", "S-SEQ-2", "HARNESS"};
static _Atomic uint64_t fact_errors[F_COUNT];
static _Atomic int errors_seen;
static int stop_on_error;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

static void
report(int fact, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void
report(int fact, const char *format, ...)
{
    uint64_t n = atomic_fetch_add(&fact_errors[fact], 1);
    atomic_store(&errors_seen, 1);
    if (n < 5) {
        va_list ap;
        va_start(ap, format);
        pthread_mutex_lock(&print_lock);
        printf("error %s: ", fact_name[fact]);
        vprintf(format, ap);
        printf("\n");
        fflush(stdout);
        pthread_mutex_unlock(&print_lock);
        va_end(ap);
    }
}

static int
check_status(int status, const char *what)
{
    if (status != 0) {
        // A valid call on a registered thread state failed.  A thread state that loses its
        // slot while registered (STALE_SLOT, NOT_REGISTERED), or whose own last attach or
        // detach is lost (ALREADY_ATTACHED on its attach, NOT_ATTACHED on its detach: the
        // store went to an array a growth had already copied), was moved by a growth that
        // did not stop the world or did not re-point it (S-RES-1); anything else breaks the
        // operation's own rule, reported with the call.
        const char *name = L.status_name(status);
        int fact = (strcmp(name, "STALE_SLOT") == 0 || strcmp(name, "NOT_REGISTERED") == 0
                    || strcmp(name, "ALREADY_ATTACHED") == 0
                    || strcmp(name, "NOT_ATTACHED") == 0)
                   ? F_RES1 : F_HARNESS;
        report(fact, "%s on a registered thread state returned %s%s", what, name,
               fact == F_RES1 ? " (its slot moved under it: a growth that did not stop the "
                                "world or re-point it)" : "");
    }
    return status;
}

// ---------------------------------------------------------------------------------------------
// History (see conformance/checks/contract.py): records of 6 uint64 words
//   before, after, tstate id, kind, value (goal), result
enum { H_ATTACH = 1, H_DETACH = 2, H_QS = 3, H_GOAL_ADVANCE = 4, H_GOAL_NEXT = 5, H_POLL = 6 };

static const char *const kind_name[] = {
    "?", "attach", "detach", "quiescent_state", "advance", "shared_next/deferred_advance",
    "poll"};

static _Atomic uint64_t ticket;
static int history_on;                  // this round records
static FILE *history_file;
static pthread_mutex_t history_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t next_tstate_id = 1;

struct hbuf {
    uint64_t *words;
    size_t len, cap;
};

static uint64_t
tick(void)
{
    return history_on ? atomic_fetch_add(&ticket, 1) + 1 : 0;
}

static void
record(struct hbuf *h, uint64_t before, uint64_t after, uint64_t id, uint64_t kind,
       uint64_t value, uint64_t result)
{
    if (!history_on) {
        return;
    }
    if (h->len + 6 > h->cap) {
        h->cap = h->cap ? h->cap * 2 : 6 * 4096;
        h->words = realloc(h->words, h->cap * sizeof(uint64_t));
        if (h->words == NULL) {
            abort();
        }
    }
    uint64_t *w = h->words + h->len;
    w[0] = before, w[1] = after, w[2] = id, w[3] = kind, w[4] = value, w[5] = result;
    h->len += 6;
}

static void
flush_history(struct hbuf *h)
{
    if (history_file != NULL && h->len) {
        pthread_mutex_lock(&history_lock);
        fwrite(h->words, sizeof(uint64_t), h->len, history_file);
        pthread_mutex_unlock(&history_lock);
    }
    h->len = 0;
}

// A thread state of the torture, with its history id.
struct ts {
    qsbr_api_tstate *t;
    uint64_t id;
};

#define LOGGED(h, ts, kind, value, call)                    \
    do {                                                    \
        uint64_t before_ = tick();                          \
        int status_ = (call);                               \
        uint64_t after_ = tick();                           \
        check_status(status_, kind_name[(kind)]);           \
        record((h), before_, after_, (ts)->id, (kind), (value), 0); \
    } while (0)

// ---------------------------------------------------------------------------------------------
// A round

struct config {
    int readers, writers, reservers, slots_per_reserver;
    int churn;                          // reserve/register/unregister/delete cycles per thread
    uint64_t updates_per_round, rounds;
    double seconds;
    unsigned seed;
    int quiet;
    uint64_t history_rounds;
};

struct round {
    const struct config *c;
    qsbr_api_interp *interp;
    int profile;
    // One shared pointer per writer (each writer is the only one that replaces its own, so
    // it can unlink with a plain release store); readers read any of them.
    struct tobj *current[MAX_THREADS];  // atomic
    pthread_barrier_t barrier;
    _Atomic int readers_stop;
    _Atomic int readers_running;
    _Atomic int writers_done;
    _Atomic int race_finished;          // threads done with the reserve race
    uint64_t *advance_goals;            // ADVANCES_PER_THREAD per thread
    _Atomic uint64_t updates;
    _Atomic uint64_t sections;          // read-side sections completed by all readers
    // reservers' indices: owner of each index (0 = none), to find two at once
    _Atomic uint64_t *owned;
    int64_t owned_cap;
    _Atomic uint64_t churn_step[MAX_THREADS];   // churn partners' progress (churn_meet)
    _Atomic int churn_done[MAX_THREADS];
};

static _Atomic uint64_t total_reads, total_updates, total_frees, total_growth_slots;
static _Atomic uint64_t total_rounds, max_pending;

#define RACE_SLOTS 10

struct worker {
    struct round *r;
    int index;
    unsigned rng;
    struct hbuf h;
    struct ts *own;                 // a writer's registered thread state (for its polls)
    struct ts race[RACE_SLOTS];     // slots taken in the reserve race
    int race_made;
};

// The torture core in its C ABI flavour: plain reads of the objects (volatile, so each is
// made) and plain poisoning stores, so that under ThreadSanitizer a read the grace period does
// not order before the writer's poisoning is reported as a data race; a quarantine of 128.
#define TC_WORKER struct worker
#define TC_QUARANTINE 128
#include "torture_core.h"

static bool logged_poll(struct worker *w, struct ts *ts, uint64_t goal);

// ---------------------------------------------------------------------------------------------
// The core's hooks

static const struct tobj *
tc_load_current(struct worker *w)
{
    int which = (int)(tc_random(&w->rng) % (unsigned)w->r->c->writers);
    return __atomic_load_n(&w->r->current[which], __ATOMIC_ACQUIRE);
}

// `how` says how the reader will leave its section, for the error message.
static void
tc_bad_object(struct worker *w, const struct tobj *o, enum tc_verdict verdict, uint64_t magic,
              const char *how)
{
    (void)w;
    switch (verdict) {
        case TC_RECLAIMED:
            report(F_SAFE1, "a reader (section ended by %s) read object %llu after it was "
                   "reclaimed: poll() said its goal was reached too early", how,
                   (unsigned long long)o->serial);
            break;
        case TC_GARBAGE:
            report(F_SAFE1, "a reader (section ended by %s) read a freed object (garbage magic "
                   "%#llx)", how, (unsigned long long)magic);
            break;
        case TC_TOO_OLD:
            report(F_SAFE1, "a reader (section ended by %s) still held object %llu after its "
                   "grace period ended", how, (unsigned long long)o->serial);
            break;
        default:
            report(F_SAFE1, "a reader read a corrupted object %llu",
                   (unsigned long long)o->serial);
            break;
    }
}

static bool
tc_poll(struct worker *w, uint64_t goal)
{
    return logged_poll(w, w->own, goal);
}

static void
tc_advance(struct worker *w)
{
    (void)L.advance(w->r->interp);
}

static void
tc_reclaimed(struct worker *w, struct tobj *o)
{
    (void)w, (void)o;
}

static int
new_registered(struct round *r, struct ts *ts, int64_t *index_out, int yield_between)
{
    ts->t = L.tstate_new(r->interp);
    ts->id = atomic_fetch_add(&next_tstate_id, 1);
    if (ts->t == NULL) {
        report(F_HARNESS, "tstate_new returned NULL");
        return -1;
    }
    int64_t index = L.reserve(r->interp);
    if (yield_between) {
        // Let a thread waiting for the mutex take it (and grow the array) before this one
        // takes it again to register: what reserve did after its unlock is then unordered
        // with that growth (gh-129732 under ThreadSanitizer).
        sched_yield();
    }
    if (index_out) {
        *index_out = index;
    }
    if (index < 0) {
        report(F_RES1, "reserve() returned %lld with memory available",
               (long long)index);
        return -1;
    }
    int status = L.reg(ts->t, index);
    if (status != 0) {
        report(F_RES1, "reserve() returned index %lld, which register() rejects: %s (the "
               "index does not designate the slot reserved, e.g. computed against another "
               "array after a concurrent growth)", (long long)index, L.status_name(status));
        L.tstate_delete(ts->t);
        ts->t = NULL;
        return -1;
    }
    int64_t slot = -3;
    if (check_status(L.tstate_slot(ts->t, &slot), "tstate_slot") == 0 && slot != index) {
        report(F_RES1, "reserve() returned index %lld, but the registered thread state has "
               "slot %lld", (long long)index, (long long)slot);
    }
    return 0;
}

static void
delete_registered(struct ts *ts)
{
    if (ts->t != NULL) {
        check_status(L.unregister(ts->t), "unregister");
        check_status(L.tstate_delete(ts->t), "tstate_delete");
        ts->t = NULL;
    }
}

static void
advance_race(struct worker *w)
{
    struct round *r = w->r;
    uint64_t *goals = r->advance_goals + (size_t)w->index * ADVANCES_PER_THREAD;
    for (int i = 0; i < ADVANCES_PER_THREAD; i++) {
        goals[i] = L.advance(r->interp);
    }
}

static void
own_index(struct worker *w, int64_t index)
{
    struct round *r = w->r;
    if (index >= 0 && index < r->owned_cap) {
        uint64_t expected = 0, me = (uint64_t)w->index + 1;
        if (!atomic_compare_exchange_strong(&r->owned[index], &expected, me)) {
            report(F_RES1, "two threads hold slot %lld at once (reserve returned it twice)",
                   (long long)index);
        }
    }
}

static void
disown(struct worker *w, struct ts *ts)
{
    int64_t index = -1;
    if (ts->t != NULL && L.tstate_slot(ts->t, &index) == 0 && index >= 0
        && index < w->r->owned_cap) {
        atomic_store(&w->r->owned[index], 0);
    }
    delete_registered(ts);
}

#if defined(__x86_64__) || defined(__i386__)
#  define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#  define CPU_RELAX() __asm__ __volatile__("yield")
#else
#  define CPU_RELAX() ((void)0)
#endif

#ifndef CHURN_OFFSETS
#  define CHURN_OFFSETS 4
#endif

// Churn partners meet before each step: churner 2k and 2k+1 (writers and reservers, counted
// from the first writer) wait for each other's step count, spinning (a partner that finished
// is not waited for).  At each step one of them unregisters (unregister's freelist push) while
// the other reserves and registers (reserve's pop); the reserver first spins a random
// 0..CHURN_OFFSETS-1 iterations, so that the pop falls on every offset of the push (the
// litmus technique).  Short offsets: the partners meet within about one cache-line transfer,
// and the push follows the meeting by a few locked instructions (measured on the reference
// port: 0..3 caught a lock-free push in 9 of 14 runs of 12 rounds, 0..15 in 1 of 6, 0..63 in 1
// of 6, on a loaded 2-core AMD EPYC).
static void
churn_meet(struct worker *w, int me, uint64_t step, int popper)
{
    struct round *r = w->r;
    atomic_store(&r->churn_step[me], step);
    int partner = me ^ 1;
    if (partner < r->c->writers + r->c->reservers) {
        for (unsigned spins = 1; atomic_load(&r->churn_step[partner]) < step
                                 && !atomic_load(&r->churn_done[partner]); spins++) {
            CPU_RELAX();
            if ((spins & 63) == 0) {
                sched_yield();
            }
        }
    }
    if (popper) {
        for (unsigned n = tc_random(&w->rng) % CHURN_OFFSETS; n > 0; n--) {
            CPU_RELAX();
        }
    }
}

// The churn: every writer and reserver alternately unregisters its thread state and reserves
// and registers it again, -c steps, in step with a partner (churn_meet) that does the other,
// so that unregister's freelist push races the partner's reserve (pop, or growth when the
// list is empty).  A push or pop made without the shared mutex loses a slot or hands one out
// twice: own_index() sees the second, the state check after the churn (check_state) both.
static void
churn(struct worker *w)
{
    struct round *r = w->r;
    int me = w->index - r->c->readers;
    struct ts t = {0};
    int64_t index = -1;
    int registered = 0;
    if (r->c->churn > 0 && new_registered(r, &t, &index, 0) == 0) {
        registered = 1;
        own_index(w, index);
        for (int k = 0; k < r->c->churn && !(stop_on_error && atomic_load(&errors_seen)); k++) {
            int popper = ((k + me) & 1) != 0;
            if (popper == registered) {
                continue;       // the first step of an odd churner: it is registered already
            }
            churn_meet(w, me, (uint64_t)k + 1, popper);
            if (!popper) {
                if (index >= 0 && index < r->owned_cap) {
                    atomic_store(&r->owned[index], 0);
                }
                if (check_status(L.unregister(t.t), "unregister") != 0) {
                    break;
                }
                registered = 0;
                continue;
            }
            index = L.reserve(r->interp);
            int status = index < 0 ? -1 : L.reg(t.t, index);
            if (status != 0) {
                report(F_RES1, "churn: reserve() returned %lld, which register() rejects "
                       "(%s): the slot was handed out twice, or the index is wrong",
                       (long long)index, status < 0 ? "no index" : L.status_name(status));
                break;
            }
            registered = 1;
            own_index(w, index);
        }
        if (registered) {
            disown(w, &t);
        }
        else {
            check_status(L.tstate_delete(t.t), "tstate_delete");
        }
    }
    atomic_store(&r->churn_done[me], 1);
}

// Every round thread reserves and registers a few slots at once, back to back: the array
// grows (stop-the-world) several times while the others hold the mutex or wait for it, so an
// index computed outside the mutex (gh-129732) designates the wrong slot (S-RES-1).
static void
reserve_race(struct worker *w)
{
    for (w->race_made = 0; w->race_made < RACE_SLOTS; w->race_made++) {
        int64_t index = -1;
        if (new_registered(w->r, &w->race[w->race_made], &index, 1) != 0) {
            break;
        }
        own_index(w, index);
    }
    atomic_fetch_add(&w->r->race_finished, 1);
}

static void
end_reserve_race(struct worker *w)
{
    for (int i = 0; i < w->race_made; i++) {
        disown(w, &w->race[i]);
    }
}

// A read-side section that ends with a quiescent state, and one that ends with a detach: kept
// in separate functions, so a ThreadSanitizer report's stack says which edge did not order the
// reads before the reclamation.
static NOINLINE uint64_t
reader_section_then_quiesce(struct worker *w, struct ts *ts)
{
    // 1..8 steps; now and then a long section (many yields), so that a too-early reclamation
    // has time to happen while the object is held, also in the slower recorded rounds.
    uint64_t reads = tc_read_section(w, 8, true, "a quiescent state");
    LOGGED(&w->h, ts, H_QS, 0, L.quiescent_state(ts->t));
    return reads;
}

static NOINLINE uint64_t
reader_section_then_detach(struct worker *w, struct ts *ts)
{
    uint64_t reads = tc_hold_across_yield(w, "a detach");
    LOGGED(&w->h, ts, H_DETACH, 0, L.detach(ts->t));
    sched_yield();
    LOGGED(&w->h, ts, H_ATTACH, 0, L.attach(ts->t));
    return reads;
}

// The same for the reporting reader of the reserve race, and for a reserver's short section:
// every check a reader makes sits under a function whose name says how its section ends.
static NOINLINE void
reporter_step_then_quiesce(struct worker *w, struct ts *ts)
{
    tc_check_object(w, tc_load_current(w), "a quiescent state");
    LOGGED(&w->h, ts, H_QS, 0, L.quiescent_state(ts->t));
}

static NOINLINE void
reserver_section_then_detach(struct worker *w, struct ts *ts)
{
    LOGGED(&w->h, ts, H_ATTACH, 0, L.attach(ts->t));
    tc_check_object(w, tc_load_current(w), "a detach");
    LOGGED(&w->h, ts, H_DETACH, 0, L.detach(ts->t));
}

static void *
reader_main(void *arg)
{
    struct worker *w = arg;
    struct round *r = w->r;
    struct ts ts = {0};
    int ok = new_registered(r, &ts, NULL, 0) == 0;
    pthread_barrier_wait(&r->barrier);          // 1: registered
    advance_race(w);
    if (ok) {
        // While the others race to reserve (and grow the array), stay attached and keep
        // reporting quiescent states: growths must stop this thread (S-RES-1).
        LOGGED(&w->h, &ts, H_ATTACH, 0, L.attach(ts.t));
        while (atomic_load(&r->race_finished) < r->c->writers + r->c->reservers) {
            reporter_step_then_quiesce(w, &ts);
            sched_yield();          // leave the CPUs to the churn partners
        }
        LOGGED(&w->h, &ts, H_DETACH, 0, L.detach(ts.t));
    }
    pthread_barrier_wait(&r->barrier);          // 2: advance and reserve races done
    pthread_barrier_wait(&r->barrier);          // 2b: the churn is done (readers sleep)
    pthread_barrier_wait(&r->barrier);          // 3: checked; grace phase starts
    uint64_t reads = 0;
    if (ok) {
        LOGGED(&w->h, &ts, H_ATTACH, 0, L.attach(ts.t));
        while (!atomic_load_explicit(&r->readers_stop, memory_order_acquire)) {
            if (tc_random(&w->rng) % 3 == 0) {
                reads += reader_section_then_detach(w, &ts);
            }
            else {
                reads += reader_section_then_quiesce(w, &ts);
            }
            atomic_fetch_add_explicit(&r->sections, 1, memory_order_relaxed);
        }
        LOGGED(&w->h, &ts, H_DETACH, 0, L.detach(ts.t));
    }
    atomic_fetch_add(&total_reads, reads);
    atomic_fetch_sub(&r->readers_running, 1);
    pthread_barrier_wait(&r->barrier);          // 4: every reader detached
    pthread_barrier_wait(&r->barrier);          // 4b: the last advance is done
    pthread_barrier_wait(&r->barrier);          // 5: liveness checked
    pthread_barrier_wait(&r->barrier);          // 5b: the state was checked (quiesced)
    delete_registered(&ts);
    end_reserve_race(w);
    return NULL;
}

static bool
logged_poll(struct worker *w, struct ts *ts, uint64_t goal)
{
    bool result = false;
    uint64_t before = tick();
    int status = L.poll(ts->t, goal, &result);
    uint64_t after = tick();
    check_status(status, "poll");
    record(&w->h, before, after, ts->id, H_POLL, goal, result);
    return result;
}

static void *
writer_main(void *arg)
{
    struct worker *w = arg;
    struct round *r = w->r;
    const struct config *c = r->c;
    struct ts ts = {0};
    int ok = new_registered(r, &ts, NULL, 0) == 0;
    w->own = &ts;
    pthread_barrier_wait(&r->barrier);          // 1
    advance_race(w);
    reserve_race(w);
    pthread_barrier_wait(&r->barrier);          // 2
    churn(w);
    pthread_barrier_wait(&r->barrier);          // 2b
    pthread_barrier_wait(&r->barrier);          // 3
    struct tc_retired retired;
    memset(&retired, 0, sizeof(retired));
    if (ok) {
        LOGGED(&w->h, &ts, H_ATTACH, 0, L.attach(ts.t));
        for (uint64_t n = 0; n < c->updates_per_round; n++) {
            uint64_t serial = atomic_fetch_add(&r->updates, 1) + 1;
            // Paced by the readers (a count, not a clock): on a loaded machine the writers
            // would otherwise finish a round before a reader is scheduled.  Loosely (a
            // section per 8 updates), and closely in the recorded rounds, so the history
            // holds readers to judge.
            uint64_t wanted = history_on ? serial / 2 : serial / 8;
            // While waiting, keep polling (a scan races the readers' stores; the oldest
            // object is reclaimed as soon as its goal is reached).
            while (c->readers
                   && atomic_load_explicit(&r->sections, memory_order_relaxed) < wanted
                   && atomic_load_explicit(&r->readers_running, memory_order_relaxed)
                      == c->readers
                   && !(stop_on_error && atomic_load(&errors_seen))) {
                if (!tc_reclaim_one(w, &retired)) {
                    sched_yield();
                }
            }
            struct tobj *fresh = tc_new_object(serial), *old;
            unsigned choice = tc_random(&w->rng);
            // Unlink: an exchange (a full barrier), or a release store, after which nothing
            // orders the unlink before the goal is taken, as in CPython's allocator, which
            // takes a batching goal right after the caller unlinked.
            struct tobj **mine = &r->current[w->index - c->readers];
            if (choice & 1) {
                old = __atomic_exchange_n(mine, fresh, __ATOMIC_ACQ_REL);
            }
            else {
                old = __atomic_load_n(mine, __ATOMIC_RELAXED);
                __atomic_store_n(mine, fresh, __ATOMIC_RELEASE);
            }
            uint64_t before = tick(), kind;
            if (choice & 2) {
                old->goal = L.advance(r->interp);
                kind = H_GOAL_ADVANCE;
            }
            else if (r->profile == 313 || r->profile == 31300 || r->profile == 31303) {
                check_status(L.deferred_advance(ts.t, &old->goal), "deferred_advance");
                kind = H_GOAL_NEXT;
            }
            else {
                check_status(L.shared_next(r->interp, &old->goal), "shared_next");
                kind = H_GOAL_NEXT;
            }
            record(&w->h, before, tick(), ts.id, kind, old->goal, serial);
            tc_retire(&retired, old);
            LOGGED(&w->h, &ts, H_QS, 0, L.quiescent_state(ts.t));
            // Reclaim what poll() allows, oldest first (advancing once past 32 pending).
            tc_reclaim(w, &retired, 32);
            tc_atomic_max(&max_pending, retired.pending);
            if (stop_on_error && atomic_load(&errors_seen)) {
                break;
            }
        }
    }
    if (atomic_fetch_add(&r->writers_done, 1) + 1 == c->writers) {
        atomic_store_explicit(&r->readers_stop, 1, memory_order_release);
    }
    if (ok) {
        LOGGED(&w->h, &ts, H_DETACH, 0, L.detach(ts.t));
    }
    pthread_barrier_wait(&r->barrier);          // 4: every reader and writer detached
    if (ok && w->index == c->readers) {
        (void)L.advance(r->interp);             // past every shared_next/deferred goal
    }
    pthread_barrier_wait(&r->barrier);          // 4b: the last advance is done
    if (ok) {
        // Liveness: no thread is attached but the writers, which attached after the last
        // advance; every pending goal must be reached now (S-SAFE-2, S-POLL-2).
        LOGGED(&w->h, &ts, H_ATTACH, 0, L.attach(ts.t));
        for (struct tobj *o = retired.head; o != NULL; o = o->next) {
            if (!logged_poll(w, &ts, o->goal)) {
                report(F_SAFE2, "goal %llu (object %llu) was not reached although every "
                       "thread attached before it has since detached and wr_seq advanced past "
                       "it", (unsigned long long)o->goal, (unsigned long long)o->serial);
                break;
            }
        }
        LOGGED(&w->h, &ts, H_DETACH, 0, L.detach(ts.t));
    }
    uint64_t left = tc_drain(&retired);
    atomic_fetch_add(&total_frees, retired.frees + left);
    pthread_barrier_wait(&r->barrier);          // 5
    pthread_barrier_wait(&r->barrier);          // 5b: the state was checked (quiesced)
    delete_registered(&ts);
    end_reserve_race(w);
    return NULL;
}

static void *
reserver_main(void *arg)
{
    // Reserves and registers slots while the others run, so that growths (stop-the-world)
    // race readers and other reservers; each index must designate the slot it reserved.
    struct worker *w = arg;
    struct round *r = w->r;
    const struct config *c = r->c;
    struct ts *mine = calloc((size_t)c->slots_per_reserver, sizeof(*mine));
    if (mine == NULL) {
        abort();
    }
    pthread_barrier_wait(&r->barrier);          // 1
    advance_race(w);
    reserve_race(w);
    pthread_barrier_wait(&r->barrier);          // 2
    churn(w);
    pthread_barrier_wait(&r->barrier);          // 2b
    pthread_barrier_wait(&r->barrier);          // 3
    int made = 0;
    uint64_t round_updates = c->updates_per_round * (uint64_t)c->writers;
    for (; made < c->slots_per_reserver; made++) {
        // Paced by the writers' updates, so growths happen throughout the round, and all
        // reservers pass each threshold together (several reserve at once).
        uint64_t target = (uint64_t)made * round_updates / (uint64_t)c->slots_per_reserver;
        while (atomic_load(&r->updates) < target && !atomic_load(&r->readers_stop)) {
            sched_yield();
        }
        int64_t index = -1;
        if (new_registered(r, &mine[made], &index, 1) != 0) {
            break;
        }
        own_index(w, index);
        if (tc_random(&w->rng) % 2 == 0) {
            // Attached for a moment while others grow the array.
            reserver_section_then_detach(w, &mine[made]);
        }
        if (tc_random(&w->rng) % 4 == 0) {
            sched_yield();
        }
    }
    atomic_fetch_add(&total_growth_slots, (uint64_t)made);
    pthread_barrier_wait(&r->barrier);          // 4
    pthread_barrier_wait(&r->barrier);          // 4b
    pthread_barrier_wait(&r->barrier);          // 5
    pthread_barrier_wait(&r->barrier);          // 5b: the state was checked (quiesced)
    for (int i = 0; i < made; i++) {
        disown(w, &mine[i]);
    }
    end_reserve_race(w);
    free(mine);
    return NULL;
}

static long
live_blocks(void)
{
    return L.mem_live_blocks ? L.mem_live_blocks() : 0;
}

static _Atomic uint64_t total_state_checks;

// The state check (issue 32), made while no operation runs: after the round's liveness check
// (every thread detached, its thread states still registered: all_free false) and after every
// thread state was unregistered and deleted (all_free true).  The snapshot (qsbr_api_snapshot_
// read, taken by the library with its mutex held and the world stopped) must satisfy what
// docs/semantics.md says of a quiescent state:
//   - the freelist is a list of distinct slots of the array, none allocated (S-FREE-1: a
//     reserve would hand an allocated slot out twice), and freelist plus allocated slots is the
//     whole array (a slot in neither was lost: an unregister's push or a reserve's pop was
//     lost, S-UNREG-1 / S-FREE-3);
//   - each registered thread state's slot is allocated and owned by it, no two thread states
//     hold one slot, and each owned slot's owner holds it (S-REG-1, S-UNREG-1, S-RES-1);
//   - all free: no slot is allocated or owned (every unregister freed its slot, S-UNREG-1);
//   - every thread is detached, so every slot's seq is 0 (S-DETACH-1); wr_seq and rd_seq are
//     odd (S-SEQ-2) and rd_seq is at or before wr_seq (S-POLL-2).
static void
check_state(struct round *r, uint64_t round_no, const char *when, bool all_free)
{
    if (L.snapshot_read == NULL) {
        return;
    }
    int64_t slot_cap = 0, thread_cap = 0;
    qsbr_api_snapshot snap;
    qsbr_api_slot *slots = NULL;
    int64_t *freelist = NULL;
    qsbr_api_thread *threads = NULL;
    int status = 0;
    for (int attempt = 0; attempt < 4; attempt++) {
        L.snapshot_capacity(r->interp, &slot_cap, &thread_cap);
        slot_cap = 2 * slot_cap + 8, thread_cap = thread_cap + 8;
        free(slots), free(freelist), free(threads);
        slots = calloc((size_t)slot_cap, sizeof(*slots));
        freelist = calloc((size_t)slot_cap, sizeof(*freelist));
        threads = calloc((size_t)thread_cap, sizeof(*threads));
        if (slots == NULL || freelist == NULL || threads == NULL) {
            abort();
        }
        memset(&snap, 0, sizeof(snap));
        status = L.snapshot_read(r->interp, &snap, slots, freelist, slot_cap, threads,
                                 thread_cap);
        if (strcmp(L.status_name(status), "BUFFER_TOO_SMALL") != 0) {
            break;
        }
    }
    atomic_fetch_add(&total_state_checks, 1);
    if (status != 0) {
        const char *name = L.status_name(status);
        int fact = strcmp(name, "CORRUPT") == 0 ? F_FREE3 : F_HARNESS;
        report(fact, "state check, round %llu, %s: snapshot_read returned %s (the freelist "
               "is not a list of distinct slots of the array: a push or pop was lost)",
               (unsigned long long)round_no, when, name);
        if (fact == F_FREE3) {
            report(F_UNREG1, "state check, round %llu, %s: the freelist is corrupt "
                   "(snapshot_read: CORRUPT)", (unsigned long long)round_no, when);
        }
        goto done;
    }
    int64_t size = snap.size;
    if (size < 0 || size > slot_cap || snap.freelist_len < 0 || snap.freelist_len > slot_cap
        || snap.thread_count < 0 || snap.thread_count > thread_cap) {
        report(F_HARNESS, "state check, round %llu: snapshot sizes out of range (size %lld, "
               "freelist %lld, threads %lld)", (unsigned long long)round_no, (long long)size,
               (long long)snap.freelist_len, (long long)snap.thread_count);
        goto done;
    }
    unsigned char *on_list = calloc((size_t)size + 1, 1);
    int64_t *holder = calloc((size_t)size + 1, sizeof(*holder));    // thread index + 1
    if (on_list == NULL || holder == NULL) {
        abort();
    }
    for (int64_t k = 0; k < snap.freelist_len; k++) {
        int64_t i = freelist[k];
        if (i < 0 || i >= size) {
            report(F_FREE3, "state check, round %llu, %s: the freelist holds index %lld, not "
                   "a slot of the %lld-slot array", (unsigned long long)round_no, when,
                   (long long)i, (long long)size);
            continue;
        }
        if (on_list[i]++) {
            report(F_FREE3, "state check, round %llu, %s: slot %lld is on the freelist twice "
                   "(a push or pop was lost: reserve will hand it out twice)",
                   (unsigned long long)round_no, when, (long long)i);
        }
        if (slots[i].allocated) {
            report(F_FREE1, "state check, round %llu, %s: slot %lld is allocated and on the "
                   "freelist (reserve will hand it out a second time)",
                   (unsigned long long)round_no, when, (long long)i);
        }
    }
    for (int64_t i = 0; i < size; i++) {
        if (!slots[i].allocated && !on_list[i]) {
            report(F_UNREG1, "state check, round %llu, %s: slot %lld is neither allocated nor "
                   "on the freelist: it was lost (an unregister's push, or a reserve's pop, "
                   "was overwritten by another freelist update, e.g. one made without the "
                   "shared mutex)", (unsigned long long)round_no, when, (long long)i);
            report(F_FREE3, "state check, round %llu, %s: freelist (%lld slots) plus allocated "
                   "slots is not the whole %lld-slot array (slot %lld is lost)",
                   (unsigned long long)round_no, when, (long long)snap.freelist_len,
                   (long long)size, (long long)i);
        }
        if (all_free && (slots[i].allocated || slots[i].owner != NULL)) {
            report(F_UNREG1, "state check, round %llu, %s: slot %lld is still %s (its "
                   "unregister did not free it, or it was reserved twice and one reservation "
                   "leaked)", (unsigned long long)round_no, when, (long long)i,
                   slots[i].owner != NULL ? "owned" : "allocated");
        }
        if (slots[i].seq != 0) {
            report(F_DETACH1, "state check, round %llu, %s: slot %lld has seq %llu although "
                   "every thread detached (detach must store 0)", (unsigned long long)round_no,
                   when, (long long)i, (unsigned long long)slots[i].seq);
        }
    }
    for (int64_t k = 0; k < snap.thread_count; k++) {
        int64_t i = threads[k].slot;
        if (i == QSBR_API_NO_SLOT) {
            continue;
        }
        if (all_free) {
            report(F_UNREG1, "state check, round %llu, %s: a thread state is still listed "
                   "with slot %lld", (unsigned long long)round_no, when, (long long)i);
            continue;
        }
        if (i == QSBR_API_STALE_SLOT || i < 0 || i >= size) {
            report(F_RES1, "state check, round %llu, %s: a registered thread state's slot "
                   "pointer does not designate a slot of the current array it owns (%lld): "
                   "a growth did not re-point it, or its slot was taken",
                   (unsigned long long)round_no, when, (long long)i);
            continue;
        }
        if (holder[i]) {
            report(F_RES1, "state check, round %llu, %s: two registered thread states hold "
                   "slot %lld (it was handed out twice)", (unsigned long long)round_no, when,
                   (long long)i);
        }
        holder[i] = k + 1;
        if (!slots[i].allocated || slots[i].owner != threads[k].tstate) {
            report(F_REG1, "state check, round %llu, %s: a registered thread state's slot "
                   "%lld is %s", (unsigned long long)round_no, when, (long long)i,
                   !slots[i].allocated ? "not allocated" : "owned by another thread state");
        }
    }
    if (!all_free) {
        for (int64_t i = 0; i < size; i++) {
            if (slots[i].owner != NULL
                && (!holder[i] || threads[holder[i] - 1].tstate != slots[i].owner)) {
                report(F_UNREG1, "state check, round %llu, %s: slot %lld names an owner that "
                       "does not hold it (an unregister cleared the thread state's link but "
                       "not the slot's)", (unsigned long long)round_no, when, (long long)i);
            }
        }
    }
    if (snap.wr_seq % 2 == 0 || snap.rd_seq % 2 == 0) {
        report(F_SEQ2, "state check, round %llu, %s: wr_seq %llu, rd_seq %llu: both must be "
               "odd", (unsigned long long)round_no, when, (unsigned long long)snap.wr_seq,
               (unsigned long long)snap.rd_seq);
    }
    if ((int64_t)(snap.rd_seq - snap.wr_seq) > 0) {
        report(F_POLL2, "state check, round %llu, %s: rd_seq %llu is after wr_seq %llu",
               (unsigned long long)round_no, when, (unsigned long long)snap.rd_seq,
               (unsigned long long)snap.wr_seq);
    }
    free(on_list);
    free(holder);
done:
    free(slots), free(freelist), free(threads);
}

// One round; returns 0, or -1 if it could not be set up.
static int
run_round(const struct config *c, uint64_t round_no)
{
    int nthreads = c->readers + c->writers + c->reservers;
    struct round r;
    memset(&r, 0, sizeof(r));
    r.c = c;
    r.profile = *L.profile;
    long blocks_before = live_blocks();
    r.interp = L.interp_new();
    if (r.interp == NULL) {
        report(F_HARNESS, "interp_new returned NULL");
        return -1;
    }
    for (int i = 0; i < c->writers; i++) {
        r.current[i] = tc_new_object(0);
    }
    r.readers_running = c->readers;
    r.owned_cap = 4 * (int64_t)(nthreads * (RACE_SLOTS + 1)
                                + (int64_t)c->reservers * c->slots_per_reserver) + 64;
    r.owned = calloc((size_t)r.owned_cap, sizeof(*r.owned));
    r.advance_goals = calloc((size_t)nthreads * ADVANCES_PER_THREAD, sizeof(uint64_t));
    // Barriers 1, 2, 2b, 3, 4, 4b, 5 and 5b include every thread and this one.
    pthread_barrier_init(&r.barrier, NULL, (unsigned)nthreads + 1);
    pthread_t threads[MAX_THREADS];
    struct worker workers[MAX_THREADS];
    history_on = round_no < c->history_rounds;
    uint64_t wr_before = L.shared_current(r.interp);
    for (int i = 0; i < nthreads; i++) {
        memset(&workers[i], 0, sizeof(workers[i]));
        workers[i].r = &r;
        workers[i].index = i;
        workers[i].rng = (c->seed + 1) * 2654435761u + (unsigned)round_no * 7919u
                         + (unsigned)i * 40503u;
        void *(*entry)(void *) = i < c->readers ? reader_main
                                 : i < c->readers + c->writers ? writer_main : reserver_main;
        if (pthread_create(&threads[i], NULL, entry, &workers[i]) != 0) {
            fprintf(stderr, "qsbr-cabi-torture: cannot create threads\n");
            exit(70);
        }
    }
    pthread_barrier_wait(&r.barrier);           // 1
    pthread_barrier_wait(&r.barrier);           // 2: the advance race is over
    uint64_t total = (uint64_t)nthreads * ADVANCES_PER_THREAD;
    uint64_t wr_after = L.shared_current(r.interp);
    if (wr_after - wr_before != 2 * total) {
        report(F_ADV1, "%llu concurrent advance() calls moved wr_seq by %lld, not %llu: "
               "increments were lost (advance is not an atomic read-modify-write)",
               (unsigned long long)total, (long long)(wr_after - wr_before),
               (unsigned long long)(2 * total));
    }
    else {
        // Every goal in (wr_before, wr_after] exactly once.
        uint8_t *seen = calloc((size_t)total + 1, 1);
        for (uint64_t i = 0; i < total; i++) {
            uint64_t g = r.advance_goals[i];
            uint64_t k = (g - wr_before) / 2;
            if ((g - wr_before) % 2 != 0 || k < 1 || k > total || seen[k]++) {
                report(F_ADV1, "concurrent advance() calls returned goal %llu twice or out "
                       "of range (wr_seq went from %llu to %llu)", (unsigned long long)g,
                       (unsigned long long)wr_before, (unsigned long long)wr_after);
                break;
            }
        }
        free(seen);
    }
    pthread_barrier_wait(&r.barrier);           // 2b: the churn is done
    // Quiesced after the reserve race and the churn (every thread detached, its slots still
    // registered), before the growths of the grace phase rebuild the freelist (a rebuild
    // pushes every unallocated slot, so it would hide a slot the churn lost).
    check_state(&r, round_no, "after the reserve race and the churn", false);
    pthread_barrier_wait(&r.barrier);           // 3
    pthread_barrier_wait(&r.barrier);           // 4
    pthread_barrier_wait(&r.barrier);           // 4b
    pthread_barrier_wait(&r.barrier);           // 5
    // Quiesced: every thread is detached and waits; its thread states are still registered.
    check_state(&r, round_no, "after the liveness check", false);
    pthread_barrier_wait(&r.barrier);           // 5b
    for (int i = 0; i < nthreads; i++) {
        pthread_join(threads[i], NULL);
        flush_history(&workers[i].h);
        free(workers[i].h.words);
    }
    atomic_fetch_add(&total_updates, atomic_load(&r.updates));
    // Every thread state was unregistered and deleted: every slot must be free again.
    check_state(&r, round_no, "after every thread state was deleted", true);
    for (int i = 0; i < c->writers; i++) {
        free(r.current[i]);
    }
    L.interp_delete(r.interp);
    long blocks_after = live_blocks();
    if (blocks_after != blocks_before) {
        report(F_RES1, "the library's live allocations went from %ld to %ld over a round "
               "(threads reserved, the slot array grew, everything was unregistered and the "
               "interpreter deleted): a growth did not free the old array, or something else "
               "leaked", blocks_before, blocks_after);
    }
    free(r.owned);
    free(r.advance_goals);
    pthread_barrier_destroy(&r.barrier);
    atomic_fetch_add(&total_rounds, 1);
    return 0;
}

static void
print_counters(const char *label, double elapsed)
{
    printf("%s %.1fs rounds=%llu reads=%llu updates=%llu frees=%llu growth_slots=%llu "
           "max_pending=%llu state_checks=%llu\n", label, elapsed,
           (unsigned long long)atomic_load(&total_rounds),
           (unsigned long long)atomic_load(&total_reads),
           (unsigned long long)atomic_load(&total_updates),
           (unsigned long long)atomic_load(&total_frees),
           (unsigned long long)atomic_load(&total_growth_slots),
           (unsigned long long)atomic_load(&max_pending),
           (unsigned long long)atomic_load(&total_state_checks));
    fflush(stdout);
}

int
main(int argc, char **argv)
{
    struct config c = {.readers = 3, .writers = 2, .reservers = 2, .slots_per_reserver = 40,
                       .updates_per_round = 300, .rounds = 0, .seconds = 0, .seed = 1,
                       .history_rounds = 4, .churn = 6000};
    const char *history_path = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "r:w:g:k:c:u:n:s:S:H:E:xq")) != -1) {
        switch (opt) {
            case 'r': c.readers = atoi(optarg); break;
            case 'w': c.writers = atoi(optarg); break;
            case 'g': c.reservers = atoi(optarg); break;
            case 'k': c.slots_per_reserver = atoi(optarg); break;
            case 'c': c.churn = atoi(optarg); break;
            case 'u': c.updates_per_round = strtoull(optarg, NULL, 10); break;
            case 'n': c.rounds = strtoull(optarg, NULL, 10); break;
            case 's': c.seconds = atof(optarg); break;
            case 'S': c.seed = (unsigned)strtoul(optarg, NULL, 10); break;
            case 'H': history_path = optarg; break;
            case 'E': c.history_rounds = strtoull(optarg, NULL, 10); break;
            case 'x': stop_on_error = 1; break;
            case 'q': c.quiet = 1; break;
            default: goto usage;
        }
    }
    if (optind != argc - 1 || c.readers < 0 || c.writers < 1 || c.reservers < 0
        || c.slots_per_reserver < 1 || c.updates_per_round < 1 || c.churn < 0
        || c.readers + c.writers + c.reservers > MAX_THREADS
        || (c.rounds == 0 && c.seconds <= 0)) {
        goto usage;
    }
    if (load_library(argv[optind]) != 0) {
        return 65;
    }
    if (history_path != NULL) {
        history_file = fopen(history_path, "wb");
        if (history_file == NULL) {
            perror(history_path);
            return 65;
        }
    }
    else {
        c.history_rounds = 0;
    }
    printf("cabi-torture: %s, version %s, profile %d, %d readers, %d writers, %d reservers x "
           "%d slots, churn %d, %llu updates per round, seed %u, mem_live_blocks %s, "
           "snapshot_read %s\n", argv[optind], L.version ? L.version() : "unknown",
           *L.profile, c.readers, c.writers, c.reservers, c.slots_per_reserver, c.churn,
           (unsigned long long)c.updates_per_round, c.seed,
           L.mem_live_blocks ? "exported (resource check on)" : "not exported (no resource check)",
           L.snapshot_read ? "exported (state check on)" : "not exported (no state check)");
    fflush(stdout);
    double start = tc_now_seconds(), last = start;
    for (uint64_t round_no = 0; ; round_no++) {
        if (c.rounds && round_no >= c.rounds) {
            break;
        }
        if (c.seconds > 0 && tc_now_seconds() - start >= c.seconds) {
            break;
        }
        if (stop_on_error && atomic_load(&errors_seen)) {
            break;
        }
        if (run_round(&c, round_no) != 0) {
            break;
        }
        if (!c.quiet && tc_now_seconds() - last >= 1.0) {
            last = tc_now_seconds();
            print_counters("progress", last - start);
        }
    }
    if (history_file != NULL) {
        fclose(history_file);
    }
    print_counters("final   ", tc_now_seconds() - start);
    uint64_t errors = 0;
    printf("errors:");
    for (int f = 0; f < F_COUNT; f++) {
        uint64_t n = atomic_load(&fact_errors[f]);
        errors += n;
        printf(" %s=%llu", fact_name[f], (unsigned long long)n);
    }
    printf("\n");
    if (errors) {
        printf("result: FAIL (errors)\n");
        return 1;
    }
    if (atomic_load(&total_frees) == 0) {
        printf("result: FAIL (nothing freed)\n");
        return 2;
    }
    printf("result: PASS\n");
    return 0;

usage:
    fprintf(stderr, "usage: %s LIBRARY [-r READERS] [-w WRITERS>=1] [-g RESERVERS] "
            "[-k SLOTS] [-c CHURN] [-u UPDATES_PER_ROUND] (-n ROUNDS | -s SECONDS) [-S SEED] [-x] [-q] "
            "[-H HISTORY [-E HISTORY_ROUNDS]]\n", argv[0]);
    return 64;
}
