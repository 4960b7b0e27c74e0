// Stand-in for CPython's raw allocator, with fault injection (see pycore_pymem.h).
#include <stdlib.h>

#include "qsbr_pyport.h"
#include "pyatomic.h"
#include "pycore_pymem.h"

static _Atomic long fail_next;
static _Atomic long live_blocks;

// Consume one armed failure, if any.  A CAS loop so concurrent allocators fail exactly
// `count` times between them.
static int
should_fail(void)
{
    long n = atomic_load(&fail_next);
    while (n > 0) {
        if (atomic_compare_exchange_weak(&fail_next, &n, n - 1)) {
            return 1;
        }
    }
    return 0;
}

void *
PyMem_RawCalloc(size_t nelem, size_t elsize)
{
    if (should_fail()) {
        return NULL;
    }
    // Like upstream: calloc(0, ...) must still return a unique pointer.
    if (nelem == 0 || elsize == 0) {
        nelem = 1;
        elsize = 1;
    }
    void *ptr = calloc(nelem, elsize);
    if (ptr != NULL) {
        atomic_fetch_add(&live_blocks, 1);
    }
    return ptr;
}

void *
PyMem_RawMalloc(size_t size)
{
    if (should_fail()) {
        return NULL;
    }
    void *ptr = malloc(size ? size : 1);
    if (ptr != NULL) {
        atomic_fetch_add(&live_blocks, 1);
    }
    return ptr;
}

void
PyMem_RawFree(void *ptr)
{
    if (ptr != NULL) {
        atomic_fetch_sub(&live_blocks, 1);
        free(ptr);
    }
}

void
_QsbrStandin_Mem_FailNext(long count)
{
    atomic_store(&fail_next, count < 0 ? 0 : count);
}

long
_QsbrStandin_Mem_FailPending(void)
{
    return atomic_load(&fail_next);
}

long
_QsbrStandin_Mem_LiveBlocks(void)
{
    return atomic_load(&live_blocks);
}
