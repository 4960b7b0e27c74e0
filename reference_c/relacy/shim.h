// Relacy stand-ins for the services the port's src/qsbr.c uses, so that the file is compiled
// unmodified (as C++) under the model checker.  Included by qsbr_relacy.cpp *before* qsbr.c;
// each stand-in defines the include guard of the header it replaces, so qsbr.c's own
// #include lines pull in nothing else.
//
//   pyatomic.h      every _Py_atomic_* on a plain uint64_t field goes to a shadow rl::atomic
//                   registered by the field's address (created on first use from the field's
//                   value); stores also write through to the plain field.  An access to an
//                   address inside a freed QSBR array fails the run ("access to freed array").
//                   A plain write to a field that is accessed atomically (the shadow's last
//                   value differs from the field) fails the run too: that is a C11 data race.
//   pycore_lock.h   PyMutex -> one rl::mutex per PyMutex address.
//   pycore_pymem.h  PyMem_RawCalloc/Free: real calloc; a freed block is poisoned and kept
//                   (quarantine) until the end of the iteration, when the poison is checked
//                   (a write into a freed array fails the run).
//   pycore_tstate.h thread states with an attached/detached status, and stop-the-world made
//                   of an rl::mutex + rl::condition_variable (see qsbr_relacy.cpp).
//   memcpy          growth's copy of the old array also copies the shadows (relaxed loads by
//                   the growing thread, so what it copies is what the model lets it see).
#ifndef QSBR_RELACY_SHIM_H
#define QSBR_RELACY_SHIM_H

#define QSBR_PYATOMIC_H
#define QSBR_PYCORE_LOCK_H
#define QSBR_PYCORE_PYMEM_H
#define QSBR_PYCORE_TSTATE_H

#include "qsbr_pyport.h"

// ---- pyatomic.h -------------------------------------------------------------------------
// Implemented in qsbr_relacy.cpp (they need the checker's per-iteration state).
rl::atomic<uint64_t> *qsbr_rl_shadow(const void *addr);
void qsbr_rl_wrote(const void *addr, uint64_t value);

// Relacy (C++ mode) lets a seq_cst fence synchronise only with other seq_cst fences; it does
// not model the C++11 rule ([atomics.order]: a seq_cst fence X sequenced after a store A, and a
// seq_cst load B that follows X in the single total order S, make B observe A or later).
// Without it the correct port shows false use-after-frees (the reclaimer's fence is what orders
// its release-store unlink before its scan).  Emulation: a seq_cst load first takes the clock
// of every seq_cst fence executed before it (Relacy's execution order is S), with preemption
// disabled between its own scheduling point and the load.  This is stronger than the rule in
// one way: the thread's later accesses are ordered too, not only B itself.
static inline void
qsbr_rl_fence_rule(void)
{
    rl::context &c = rl::ctx();
    rl::thread_id_t n = c.get_thread_count();
    for (rl::thread_id_t j = 0; j < n; j++) {
        if (c.threadx_->acq_rel_order_[j] < c.seq_cst_fence_order_[j]) {
            c.threadx_->acq_rel_order_[j] = c.seq_cst_fence_order_[j];
        }
    }
}

