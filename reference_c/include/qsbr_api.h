// qsbr_api.h: the port's checked, prefix-only C API.
//
// This is the header to include next to <Python.h> (the Cython bridge does) or from any
// program that wants to drive the port without CPython's internal names.  It exposes
// opaque interpreter and thread-state handles, every operation of CPython's QSBR header,
// a consistent snapshot of the whole observable state, and test hooks.
//
// Every operation that upstream only asserts about (S-… "preconditions upstream only
// asserts") is checked here first: a misuse returns a QSBR_E_* status and changes nothing.
// Valid calls go straight to the unchecked upstream functions in qsbr.c.
//
// Threads: operations on different thread states may run concurrently from different OS
// threads; operations on one thread state are serialized by the port (a second caller waits).
// qsbr_api_fini() and qsbr_api_after_fork() must not overlap other operations on the same
// interpreter (as in CPython, where they run when no other thread exists).
#ifndef QSBR_API_H
#define QSBR_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// 31300: CPython 3.13.0-3.13.2, 31303: 3.13.3-3.13.5, 31306: 3.13.6+ and 3.14.0-3.14.3,
// 31404: 3.14.4+ (include/qsbr_profile.h; builds with QSBR_PROFILE=313/314 export 31303/31404)
extern const int qsbr_api_profile;

// Optional: which version of the port this library is ("myport 1.2.0", a commit, ...), shown
// in every report that checked it (without it the report says "unknown").  A static string.
extern const char *qsbr_api_version(void);

typedef struct qsbr_api_interp qsbr_api_interp;
typedef struct qsbr_api_tstate qsbr_api_tstate;

typedef enum qsbr_status {
    QSBR_OK = 0,
    QSBR_E_NO_MEMORY,           // the stand-in could not allocate a handle
    QSBR_E_NOT_REGISTERED,      // the thread state has no QSBR slot
    QSBR_E_STALE_SLOT,          // its slot was freed by fini or after_fork
    QSBR_E_ALREADY_REGISTERED,  // register: the thread state already has a slot
    QSBR_E_INDEX_OUT_OF_RANGE,  // register: index not in [0, size)
    QSBR_E_SLOT_NOT_RESERVED,   // register: the slot is not allocated
    QSBR_E_SLOT_OWNED,          // register: the slot already has an owner
    QSBR_E_ALREADY_ATTACHED,    // attach: seq != 0
    QSBR_E_NOT_ATTACHED,        // detach: seq == 0
    QSBR_E_STILL_ATTACHED,      // unregister: seq != 0
    QSBR_E_STILL_REGISTERED,    // delete a thread state that still owns a slot
    QSBR_E_BAD_SEQUENCE,        // set_sequences: even value, or rd_seq after wr_seq
    QSBR_E_NOT_FRESH,           // set_sequences: the slot array already exists
    QSBR_E_CORRUPT,             // snapshot: the freelist is not a list of this array's slots
    QSBR_E_BUFFER_TOO_SMALL,    // snapshot: caller's buffers are smaller than the array
    QSBR_E_UNSUPPORTED,         // the operation is not part of this profile's API
    QSBR_STATUS_COUNT
} qsbr_status;

// A stable identifier ("NOT_REGISTERED") and a sentence for each status.
extern const char *qsbr_api_status_name(int status);
extern const char *qsbr_api_status_message(int status);

// S-SEQ-3: the wrap-around safe comparisons, as compiled into the port.
extern bool qsbr_api_lt(uint64_t a, uint64_t b);
extern bool qsbr_api_leq(uint64_t a, uint64_t b);

extern qsbr_api_interp *qsbr_api_interp_new(void);
// Finalises (if needed) and frees the interpreter.  Thread states must be deleted first.
extern void qsbr_api_interp_delete(qsbr_api_interp *interp);
// Test hook: start the sequences at any odd values, before the slot array exists.
extern int qsbr_api_set_sequences(qsbr_api_interp *interp, uint64_t wr_seq, uint64_t rd_seq);

// A thread state with no slot.  NULL on memory exhaustion.
extern qsbr_api_tstate *qsbr_api_tstate_new(qsbr_api_interp *interp);
// Frees a thread state that owns no slot (or whose slot is stale).
extern int qsbr_api_tstate_delete(qsbr_api_tstate *tstate);

