// The shared core of QSBR's hardware litmus tests: the port's harness (litmus.c, `qsbr-conformance
// hazards`), the interpreter probe (conformance/checks/_hazard_probe.c, `hazards --binary`) and
// the C ABI litmus (reference_c/harness/cabi_litmus.c, `hazards --library`) all run their
// iterations through it.  Header-only, GCC/Clang builtins only (no <stdatomic.h>, so that it
// sits beside CPython's own pyatomic.h), no allocation.
//
// What it provides:
//   - a two-thread spin barrier (one cache line per arrival counter, a release store and an
//     acquire load), with an abort flag and an idle hook called while waiting (the interpreter
//     probe honours stop-the-world requests there; the others yield the CPU every few thousand
//     spins so that a loaded machine still makes progress);
//   - randomised per-iteration offsets, the technique of the litmus7 tool: before its racing
//     part each side spins a number of empty loop iterations drawn uniformly from [0, range).
//     Both threads draw the same two numbers from the same seeded xorshift64* stream, so nothing
//     is exchanged between them to agree on them.  Which alignment of the two racing parts
//     exposes a weak outcome depends on the machine (the barrier's exit skew, cache-line transfer
//     times, the store buffer's drain time); sampling many alignments is what makes a rate
//     observable on any machine instead of the one a fixed schedule happened to suit;
//   - a tally of iterations and forbidden outcomes per band of the relative offset
//     (writer's delay minus reader's), so a report can say where the outcome showed;
//   - choosing two CPUs of the process's affinity mask and pinning a thread to one.
//
// The offsets never change what an iteration does, only when each side starts it: a control
// (the writer's part completes before the reader's starts) stays impossible under any model.
#ifndef QSBR_LITMUS_CORE_H
#define QSBR_LITMUS_CORE_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#  define LC_CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#  define LC_CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#  define LC_CPU_RELAX() ((void)0)
#endif

// Spins before a waiting thread calls its idle hook (by default: yields the CPU).
#define LC_SPINS_BEFORE_IDLE 4096
// The default offset range: each side spins 0..63 empty iterations.
#define LC_DEFAULT_RANGE 64u
#define LC_MAX_RANGE 65536u
// Bands of the relative offset (writer minus reader) a tally keeps.
#define LC_BANDS 8

struct lc_line {
    _Alignas(64) uint64_t value;
    char pad[64 - sizeof(uint64_t)];
};

struct lc_sync {
    struct lc_line arrived[2];
    struct lc_line abort;
};

typedef void (*lc_idle_fn)(void *arg);

static inline void
lc_yield(void *arg)
{
    (void)arg;
    sched_yield();
}

static inline void
lc_abort(struct lc_sync *sync)
{
    __atomic_store_n(&sync->abort.value, 1, __ATOMIC_RELEASE);
}

static inline int
lc_aborted(struct lc_sync *sync)
{
    return __atomic_load_n(&sync->abort.value, __ATOMIC_ACQUIRE) != 0;
}

// Two-thread barrier number k (k increases by one at each barrier, from 1): 0 when both have
// arrived, -1 when the run was aborted.  ``idle`` (NULL: yield) runs every few thousand spins.
static inline int
lc_barrier(struct lc_sync *sync, int role, uint64_t k, lc_idle_fn idle, void *arg)
{
    __atomic_store_n(&sync->arrived[role].value, k, __ATOMIC_RELEASE);
    unsigned spins = 0;
    while (__atomic_load_n(&sync->arrived[1 - role].value, __ATOMIC_ACQUIRE) < k) {
        if (__atomic_load_n(&sync->abort.value, __ATOMIC_RELAXED)) {
            return -1;
        }
        if (++spins == LC_SPINS_BEFORE_IDLE) {
            spins = 0;
            (idle ? idle : lc_yield)(arg);
        }
        else {
            LC_CPU_RELAX();
        }
    }
    return 0;
}

// -- offsets ----------------------------------------------------------------------------------

struct lc_offsets {
    uint64_t state;         // xorshift64* state (never 0)
    uint32_t range;         // delays are drawn from [0, range); 1 means no offsets
};

