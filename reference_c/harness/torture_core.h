// torture_core.h: the core of the concurrency torture (S-SAFE-1, S-SAFE-2), shared by its two
// flavours, as liburcu builds one rcutorture.h per flavour:
//
//   torture.c        the port's torture (qsbr-torture, `make check`, the Cython bridge): direct
//                    calls into the port's _Py_qsbr_* functions;
//   cabi_torture.c   the C ABI driver (qsbr-cabi-torture): calls through function pointers
//                    taken with dlsym() from any library exporting include/qsbr_api.h.
//
// The core is what both do to objects: create them, check them in read-side sections, retire
// them with a goal, reclaim them once poll() allows (poisoned, then kept in a quarantine before
// free(), so a too-early reclamation is seen even where the allocator reuses memory at once).
// Each flavour keeps its own threads, scenario, command line and report.
//
// Included once, by one .c file, after defining
//   TC_WORKER      the flavour's per-thread state, a struct type with an `unsigned rng` member
//                  (the xorshift state of tc_random());
// and optionally
//   TC_QUARANTINE  how many poisoned objects a writer keeps before free() (default 256);
//   TC_LOAD_WORD(p), TC_STORE_WORD(p, v)   how an object's words are read by readers and
//                  poisoned by writers (default: volatile reads and plain stores, so that
//                  ThreadSanitizer reports a read the grace period did not order before the
//                  poisoning; the port's torture uses relaxed atomics).
// The including file then defines the hooks declared below (tc_load_current ... tc_reclaimed).
#ifndef QSBR_TORTURE_CORE_H
#define QSBR_TORTURE_CORE_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#ifndef TC_WORKER
#  error "define TC_WORKER (the flavour's per-thread struct) before including torture_core.h"
#endif
#ifndef TC_QUARANTINE
#  define TC_QUARANTINE 256
#endif
#ifndef TC_LOAD_WORD
#  define TC_LOAD_WORD(p) (*(volatile const uint64_t *)(p))
#endif
#ifndef TC_STORE_WORD
#  define TC_STORE_WORD(p, v) (*(p) = (v))
#endif

#define TC_MAGIC_ALIVE  0x51534252414c4956ULL   // "QSBRALIV"
#define TC_MAGIC_DEAD   0xdeaddeaddeaddeadULL
#define TC_PAYLOAD_WORDS 4

struct tobj {
    uint64_t magic;
    uint64_t pipe_count;                // 0: current or retired; 1: grace period completed
    uint64_t serial;
    uint64_t payload[TC_PAYLOAD_WORDS]; // payload[i] == serial * (i + 1)
    uint64_t goal;                      // the goal it was retired with
    uint64_t retired_at;                // the flavour's stamp at retire (e.g. an update count)
    struct tobj *next;                  // in its writer's retired list
};

// What a reader found in an object (tc_check).
enum tc_verdict {
    TC_OK,
    TC_RECLAIMED,       // poisoned: reclaimed while the reader held it
    TC_GARBAGE,         // neither alive nor poisoned: freed and reused
    TC_TOO_OLD,         // its grace period completed while the reader held it
    TC_CORRUPT,         // the payload does not match the serial
};

// ---------------------------------------------------------------------------------------------
// The flavour's hooks (defined by the including file)

// A reader's load of a shared object pointer (acquire).
static const struct tobj *tc_load_current(TC_WORKER *w);
// A reader found `o` not TC_OK (`magic`: the magic word it read; `how`: how the reader's
// section ends, for the report, or NULL).
static void tc_bad_object(TC_WORKER *w, const struct tobj *o, enum tc_verdict verdict,
                          uint64_t magic, const char *how);
// The writer's poll of a goal, and an advance whose goal is not kept.
static bool tc_poll(TC_WORKER *w, uint64_t goal);
static void tc_advance(TC_WORKER *w);
// The writer is about to reclaim `o`: its goal was reached (counters, latency).
static void tc_reclaimed(TC_WORKER *w, struct tobj *o);

// ---------------------------------------------------------------------------------------------
// Helpers

static unsigned
tc_random(unsigned *state)
{
    // xorshift32: cheap, per thread, reproducible from the seed
    unsigned x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x ? x : 0x9e3779b9u;
}

static void
tc_atomic_max(_Atomic uint64_t *target, uint64_t value)
{
    uint64_t seen = atomic_load(target);
    while (value > seen && !atomic_compare_exchange_weak(target, &seen, value)) {
    }
}

static double
tc_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// ---------------------------------------------------------------------------------------------
// Objects and the readers' checks

static struct tobj *
tc_new_object(uint64_t serial)
{
    struct tobj *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        abort();
    }
    o->serial = serial;
    for (int i = 0; i < TC_PAYLOAD_WORDS; i++) {
        o->payload[i] = serial * (uint64_t)(i + 1);
    }
    o->magic = TC_MAGIC_ALIVE;
    return o;
}