// The upstream operations.
extern int64_t qsbr_api_reserve(qsbr_api_interp *interp);        // index, or -1
extern int qsbr_api_register(qsbr_api_tstate *tstate, int64_t index);
extern int qsbr_api_unregister(qsbr_api_tstate *tstate);
extern int qsbr_api_attach(qsbr_api_tstate *tstate);
extern int qsbr_api_detach(qsbr_api_tstate *tstate);
extern int qsbr_api_quiescent_state(qsbr_api_tstate *tstate);
extern uint64_t qsbr_api_advance(qsbr_api_interp *interp);
extern uint64_t qsbr_api_shared_current(qsbr_api_interp *interp);
extern int qsbr_api_poll(qsbr_api_tstate *tstate, uint64_t goal, bool *result);
extern int qsbr_api_goal_reached(qsbr_api_tstate *tstate, uint64_t goal, bool *result);
extern int qsbr_api_fini(qsbr_api_interp *interp);
extern int qsbr_api_after_fork(qsbr_api_tstate *tstate);
// In the child of a real fork(): what CPython's PyOS_AfterFork_Child does for QSBR -- reset the
// parking lot (a bucket may have been caught locked), then after_fork.  Never call it in a
// process whose other threads still run.
extern int qsbr_api_child_after_fork(qsbr_api_tstate *tstate);
// Profile 313 only; QSBR_E_UNSUPPORTED on 314.
extern int qsbr_api_deferred_advance(qsbr_api_tstate *tstate, uint64_t *goal);
// Profile 314 only; QSBR_E_UNSUPPORTED on 313.
extern int qsbr_api_shared_next(qsbr_api_interp *interp, uint64_t *goal);
extern int qsbr_api_should_process(qsbr_api_tstate *tstate, bool *result);
// Profile 314 only: set the bookkeeping fields that CPython's allocator (obmalloc.c)
// maintains, since qsbr.c itself never writes them.
extern int qsbr_api_set_bookkeeping(qsbr_api_tstate *tstate, int deferred_count,
                                    size_t deferred_memory, size_t deferred_page_memory,
                                    bool should_process);

// The observable state of one slot.  `owner` is the registered handle or NULL.  Fields of
// the other profile read as zero.
typedef struct qsbr_api_slot {
    uint64_t seq;
    bool allocated;
    const qsbr_api_tstate *owner;
    int deferrals;                  // profile 313
    int deferred_count;             // profile 314
    size_t deferred_memory;         // profile 314
    size_t deferred_page_memory;    // profile 314
    bool should_process;            // profile 314
} qsbr_api_slot;

// What a thread state's own `qsbr` pointer designates.
#define QSBR_API_NO_SLOT    (-1)    // NULL: never registered, or unregistered
#define QSBR_API_STALE_SLOT (-2)    // not a slot of the current array owned by it

typedef struct qsbr_api_thread {
    const qsbr_api_tstate *tstate;
    int64_t slot;                   // index, QSBR_API_NO_SLOT or QSBR_API_STALE_SLOT
} qsbr_api_thread;

typedef struct qsbr_api_snapshot {
    uint64_t wr_seq;
    uint64_t rd_seq;
    int64_t size;
    int64_t freelist_len;
    int64_t thread_count;
} qsbr_api_snapshot;

// Capacities a snapshot needs: slots and freelist entries (the array size) and thread states.
extern void qsbr_api_snapshot_capacity(qsbr_api_interp *interp, int64_t *slots,
                                       int64_t *threads);
// Reads everything with the shared mutex held and the world stopped, so that no operation
// runs meanwhile.  `slots` and `freelist` hold `slot_capacity` entries, `threads` holds
// `thread_capacity`; QSBR_E_BUFFER_TOO_SMALL if the state outgrew them (ask again).
extern int qsbr_api_snapshot_read(qsbr_api_interp *interp, qsbr_api_snapshot *out,
                                  qsbr_api_slot *slots, int64_t *freelist,
                                  int64_t slot_capacity,
                                  qsbr_api_thread *threads, int64_t thread_capacity);
// The slot index of a thread state: QSBR_OK with *index = -1 if it has none,
// QSBR_E_STALE_SLOT if its slot was freed by fini/after_fork.
extern int qsbr_api_tstate_slot(qsbr_api_tstate *tstate, int64_t *index);

// Fault injection in the raw allocator: the next `count` allocations fail.
extern void qsbr_api_mem_fail_next(long count);
extern long qsbr_api_mem_live_blocks(void);

// Layout of the compiled structs, for fidelity checks against a live interpreter.
// `name` is "sizeof(struct _qsbr_thread_state)", "offsetof(struct _qsbr_shared, mutex)", ...
// Returns -1 for an unknown name.  Names are enumerated by index, 0 .. count-1.
// The interpreter's `struct _qsbr_shared`, so that a test harness can read the slot array
// through the layout above (qsbr_api_layout) instead of trusting qsbr_api_snapshot_read's
// account: each slot's `shared`, `tstate`, `allocated`, `freelist_next`, the array's
// alignment.  Optional for other libraries exporting this ABI.
extern const void *qsbr_api_shared_address(qsbr_api_interp *interp);
extern long qsbr_api_layout(const char *name);
extern long qsbr_api_layout_count(void);
extern const char *qsbr_api_layout_name(long i);

// Test hooks for the race tests (tests/test_threads.c).  When set, register and unregister
// call the hook after their checks and before the operation, with the operation's name.
extern void (*qsbr_api_test_after_check)(const char *operation, qsbr_api_tstate *tstate);
// The number of times a call found another call holding the lock that serializes operations
// on one thread state (or register/unregister on one interpreter) and waited for it.
extern uint64_t qsbr_api_test_lock_waits(void);

#ifdef __cplusplus
}
#endif
#endif  // QSBR_API_H