template<typename T>
static inline T
qsbr_rl_atomic_load(rl::atomic<T> &a, rl::memory_order mo)
{
#ifdef QSBR_RL_NO_FENCE_RULE
    if (1) {
#else
    if (mo != rl::mo_seq_cst) {
#endif
        return a($).load(mo);
    }
    rl::context &c = rl::ctx();
    c.sched();
    rl::preemption_disabler nopreempt(c);
    qsbr_rl_fence_rule();
    return a($).load(mo);
}

static inline uint64_t
qsbr_rl_load(const uint64_t *obj, rl::memory_order mo)
{
    rl::atomic<uint64_t> *shadow = qsbr_rl_shadow(obj);
    return qsbr_rl_atomic_load(*shadow, mo);
}

static inline void
qsbr_rl_store(uint64_t *obj, uint64_t value, rl::memory_order mo)
{
    (*qsbr_rl_shadow(obj))($).store(value, mo);
    *obj = value;
    qsbr_rl_wrote(obj, value);
}

static inline uint64_t _Py_atomic_load_uint64(const uint64_t *obj)
{ return qsbr_rl_load(obj, rl::mo_seq_cst); }
static inline uint64_t _Py_atomic_load_uint64_acquire(const uint64_t *obj)
{ return qsbr_rl_load(obj, rl::mo_acquire); }
static inline uint64_t _Py_atomic_load_uint64_relaxed(const uint64_t *obj)
{ return qsbr_rl_load(obj, rl::mo_relaxed); }
static inline void _Py_atomic_store_uint64(uint64_t *obj, uint64_t v)
{ qsbr_rl_store(obj, v, rl::mo_seq_cst); }
static inline void _Py_atomic_store_uint64_release(uint64_t *obj, uint64_t v)
{ qsbr_rl_store(obj, v, rl::mo_release); }
static inline void _Py_atomic_store_uint64_relaxed(uint64_t *obj, uint64_t v)
{ qsbr_rl_store(obj, v, rl::mo_relaxed); }

static inline uint64_t
_Py_atomic_add_uint64(uint64_t *obj, uint64_t value)
{
    uint64_t old = (*qsbr_rl_shadow(obj))($).fetch_add(value, rl::mo_seq_cst);
    *obj = old + value;
    qsbr_rl_wrote(obj, old + value);
    return old;
}

static inline int
_Py_atomic_compare_exchange_uint64(uint64_t *obj, uint64_t *expected, uint64_t desired)
{
    bool ok = (*qsbr_rl_shadow(obj))($).compare_exchange_strong(*expected, desired,
                                                                  rl::mo_seq_cst);
    if (ok) {
        *obj = desired;
        qsbr_rl_wrote(obj, desired);
    }
    return ok;
}

static inline void
_Py_atomic_fence_seq_cst(void)
{
    rl::atomic_thread_fence(rl::mo_seq_cst, $);
}

// ---- pycore_lock.h ----------------------------------------------------------------------
typedef struct PyMutex {
    uint8_t _bits;
} PyMutex;

void qsbr_rl_mutex_lock(PyMutex *m);
void qsbr_rl_mutex_unlock(PyMutex *m);

static inline void PyMutex_Lock(PyMutex *m) { qsbr_rl_mutex_lock(m); }
static inline void PyMutex_Unlock(PyMutex *m) { qsbr_rl_mutex_unlock(m); }
static inline void _PyMutex_at_fork_reinit(PyMutex *m) { m->_bits = 0; }

// ---- pycore_pymem.h ---------------------------------------------------------------------
void *PyMem_RawCalloc(size_t nelem, size_t elsize);
void PyMem_RawFree(void *ptr);

// ---- pycore_tstate.h --------------------------------------------------------------------
#include "pycore_qsbr.h"

#define _Py_THREAD_DETACHED     0
#define _Py_THREAD_ATTACHED     1

struct _ts {
    PyInterpreterState *interp;
    int state;          // _Py_THREAD_DETACHED or _Py_THREAD_ATTACHED, under the STW mutex
};

typedef struct _PyThreadStateImpl {
    PyThreadState base;
    struct _qsbr_thread_state *qsbr;
} _PyThreadStateImpl;

struct _is {
    struct _qsbr_shared qsbr;
};

PyThreadState *_PyThreadState_GET(void);   // only named by asserts (compiled out: NDEBUG)
void _PyEval_StopTheWorld(PyInterpreterState *interp);
void _PyEval_StartTheWorld(PyInterpreterState *interp);

// ---- string.h: growth's memcpy ----------------------------------------------------------
void *qsbr_rl_memcpy(void *dst, const void *src, size_t n);
#define memcpy(d, s, n) qsbr_rl_memcpy((d), (s), (n))

#endif  // QSBR_RELACY_SHIM_H