static inline void
lc_offsets_init(struct lc_offsets *o, uint64_t seed, uint32_t range)
{
    // splitmix64 of the seed: a nonzero, well-mixed start whatever the seed
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    o->state = z ? z : 0x2545F4914F6CDD1Dull;
    o->range = range ? range : 1;
}

static inline uint32_t
lc_draw(struct lc_offsets *o)
{
    uint64_t x = o->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    o->state = x;
    uint64_t r = x * 0x2545F4914F6CDD1Dull;
    return (uint32_t)((r >> 32) % o->range);
}

// This iteration's two delays (the same pair in both threads: each calls it once per
// iteration on its own copy of the stream).
static inline void
lc_next_pair(struct lc_offsets *o, uint32_t *writer, uint32_t *reader)
{
    *writer = lc_draw(o);
    *reader = lc_draw(o);
}

// An empty loop of n iterations the compiler may not remove (about a cycle each).
static inline void
lc_delay(uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        __asm__ __volatile__("" ::: "memory");
    }
}

// -- per-band tally ---------------------------------------------------------------------------

struct lc_tally {
    uint32_t range;
    uint64_t iterations[LC_BANDS];
    uint64_t forbidden[LC_BANDS];
};

// The band of a relative offset (writer's delay minus reader's, in (-range, range)).
static inline int
lc_band(uint32_t range, int64_t relative)
{
    int64_t span = 2 * (int64_t)range - 1;          // how many relative offsets there are
    int64_t index = (relative + (int64_t)range - 1) * LC_BANDS / span;
    return index < 0 ? 0 : index >= LC_BANDS ? LC_BANDS - 1 : (int)index;
}

// The relative offsets band b covers: [*low, *high].
static inline void
lc_band_bounds(uint32_t range, int b, int64_t *low, int64_t *high)
{
    int64_t span = 2 * (int64_t)range - 1;
    // smallest relative r with lc_band(r) == b: ceil(b * span / BANDS) - (range - 1)
    int64_t lo = (b * span + LC_BANDS - 1) / LC_BANDS - ((int64_t)range - 1);
    int64_t hi = ((b + 1) * span + LC_BANDS - 1) / LC_BANDS - 1 - ((int64_t)range - 1);
    *low = lo;
    *high = hi;
}

static inline void
lc_tally_add(struct lc_tally *t, uint32_t writer, uint32_t reader, int forbidden)
{
    int b = lc_band(t->range, (int64_t)writer - (int64_t)reader);
    t->iterations[b]++;
    t->forbidden[b] += forbidden != 0;
}

// "BAND <low> <high> <iterations> <forbidden>" lines, one per band that ran.
static inline void
lc_tally_print(const struct lc_tally *t, FILE *out)
{
    for (int b = 0; b < LC_BANDS; b++) {
        if (t->iterations[b] == 0) {
            continue;
        }
        int64_t low, high;
        lc_band_bounds(t->range, b, &low, &high);
        fprintf(out, "BAND\t%lld\t%lld\t%llu\t%llu\n", (long long)low, (long long)high,
                (unsigned long long)t->iterations[b], (unsigned long long)t->forbidden[b]);
    }
}

// -- CPUs -------------------------------------------------------------------------------------

// Two distinct CPUs of the process's affinity mask into cpus[0..1]; 0, or -1 with the reason
// in why (then both are -1: the threads run unpinned).
static inline int
lc_choose_cpus(int cpus[2], char *why, size_t size)
{
    cpu_set_t set;
    cpus[0] = cpus[1] = -1;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        snprintf(why, size, "sched_getaffinity failed (%s)", strerror(errno));
        return -1;
    }
    int found = 0;
    int chosen[2] = {-1, -1};
    for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++) {
        if (CPU_ISSET(cpu, &set)) {
            chosen[found++] = cpu;
        }
    }
    if (found < 2) {
        snprintf(why, size, "the process may run on %d CPU only", found);
        return -1;
    }
    cpus[0] = chosen[0];
    cpus[1] = chosen[1];
    return 0;
}

// Pin the calling thread to cpu (a no-op for -1); 0 or an errno value.
static inline int
lc_pin(int cpu)
{
    if (cpu < 0) {
        return 0;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

#endif  // QSBR_LITMUS_CORE_H
