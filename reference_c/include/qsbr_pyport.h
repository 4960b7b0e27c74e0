// Stand-in for the parts of CPython's Python.h / pyport.h that the QSBR port needs.
//
// The port keeps CPython's names for the services it uses (PyMutex_Lock, PyMem_RawCalloc,
// _PyEval_StopTheWorld, ...) so that src/qsbr.c reads like upstream.  Those names are also
// exported by libpython, so every stand-in *function* is renamed here to a _QsbrPort_ symbol:
// linking the port into a process that also has libpython (a Python extension, an embedding
// application) can then never interpose on, or be interposed by, the real interpreter.
// Never include these headers in the same translation unit as the real <Python.h>; use the
// prefix-only API in qsbr_api.h there.
#ifndef QSBR_PYPORT_H
#define QSBR_PYPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qsbr_profile.h"       // QSBR_PROFILE and its feature switches

#ifndef Py_BUILD_CORE
#  define Py_BUILD_CORE 1
#endif

typedef ssize_t Py_ssize_t;
typedef int64_t PyTime_t;

typedef struct _ts PyThreadState;
typedef struct _is PyInterpreterState;

#define _Py_ALIGN_UP(p, a) ((void *)(((uintptr_t)(p) + (uintptr_t)((a) - 1)) & ~(uintptr_t)((a) - 1)))

#define _Py_CONTAINER_OF(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))

// Symbol renames (see above).  Types and static inlines need none: they emit no symbols.
#define PyMutex_Lock                _QsbrPort_PyMutex_Lock
#define PyMutex_LockFlags           _QsbrPort_PyMutex_LockFlags
#define PyMutex_Unlock              _QsbrPort_PyMutex_Unlock
#define _PyMutex_LockSlow           _QsbrPort_PyMutex_LockSlow
#define _PyMutex_UnlockSlow         _QsbrPort_PyMutex_UnlockSlow
#define _PyMutex_at_fork_reinit     _QsbrPort_PyMutex_at_fork_reinit
#define _PyEvent_Notify             _QsbrPort_PyEvent_Notify
#define PyEvent_WaitTimed           _QsbrPort_PyEvent_WaitTimed
#define _PyParkingLot_Park          _QsbrPort_PyParkingLot_Park
#define _PyParkingLot_UnparkAll     _QsbrPort_PyParkingLot_UnparkAll
#define _PyParkingLot_AfterFork     _QsbrPort_PyParkingLot_AfterFork
#define PyMem_RawCalloc             _QsbrPort_PyMem_RawCalloc
#define PyMem_RawMalloc             _QsbrPort_PyMem_RawMalloc
#define PyMem_RawFree               _QsbrPort_PyMem_RawFree
#define PyInterpreterState_New      _QsbrPort_PyInterpreterState_New
#define PyInterpreterState_Delete   _QsbrPort_PyInterpreterState_Delete
#define PyThreadState_New           _QsbrPort_PyThreadState_New
#define PyThreadState_Delete        _QsbrPort_PyThreadState_Delete
#define _PyThreadState_GET          _QsbrPort_PyThreadState_GET
#define _PyThreadState_Attach       _QsbrPort_PyThreadState_Attach
#define _PyThreadState_Detach       _QsbrPort_PyThreadState_Detach
#define _PyThreadState_Suspend      _QsbrPort_PyThreadState_Suspend
#define _Py_HandlePending           _QsbrPort_Py_HandlePending
#define _PyEval_StopTheWorld        _QsbrPort_PyEval_StopTheWorld
#define _PyEval_StartTheWorld       _QsbrPort_PyEval_StartTheWorld
#define _Py_ReserveTLBCIndex        _QsbrPort_Py_ReserveTLBCIndex

#endif  // QSBR_PYPORT_H
