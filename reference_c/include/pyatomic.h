// Stand-in for CPython's Include/cpython/pyatomic.h, written the way CPython's own C11 backend
// (pyatomic_std.h) is: plain fields, accessed through casts to _Atomic types.
//
// Memory orders follow CPython's naming rule: a function without a suffix is sequentially
// consistent; _relaxed, _acquire and _release say so.  qsbr.c relies on that rule: the scan in
// qsbr_poll_scan() uses plain (seq_cst) loads, which is what gives the reclaiming thread a
// happens-before edge from every reader's release store in _Py_qsbr_quiescent_state().
#ifndef QSBR_PYATOMIC_H
#define QSBR_PYATOMIC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define _Py_USING_STD(T, obj) ((_Atomic(T) *)(obj))

static inline uint64_t
_Py_atomic_load_uint64(const uint64_t *obj)
{ return atomic_load(_Py_USING_STD(uint64_t, obj)); }

static inline uint64_t
_Py_atomic_load_uint64_acquire(const uint64_t *obj)
{ return atomic_load_explicit(_Py_USING_STD(uint64_t, obj), memory_order_acquire); }

static inline uint64_t
_Py_atomic_load_uint64_relaxed(const uint64_t *obj)
{ return atomic_load_explicit(_Py_USING_STD(uint64_t, obj), memory_order_relaxed); }

static inline void
_Py_atomic_store_uint64(uint64_t *obj, uint64_t value)
{ atomic_store(_Py_USING_STD(uint64_t, obj), value); }

static inline void
_Py_atomic_store_uint64_release(uint64_t *obj, uint64_t value)
{ atomic_store_explicit(_Py_USING_STD(uint64_t, obj), value, memory_order_release); }

static inline void
_Py_atomic_store_uint64_relaxed(uint64_t *obj, uint64_t value)
{ atomic_store_explicit(_Py_USING_STD(uint64_t, obj), value, memory_order_relaxed); }

// Returns the value *before* the addition, like CPython's.
static inline uint64_t
_Py_atomic_add_uint64(uint64_t *obj, uint64_t value)
{ return atomic_fetch_add(_Py_USING_STD(uint64_t, obj), value); }

static inline int
_Py_atomic_compare_exchange_uint64(uint64_t *obj, uint64_t *expected, uint64_t desired)
{ return atomic_compare_exchange_strong(_Py_USING_STD(uint64_t, obj), expected, desired); }

static inline int
_Py_atomic_load_int(const int *obj)
{ return atomic_load(_Py_USING_STD(int, obj)); }

static inline int
_Py_atomic_load_int_relaxed(const int *obj)
{ return atomic_load_explicit(_Py_USING_STD(int, obj), memory_order_relaxed); }

static inline void
_Py_atomic_store_int(int *obj, int value)
{ atomic_store(_Py_USING_STD(int, obj), value); }

static inline void
_Py_atomic_store_int_release(int *obj, int value)
{ atomic_store_explicit(_Py_USING_STD(int, obj), value, memory_order_release); }

static inline int
_Py_atomic_compare_exchange_int(int *obj, int *expected, int desired)
{ return atomic_compare_exchange_strong(_Py_USING_STD(int, obj), expected, desired); }

static inline uint8_t
_Py_atomic_load_uint8(const uint8_t *obj)
{ return atomic_load(_Py_USING_STD(uint8_t, obj)); }

static inline uint8_t
_Py_atomic_load_uint8_relaxed(const uint8_t *obj)
{ return atomic_load_explicit(_Py_USING_STD(uint8_t, obj), memory_order_relaxed); }

static inline void
_Py_atomic_store_uint8(uint8_t *obj, uint8_t value)
{ atomic_store(_Py_USING_STD(uint8_t, obj), value); }

static inline void
_Py_atomic_store_uint8_release(uint8_t *obj, uint8_t value)
{ atomic_store_explicit(_Py_USING_STD(uint8_t, obj), value, memory_order_release); }

static inline uint8_t
_Py_atomic_exchange_uint8(uint8_t *obj, uint8_t value)
{ return atomic_exchange(_Py_USING_STD(uint8_t, obj), value); }

static inline int
_Py_atomic_compare_exchange_uint8(uint8_t *obj, uint8_t *expected, uint8_t desired)
{ return atomic_compare_exchange_strong(_Py_USING_STD(uint8_t, obj), expected, desired); }

static inline uintptr_t
_Py_atomic_load_uintptr_relaxed(const uintptr_t *obj)
{ return atomic_load_explicit(_Py_USING_STD(uintptr_t, obj), memory_order_relaxed); }

static inline uintptr_t
_Py_atomic_or_uintptr(uintptr_t *obj, uintptr_t value)
{ return atomic_fetch_or(_Py_USING_STD(uintptr_t, obj), value); }

static inline uintptr_t
_Py_atomic_and_uintptr(uintptr_t *obj, uintptr_t value)
{ return atomic_fetch_and(_Py_USING_STD(uintptr_t, obj), value); }

static inline void *
_Py_atomic_load_ptr_acquire(void *const *obj)
{ return atomic_load_explicit(_Py_USING_STD(void *, obj), memory_order_acquire); }

static inline void
_Py_atomic_store_ptr_release(void **obj, void *value)
{ atomic_store_explicit(_Py_USING_STD(void *, obj), value, memory_order_release); }

static inline void
_Py_atomic_fence_seq_cst(void)
{ atomic_thread_fence(memory_order_seq_cst); }

#endif  // QSBR_PYATOMIC_H
