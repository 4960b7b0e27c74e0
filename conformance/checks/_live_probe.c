/*
 * _live_probe: reads the running free-threaded interpreter's own QSBR state.
 *
 * Built only for free-threaded CPython (3.13t, 3.14t), against that interpreter's installed
 * internal headers (Py_BUILD_CORE_MODULE), so it sees `interp->qsbr` and each thread state's
 * `qsbr` pointer exactly as CPython lays them out.  Nothing here writes to the state.
 *
 * The snapshot holds the QSBR mutex while it reads: reserve, register and unregister take it
 * too, and growth happens inside reserve, so the array, the owners and the freelist are read
 * consistently.  Sequence numbers are read with atomic loads (threads attach and detach freely).
 */
#ifndef Py_BUILD_CORE_MODULE
#  define Py_BUILD_CORE_MODULE 1
#endif
#include "Python.h"
#include "internal/pycore_interp.h"       // PyInterpreterState.qsbr
#include "internal/pycore_pystate.h"      // _PyThreadState_GET()
#include "internal/pycore_qsbr.h"
#include "internal/pycore_tstate.h"       // _PyThreadStateImpl

#include <stddef.h>

#if !defined(Py_GIL_DISABLED)
#  error "the live probe is only for free-threaded builds"
#endif

// CPython 3.13.6 replaced `deferrals` with the memory-aware fields of 3.14 (gh-133136).
#if PY_VERSION_HEX >= 0x030D06F0
#  define PROBE_PROFILE "3.14"
#else
#  define PROBE_PROFILE "3.13"
#endif

static PyObject *
slot_dict(const struct _qsbr_thread_state *q)
{
    PyObject *owner = Py_None;
    PyThreadState *tstate = q->tstate;
    PyObject *owner_id = NULL;
    if (tstate != NULL) {
        owner_id = PyLong_FromUnsignedLong(tstate->thread_id);
        if (owner_id == NULL) {
            return NULL;
        }
        owner = owner_id;
    }
    PyObject *d = Py_BuildValue(
        "{s:K,s:O,s:O}",
        "seq", (unsigned long long)_Py_atomic_load_uint64(&q->seq),
        "allocated", q->allocated ? Py_True : Py_False,
        "owner_thread_id", owner);
    Py_XDECREF(owner_id);
    if (d == NULL) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030D06F0
    PyObject *book = Py_BuildValue(
        "((si)(sn)(sn)(sO))",
        "deferred_count", q->deferred_count,
        "deferred_memory", (Py_ssize_t)q->deferred_memory,
        "deferred_page_memory", (Py_ssize_t)q->deferred_page_memory,
        "should_process", q->should_process ? Py_True : Py_False);
#else
    PyObject *book = Py_BuildValue("((si))", "deferrals", q->deferrals);
#endif
    if (book == NULL || PyDict_SetItemString(d, "bookkeeping", book) < 0) {
        Py_XDECREF(book);
        Py_DECREF(d);
        return NULL;
    }
    Py_DECREF(book);
    return d;
}