static enum tc_verdict
tc_check(const struct tobj *o, uint64_t *magic_out)
{
    uint64_t magic = TC_LOAD_WORD(&o->magic);
    *magic_out = magic;
    if (magic == TC_MAGIC_DEAD) {
        return TC_RECLAIMED;
    }
    if (magic != TC_MAGIC_ALIVE) {
        return TC_GARBAGE;
    }
    if (TC_LOAD_WORD(&o->pipe_count) != 0) {
        return TC_TOO_OLD;
    }
    for (int i = 0; i < TC_PAYLOAD_WORDS; i++) {
        if (TC_LOAD_WORD(&o->payload[i]) != o->serial * (uint64_t)(i + 1)) {
            return TC_CORRUPT;
        }
    }
    return TC_OK;
}

// A reader's check of one object it reached through a shared pointer while attached.
static void
tc_check_object(TC_WORKER *w, const struct tobj *o, const char *how)
{
    uint64_t magic;
    enum tc_verdict verdict = tc_check(o, &magic);
    if (verdict != TC_OK) {
        tc_bad_object(w, o, verdict, magic, how);
    }
}

// A read-side section: a pointer taken at its start is used until its end (as a reader walking
// a structure would), with fresh loads in between and, sometimes, a yield that lets writers run
// while the pointer is held.  1..max_burst steps; with long_sections, one section in 16 yields
// at every step (time for a too-early reclamation to happen while the object is held).  No
// quiescent state inside: the caller ends the section.  Returns the objects read.
static uint64_t
tc_read_section(TC_WORKER *w, unsigned max_burst, bool long_sections, const char *how)
{
    const struct tobj *held = tc_load_current(w);
    int burst = 1 + (int)(tc_random(&w->rng) % max_burst);
    bool long_section = long_sections && tc_random(&w->rng) % 16 == 0;
    for (int i = 0; i < burst; i++) {
        tc_check_object(w, held, how);
        tc_check_object(w, tc_load_current(w), how);
        if (long_section || (tc_random(&w->rng) & 7) == 0) {
            sched_yield();
        }
    }
    tc_check_object(w, held, how);
    return 2 * (uint64_t)burst + 1;
}

// A short section: one object held across a yield.  Returns the objects read.
static uint64_t
tc_hold_across_yield(TC_WORKER *w, const char *how)
{
    const struct tobj *held = tc_load_current(w);
    tc_check_object(w, held, how);
    sched_yield();
    tc_check_object(w, held, how);
    return 2;
}

// ---------------------------------------------------------------------------------------------
// Writers: the retired list, reclamation and the quarantine

struct tc_quarantine {
    struct tobj *slots[TC_QUARANTINE];
    int next;
};

// A writer's objects retired and not yet reclaimed, oldest first.
struct tc_retired {
    struct tobj *head, *tail;
    uint64_t pending;                   // in the list
    uint64_t frees;                     // reclaimed (and drained) so far
    struct tc_quarantine q;
};

static void
tc_release(struct tc_quarantine *q, struct tobj *o)
{
    // Poison now, free() later: a reader that still holds the object sees it completed and
    // poisoned (or, with plain accesses, ThreadSanitizer reports the race).
    TC_STORE_WORD(&o->pipe_count, 1);
    TC_STORE_WORD(&o->magic, TC_MAGIC_DEAD);
    free(q->slots[q->next]);
    q->slots[q->next] = o;
    q->next = (q->next + 1) % TC_QUARANTINE;
}

// Appends an unlinked object, its goal already taken.
static void
tc_retire(struct tc_retired *l, struct tobj *o)
{
    o->next = NULL;
    if (l->tail) {
        l->tail->next = o;
    }
    else {
        l->head = o;
    }
    l->tail = o;
    l->pending++;
}

// Reclaims the oldest retired object (its goal was reached).
static void
tc_reclaim_head(TC_WORKER *w, struct tc_retired *l)
{
    struct tobj *o = l->head;
    l->head = o->next;
    if (!l->head) {
        l->tail = NULL;
    }
    tc_reclaimed(w, o);
    tc_release(&l->q, o);
    l->frees++;
    l->pending--;
}

// Reclaims the oldest object if poll() allows: whether it did.
static bool
tc_reclaim_one(TC_WORKER *w, struct tc_retired *l)
{
    if (l->head && tc_poll(w, l->head->goal)) {
        tc_reclaim_head(w, l);
        return true;
    }
    return false;
}

// Reclaims what poll() allows, oldest first.  A goal from shared_next/deferred_advance may not
// have been advanced to yet: past `nudge_after` pending objects, advance once when the oldest
// is not reached, as CPython's allocator does when it processes its deferred frees.
static void
tc_reclaim(TC_WORKER *w, struct tc_retired *l, uint64_t nudge_after)
{
    if (l->pending > nudge_after && !tc_poll(w, l->head->goal)) {
        tc_advance(w);
    }
    while (tc_reclaim_one(w, l)) {
    }
}

// At the end, once no reader runs: frees what is left, without waiting for grace periods
// (which could hang forever on a broken port), and the quarantine.  Returns how many objects
// were left.
static uint64_t
tc_drain(struct tc_retired *l)
{
    uint64_t left = 0;
    while (l->head) {
        struct tobj *o = l->head;
        l->head = o->next;
        tc_release(&l->q, o);
        left++;
    }
    l->tail = NULL;
    l->pending = 0;
    for (int i = 0; i < TC_QUARANTINE; i++) {
        free(l->q.slots[i]);
        l->q.slots[i] = NULL;
    }
    return left;
}

#endif  // QSBR_TORTURE_CORE_H
