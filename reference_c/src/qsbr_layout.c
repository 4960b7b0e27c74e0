// The layout of the port's structs: compile-time checks against the values measured on
// CPython's installed headers (S-SLOT-2, LP64 only), and a table for run-time comparison with
// a live interpreter.
#include <stddef.h>
#include <string.h>

#include "qsbr_pyport.h"
#include "pycore_qsbr.h"
#include "qsbr_api.h"

#if defined(__LP64__) || defined(_LP64)
_Static_assert(sizeof(struct _qsbr_pad) == 64, "struct _qsbr_pad must be one cache line");
_Static_assert(sizeof(PyMutex) == 1, "PyMutex is one byte upstream");
_Static_assert(offsetof(struct _qsbr_thread_state, seq) == 0, "seq offset");
_Static_assert(offsetof(struct _qsbr_thread_state, shared) == 8, "shared offset");
_Static_assert(offsetof(struct _qsbr_thread_state, tstate) == 16, "tstate offset");
_Static_assert(offsetof(struct _qsbr_shared, wr_seq) == 0, "wr_seq offset");
_Static_assert(offsetof(struct _qsbr_shared, rd_seq) == 8, "rd_seq offset");
_Static_assert(offsetof(struct _qsbr_shared, array) == 16, "array offset");
#  if QSBR_DEFERRALS
_Static_assert(sizeof(struct _qsbr_thread_state) == 40, "3.13.0-3.13.5 thread state size");
_Static_assert(offsetof(struct _qsbr_thread_state, deferrals) == 24, "deferrals offset");
_Static_assert(offsetof(struct _qsbr_thread_state, allocated) == 28, "allocated offset");
_Static_assert(offsetof(struct _qsbr_thread_state, freelist_next) == 32, "freelist_next offset");
#  else
_Static_assert(sizeof(struct _qsbr_thread_state) == 64, "3.13.6+/3.14 thread state size");
_Static_assert(offsetof(struct _qsbr_thread_state, deferred_count) == 24, "deferred_count");
_Static_assert(offsetof(struct _qsbr_thread_state, deferred_memory) == 32, "deferred_memory");
_Static_assert(offsetof(struct _qsbr_thread_state, deferred_page_memory) == 40,
               "deferred_page_memory offset");
_Static_assert(offsetof(struct _qsbr_thread_state, should_process) == 48, "should_process");
_Static_assert(offsetof(struct _qsbr_thread_state, allocated) == 49, "allocated offset");
_Static_assert(offsetof(struct _qsbr_thread_state, freelist_next) == 56, "freelist_next");
#  endif
#  if !QSBR_ALIGNED_ARRAY
// 3.13.0-3.14.3: `array` is the allocation itself (measured on 3.13.5t and 3.13.15t).
_Static_assert(sizeof(struct _qsbr_shared) == 48, "shared size without array_raw");
_Static_assert(offsetof(struct _qsbr_shared, size) == 24, "size offset");
_Static_assert(offsetof(struct _qsbr_shared, mutex) == 32, "mutex offset");
_Static_assert(offsetof(struct _qsbr_shared, freelist) == 40, "freelist offset");
#  else
// 3.14.4+: the aligned array inside `array_raw` (measured on 3.14.7t).
_Static_assert(sizeof(struct _qsbr_shared) == 56, "shared size with array_raw");
_Static_assert(offsetof(struct _qsbr_shared, array_raw) == 24, "array_raw offset");
_Static_assert(offsetof(struct _qsbr_shared, size) == 32, "size offset");
_Static_assert(offsetof(struct _qsbr_shared, mutex) == 40, "mutex offset");
_Static_assert(offsetof(struct _qsbr_shared, freelist) == 48, "freelist offset");
#  endif
#endif

#define TS struct _qsbr_thread_state
#define SH struct _qsbr_shared

static const struct {
    const char *name;
    size_t value;
} layout[] = {
    {"sizeof(struct _qsbr_thread_state)", sizeof(struct _qsbr_thread_state)},
    {"sizeof(struct _qsbr_pad)", sizeof(struct _qsbr_pad)},
    {"sizeof(struct _qsbr_shared)", sizeof(struct _qsbr_shared)},
    {"offsetof(struct _qsbr_thread_state, seq)", offsetof(TS, seq)},
    {"offsetof(struct _qsbr_thread_state, shared)", offsetof(TS, shared)},
    {"offsetof(struct _qsbr_thread_state, tstate)", offsetof(TS, tstate)},
#if QSBR_DEFERRALS
    {"offsetof(struct _qsbr_thread_state, deferrals)", offsetof(TS, deferrals)},
#else
    {"offsetof(struct _qsbr_thread_state, deferred_count)", offsetof(TS, deferred_count)},
    {"offsetof(struct _qsbr_thread_state, deferred_memory)", offsetof(TS, deferred_memory)},
    {"offsetof(struct _qsbr_thread_state, deferred_page_memory)",
     offsetof(TS, deferred_page_memory)},
    {"offsetof(struct _qsbr_thread_state, should_process)", offsetof(TS, should_process)},
#endif
    {"offsetof(struct _qsbr_thread_state, allocated)", offsetof(TS, allocated)},
    {"offsetof(struct _qsbr_thread_state, freelist_next)", offsetof(TS, freelist_next)},
    {"offsetof(struct _qsbr_shared, wr_seq)", offsetof(SH, wr_seq)},
    {"offsetof(struct _qsbr_shared, rd_seq)", offsetof(SH, rd_seq)},
    {"offsetof(struct _qsbr_shared, array)", offsetof(SH, array)},
#if QSBR_ALIGNED_ARRAY
    {"offsetof(struct _qsbr_shared, array_raw)", offsetof(SH, array_raw)},
#endif
    {"offsetof(struct _qsbr_shared, size)", offsetof(SH, size)},
    {"offsetof(struct _qsbr_shared, mutex)", offsetof(SH, mutex)},
    {"offsetof(struct _qsbr_shared, freelist)", offsetof(SH, freelist)},
};

#define LAYOUT_COUNT (sizeof(layout) / sizeof(layout[0]))

long
qsbr_api_layout(const char *name)
{
    for (size_t i = 0; i < LAYOUT_COUNT; i++) {
        if (strcmp(layout[i].name, name) == 0) {
            return (long)layout[i].value;
        }
    }
    return -1;
}

long
qsbr_api_layout_count(void)
{
    return (long)LAYOUT_COUNT;
}

const char *
qsbr_api_layout_name(long i)
{
    if (i < 0 || (size_t)i >= LAYOUT_COUNT) {
        return NULL;
    }
    return layout[i].name;
}