static PyObject *
snapshot(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    PyThreadState *me = _PyThreadState_GET();
    PyInterpreterState *interp = me->interp;
    struct _qsbr_shared *shared = &interp->qsbr;

    // Copy under the mutex, build Python objects after: no allocation while holding it.
    PyMutex_Lock(&shared->mutex);
    Py_ssize_t size = shared->size;
    struct _qsbr_thread_state *copy = PyMem_RawCalloc(size ? size : 1, sizeof(*copy));
    Py_ssize_t *freelist = PyMem_RawCalloc(size ? size : 1, sizeof(Py_ssize_t));
    Py_ssize_t free_count = 0, my_slot = -1;
    int corrupt = 0;
    uint64_t wr_seq = _Py_atomic_load_uint64(&shared->wr_seq);
    uint64_t rd_seq = _Py_atomic_load_uint64(&shared->rd_seq);
    if (copy != NULL && freelist != NULL) {
        for (Py_ssize_t i = 0; i < size; i++) {
            copy[i] = shared->array[i].qsbr;
            copy[i].seq = _Py_atomic_load_uint64(&shared->array[i].qsbr.seq);
        }
        for (struct _qsbr_thread_state *p = shared->freelist; p != NULL; p = p->freelist_next) {
            Py_ssize_t index = (struct _qsbr_pad *)p - shared->array;
            if (index < 0 || index >= size || free_count >= size) {
                corrupt = 1;
                break;
            }
            freelist[free_count++] = index;
        }
        struct _qsbr_thread_state *mine = ((_PyThreadStateImpl *)me)->qsbr;
        if (mine != NULL && size) {
            my_slot = (struct _qsbr_pad *)mine - shared->array;
        }
    }
    PyMutex_Unlock(&shared->mutex);

    PyObject *result = NULL, *slots = NULL, *free_list = NULL;
    if (copy == NULL || freelist == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (corrupt) {
        PyErr_SetString(PyExc_RuntimeError, "the QSBR freelist does not link array slots");
        goto done;
    }
    slots = PyList_New(size);
    free_list = PyList_New(free_count);
    if (slots == NULL || free_list == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        PyObject *d = slot_dict(&copy[i]);
        if (d == NULL) {
            goto done;
        }
        PyList_SET_ITEM(slots, i, d);
    }
    for (Py_ssize_t i = 0; i < free_count; i++) {
        PyObject *n = PyLong_FromSsize_t(freelist[i]);
        if (n == NULL) {
            goto done;
        }
        PyList_SET_ITEM(free_list, i, n);
    }
    result = Py_BuildValue("{s:K,s:K,s:n,s:O,s:O,s:n,s:k,s:s}",
                           "wr_seq", (unsigned long long)wr_seq,
                           "rd_seq", (unsigned long long)rd_seq,
                           "size", size, "slots", slots, "freelist", free_list,
                           "my_slot", my_slot, "my_thread_id", me->thread_id,
                           "profile", PROBE_PROFILE);
done:
    Py_XDECREF(slots);
    Py_XDECREF(free_list);
    PyMem_RawFree(copy);
    PyMem_RawFree(freelist);
    return result;
}

#define TS struct _qsbr_thread_state
#define SH struct _qsbr_shared
#define ENTRY(name, value) \
    if (PyDict_SetItemString(d, name, tmp = PyLong_FromSize_t(value)) < 0) goto error; \
    Py_DECREF(tmp);

static PyObject *
layout(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    PyObject *d = PyDict_New(), *tmp = NULL;
    if (d == NULL) {
        return NULL;
    }
    ENTRY("sizeof(struct _qsbr_thread_state)", sizeof(TS));
    ENTRY("sizeof(struct _qsbr_pad)", sizeof(struct _qsbr_pad));
    ENTRY("sizeof(struct _qsbr_shared)", sizeof(SH));
    ENTRY("offsetof(struct _qsbr_thread_state, seq)", offsetof(TS, seq));
    ENTRY("offsetof(struct _qsbr_thread_state, shared)", offsetof(TS, shared));
    ENTRY("offsetof(struct _qsbr_thread_state, tstate)", offsetof(TS, tstate));
#if PY_VERSION_HEX >= 0x030D06F0
    ENTRY("offsetof(struct _qsbr_thread_state, deferred_count)", offsetof(TS, deferred_count));
    ENTRY("offsetof(struct _qsbr_thread_state, deferred_memory)", offsetof(TS, deferred_memory));
    ENTRY("offsetof(struct _qsbr_thread_state, deferred_page_memory)",
          offsetof(TS, deferred_page_memory));
    ENTRY("offsetof(struct _qsbr_thread_state, should_process)", offsetof(TS, should_process));
    ENTRY("offsetof(struct _qsbr_shared, array_raw)", offsetof(SH, array_raw));
#else
    ENTRY("offsetof(struct _qsbr_thread_state, deferrals)", offsetof(TS, deferrals));
#endif
    ENTRY("offsetof(struct _qsbr_thread_state, allocated)", offsetof(TS, allocated));
    ENTRY("offsetof(struct _qsbr_thread_state, freelist_next)", offsetof(TS, freelist_next));
    ENTRY("offsetof(struct _qsbr_shared, wr_seq)", offsetof(SH, wr_seq));
    ENTRY("offsetof(struct _qsbr_shared, rd_seq)", offsetof(SH, rd_seq));
    ENTRY("offsetof(struct _qsbr_shared, array)", offsetof(SH, array));
    ENTRY("offsetof(struct _qsbr_shared, size)", offsetof(SH, size));
    ENTRY("offsetof(struct _qsbr_shared, mutex)", offsetof(SH, mutex));
    ENTRY("offsetof(struct _qsbr_shared, freelist)", offsetof(SH, freelist));
    return d;
error:
    Py_XDECREF(tmp);
    Py_DECREF(d);
    return NULL;
}

static PyMethodDef probe_methods[] = {
    {"snapshot", snapshot, METH_NOARGS,
     "snapshot() -> dict: this interpreter's QSBR state, read under its mutex."},
    {"layout", layout, METH_NOARGS,
     "layout() -> dict: sizeof/offsetof of the interpreter's QSBR structs."},
    {NULL, NULL, 0, NULL},
};

static int
probe_exec(PyObject *module)
{
    return PyModule_AddStringConstant(module, "PROFILE", PROBE_PROFILE);
}

static PyModuleDef_Slot probe_slots[] = {
    {Py_mod_exec, probe_exec},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
    {0, NULL},
};

static struct PyModuleDef probe_module = {
    PyModuleDef_HEAD_INIT, "_live_probe",
    "Reads the running free-threaded interpreter's QSBR state.", 0,
    probe_methods, probe_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__live_probe(void)
{
    return PyModuleDef_Init(&probe_module);
}
