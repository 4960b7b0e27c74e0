// Stand-in for CPython's PyMutex (Include/cpython/lock.h, Include/internal/pycore_lock.h),
// PyEvent and the parking lot (Include/internal/pycore_parking_lot.h).
//
// PyMutex is one byte, as upstream, so struct _qsbr_shared keeps its layout.  Contended
// waiters park on the byte's address in a small parking lot of mutex/condvar buckets.  Like
// upstream, a thread that blocks in PyMutex_Lock() detaches its thread state while it waits,
// so a stop-the-world request from the mutex holder cannot deadlock against it.
#ifndef QSBR_PYCORE_LOCK_H
#define QSBR_PYCORE_LOCK_H

#include "qsbr_pyport.h"
#include "pyatomic.h"

#define _Py_UNLOCKED    0
#define _Py_LOCKED      1
#define _Py_HAS_PARKED  2

typedef struct PyMutex {
    uint8_t _bits;  // (private)
} PyMutex;

typedef enum _PyLockFlags {
    _Py_LOCK_DONT_DETACH = 0,   // do not detach the thread state while waiting
    _PY_LOCK_DETACH = 1,        // detach (and later re-attach) while waiting
} _PyLockFlags;

extern void _PyMutex_LockSlow(PyMutex *m, _PyLockFlags flags);
extern void _PyMutex_UnlockSlow(PyMutex *m);

static inline void
PyMutex_LockFlags(PyMutex *m, _PyLockFlags flags)
{
    uint8_t expected = _Py_UNLOCKED;
    if (!_Py_atomic_compare_exchange_uint8(&m->_bits, &expected, _Py_LOCKED)) {
        _PyMutex_LockSlow(m, flags);
    }
}

static inline void
PyMutex_Lock(PyMutex *m)
{
    PyMutex_LockFlags(m, _PY_LOCK_DETACH);
}

static inline void
PyMutex_Unlock(PyMutex *m)
{
    uint8_t expected = _Py_LOCKED;
    if (!_Py_atomic_compare_exchange_uint8(&m->_bits, &expected, _Py_UNLOCKED)) {
        _PyMutex_UnlockSlow(m);
    }
}

static inline int
PyMutex_IsLocked(PyMutex *m)
{
    return (_Py_atomic_load_uint8(&m->_bits) & _Py_LOCKED) != 0;
}

// Re-initialise a mutex in the child after fork(): the thread that held it may not exist there.
extern void _PyMutex_at_fork_reinit(PyMutex *m);

// A one-shot event (used by stop-the-world to wake the requesting thread).
typedef struct {
    uint8_t v;
} PyEvent;

extern void _PyEvent_Notify(PyEvent *evt);
// Wait up to timeout_ns (-1: forever).  Returns 1 if the event was notified.
extern int PyEvent_WaitTimed(PyEvent *evt, PyTime_t timeout_ns, int detach);

enum {
    Py_PARK_OK = 0,
    Py_PARK_AGAIN = -1,     // *address did not hold *expected
    Py_PARK_TIMEOUT = -2,
};

// Sleep while *address equals *expected (size 1, 4 or 8 bytes), until woken by
// _PyParkingLot_UnparkAll(address) or timeout_ns passes (-1: no timeout).  With detach set,
// an attached calling thread detaches its thread state while it sleeps.
extern int _PyParkingLot_Park(const void *address, const void *expected, size_t size,
                              PyTime_t timeout_ns, void *park_arg, int detach);
extern void _PyParkingLot_UnparkAll(const void *address);
// In the child after fork(): forget every waiter (they do not exist there) and re-initialise
// the buckets, one of which the fork may have caught locked.
extern void _PyParkingLot_AfterFork(void);

#endif  // QSBR_PYCORE_LOCK_H
