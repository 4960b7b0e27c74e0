// Stand-in for the parts of CPython's thread state and interpreter state
// (Include/cpython/pystate.h, pycore_tstate.h, pycore_interp.h, pycore_pystate.h) that QSBR
// touches: the thread state's attached/detached/suspended status, its `qsbr` back pointer
// (re-pointed by array growth), the interpreter's list of thread states, its stop-the-world
// state, and `struct _qsbr_shared` inside the interpreter.
#ifndef QSBR_PYCORE_TSTATE_H
#define QSBR_PYCORE_TSTATE_H

#include <stdbool.h>

#include "qsbr_pyport.h"
#include "pycore_lock.h"
#include "pycore_qsbr.h"

// Thread status, as upstream (Include/internal/pycore_pystate.h).
#define _Py_THREAD_DETACHED     0
#define _Py_THREAD_ATTACHED     1
#define _Py_THREAD_SUSPENDED    2

// Eval breaker bit that asks an attached thread to park at its next safepoint.
#define _PY_EVAL_PLEASE_STOP_BIT  ((uintptr_t)1 << 5)

struct _ts {
    PyThreadState *prev;
    PyThreadState *next;
    PyInterpreterState *interp;

    // _Py_THREAD_DETACHED, _Py_THREAD_ATTACHED or _Py_THREAD_SUSPENDED (atomic)
    int state;

    // Per-thread requests checked at safepoints (atomic)
    uintptr_t eval_breaker;
};

typedef struct _PyThreadStateImpl {
    // semi-public fields are in PyThreadState
    PyThreadState base;

    struct _qsbr_thread_state *qsbr;  // only used by free-threaded build

    // Not upstream's: serializes the checked API's operations on this thread state
    // (src/qsbr_api.c), taken before anything else they take.
    PyMutex api_mutex;

#if QSBR_TLBC_INDEX
    int32_t tlbc_index;
#endif
} _PyThreadStateImpl;

struct _stoptheworld_state {
    PyMutex mutex;              // Serializes stop-the-world attempts.
    bool requested;             // Set when a pause is requested.
    bool world_stopped;         // Set when the world is stopped.
    PyEvent stop_event;         // Set when thread_countdown reaches zero.
    Py_ssize_t thread_countdown;  // Number of threads that must pause.
    PyThreadState *requester;   // Thread that requested the pause (may be NULL).
};

struct _is {
    // Stands in for HEAD_LOCK(runtime): protects the thread list and the stop-the-world
    // bookkeeping.  Never detaches while waiting, like upstream's HEAD_LOCK.
    PyMutex head_mutex;

    struct {
        PyThreadState *head;
    } threads;

    struct _stoptheworld_state stoptheworld;

    struct _qsbr_shared qsbr;

    // Not upstream's: serializes the checked API's register and unregister (check and
    // operation) on this interpreter; taken after a thread state's api_mutex.
    PyMutex api_mutex;

#if QSBR_TLBC_INDEX
    int32_t next_tlbc_index;    // the stand-in's TLBC index allocator (atomic)
    int tlbc_failures;          // injected _Py_ReserveTLBCIndex failures left (atomic)
#endif
};

// The calling thread's attached thread state, or NULL.
extern PyThreadState *_PyThreadState_GET(void);

// A new interpreter: qsbr.wr_seq = qsbr.rd_seq = QSBR_INITIAL, as CPython's static initialiser.
extern PyInterpreterState *PyInterpreterState_New(void);
// Calls _Py_qsbr_fini() (as interpreter_clear() does) and frees the interpreter.
extern void PyInterpreterState_Delete(PyInterpreterState *interp);

// As CPython's new_threadstate(): reserve a QSBR slot, link the thread state into the
// interpreter, register the slot.  Returns NULL if the reservation fails.  The new thread
// state is detached.
extern PyThreadState *PyThreadState_New(PyInterpreterState *interp);
// As CPython's tstate_delete_common() + free: unlink, unregister, free.  Must be detached.
extern void PyThreadState_Delete(PyThreadState *tstate);

// Attach: wait out any stop-the-world, become the current thread state, then
// _Py_qsbr_attach().  Detach: _Py_qsbr_detach(), then become detached.
extern void _PyThreadState_Attach(PyThreadState *tstate);
extern void _PyThreadState_Detach(PyThreadState *tstate);
// Detach for a stop-the-world request (becomes "suspended"), as upstream.
extern void _PyThreadState_Suspend(PyThreadState *tstate);
// A safepoint: if a stop-the-world asked this attached thread to pause, pause until the world
// restarts (detaching QSBR meanwhile, as upstream's eval breaker does).
extern void _Py_HandlePending(PyThreadState *tstate);

extern void _PyEval_StopTheWorld(PyInterpreterState *interp);
extern void _PyEval_StartTheWorld(PyInterpreterState *interp);

// Stand-in only (no upstream twin): thread-state handles for a driver that runs many
// thread states from one OS thread (the Cython bridge, the conformance harness).
//
// _QsbrStandin_ThreadState_Alloc links a thread state with no QSBR slot; reserve/register are
// then separate calls.  _QsbrStandin_ThreadState_Free unlinks and frees it without touching QSBR
// (as CPython frees the other thread states in a fork child).
//
// Pin/Unpin mark the thread state attached / detached for stop-the-world purposes *without*
// touching its QSBR sequence, so that an operation on its slot cannot overlap an array growth.
// Pin waits while the world is stopped; pinning an already pinned thread state waits for the
// other pin to end.  Never block on the QSBR mutex while pinned.
#if QSBR_TLBC_INDEX
// Stand-in for 3.14's _Py_ReserveTLBCIndex(): a fresh index per call, or -1 while failures
// injected by _QsbrStandin_FailNextTLBCReservations() remain.
extern int32_t _Py_ReserveTLBCIndex(PyInterpreterState *interp);
extern void _QsbrStandin_FailNextTLBCReservations(PyInterpreterState *interp, int count);
#endif

extern void _QsbrStandin_ZapThreads(PyInterpreterState *interp);
extern PyThreadState *_QsbrStandin_ThreadState_Alloc(PyInterpreterState *interp);
extern void _QsbrStandin_ThreadState_Free(PyThreadState *tstate);
extern void _QsbrStandin_ThreadState_Pin(PyThreadState *tstate);
// In a fork child, as PyOS_AfterFork_Child does for the runtime: re-initialise the locks of the
// thread list and of stop-the-world (their holders may be gone), clear any stop request, and
// mark every other thread state detached (its thread does not exist in the child).
extern void _QsbrStandin_AfterFork(PyThreadState *survivor);
extern void _QsbrStandin_ThreadState_Unpin(PyThreadState *tstate);

#endif  // QSBR_PYCORE_TSTATE_H
