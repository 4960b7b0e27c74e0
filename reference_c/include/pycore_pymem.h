// Stand-in for CPython's raw memory allocator (PyMem_RawCalloc / PyMem_RawFree) with fault
// injection: the next N allocations can be made to fail, so that the growth path of
// _Py_qsbr_reserve() can be driven into its "out of memory" branch (S-FREE-4).
//
// Only the QSBR port allocates through these functions; the other stand-ins use malloc
// directly, so an armed fault always lands on the port.
#ifndef QSBR_PYCORE_PYMEM_H
#define QSBR_PYCORE_PYMEM_H

#include "qsbr_pyport.h"

extern void *PyMem_RawCalloc(size_t nelem, size_t elsize);
extern void *PyMem_RawMalloc(size_t size);
extern void PyMem_RawFree(void *ptr);

// Make the next `count` raw allocations fail (0 disarms).  Process-wide.
extern void _QsbrStandin_Mem_FailNext(long count);
// How many armed failures are still pending.
extern long _QsbrStandin_Mem_FailPending(void);
// Blocks allocated by PyMem_Raw* and not yet freed (a leak check for tests).
extern long _QsbrStandin_Mem_LiveBlocks(void);

#endif  // QSBR_PYCORE_PYMEM_H
