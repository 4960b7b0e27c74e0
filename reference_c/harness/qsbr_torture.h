// qsbr_torture.h: a concurrency torture of the port, in the style of rcutorture and
// liburcu's regression tests (S-SAFE-1, S-SAFE-2).  It is torture.c, the port's flavour of the
// torture core (torture_core.h), whose other flavour is the C ABI driver (cabi_torture.c).
//
// Readers, attached to the interpreter, repeatedly load a shared pointer and validate the
// object: a magic value the freeing path poisons, and a pipe count (how many grace periods the
// object has completed since it was retired; a reader inside its read-side section must never
// see a completed one).  Readers report quiescent states at random intervals, reach safepoints,
// and sometimes detach and re-attach.  Writers replace the object, retire the old one with a
// goal from _Py_qsbr_advance() or the profile's batching API, and free it only once
// _Py_qsbr_poll() says so (poisoned, then held in a quarantine before free(), so a too-early
// free is seen even where the allocator reuses memory at once).  Churn threads create and
// delete thread states so the slot array grows while all this runs.  One idle thread attaches,
// reads once and detaches for good, as a thread blocked in I/O: it must not hold reclamation
// back.  A monitor reports progress and flags stalls (no object freed for stall_ms).
#ifndef QSBR_TORTURE_H
#define QSBR_TORTURE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qsbr_torture_stats {
    uint64_t reads;
    uint64_t updates;
    uint64_t frees;
    uint64_t churn_cycles;          // thread states created and deleted by churn threads
    uint64_t max_pending;           // most retired-but-unfreed objects one writer held
    uint64_t gp_latency_max;        // updates (all writers) between retire and free
    uint64_t gp_latency_sum;        // over all frees: mean = sum / frees
    int64_t array_size;             // slot array size at the end
    uint64_t errors_poisoned;       // a reader saw a freed (poisoned) object
    uint64_t errors_bad_magic;      // a reader saw garbage where an object should be
    uint64_t errors_too_old;        // a reader saw an object whose grace period had ended
    uint64_t errors_stall;          // reclamation made no progress for stall_ms
    double elapsed;                 // seconds
} qsbr_torture_stats;

typedef void (*qsbr_torture_progress_fn)(const qsbr_torture_stats *stats, void *arg);

typedef struct qsbr_torture_config {
    int readers;
    int writers;
    int churners;
    double seconds;                 // run time (0: until max_updates)
    uint64_t max_updates;           // stop after this many updates (0: no limit)
    int batching;                   // writers also use deferred_advance (3.13) / shared_next (3.14)
    unsigned seed;
    int stall_ms;                   // 0: 2000
    int stop_on_error;              // end the run at the first error (to time a catch)
    int progress_ms;                // 0: no progress callback
    qsbr_torture_progress_fn progress;
    void *progress_arg;
} qsbr_torture_config;

// Fills in the defaults: 4 readers, 2 writers, 1 churner, 2 s, batching on, stall 2000 ms.
extern void qsbr_torture_default_config(qsbr_torture_config *config);

// Runs the torture on a fresh interpreter.  Returns 0 if no error was seen and objects were
// freed, 1 on any error, 2 if nothing was freed, -1 if the run could not be set up.
extern int qsbr_torture_run(const qsbr_torture_config *config, qsbr_torture_stats *stats);

// Total of the errors_* counters.
extern uint64_t qsbr_torture_errors(const qsbr_torture_stats *stats);

#ifdef __cplusplus
}
#endif
#endif  // QSBR_TORTURE_H
