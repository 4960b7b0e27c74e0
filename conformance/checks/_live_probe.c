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
#include "_probe_release.h"               // probe_refuse_other_release()

#include <stddef.h>
#include <string.h>

#if !defined(Py_GIL_DISABLED)
#  error "the live probe is only for free-threaded builds"
#endif

// CPython 3.13.6 replaced `deferrals` with the memory-aware fields of 3.14 (gh-133136);
// 3.14.4 aligned the array inside `array_raw` (gh-144438).  The release matrix is in
// conformance/model/profiles.py.
#if PY_VERSION_HEX >= 0x030D06F0
#  define PROBE_PROFILE "3.14"
#else
#  define PROBE_PROFILE "3.13"
#endif
#if PY_VERSION_HEX >= 0x030E0400
#  define PROBE_ARRAY_RAW 1
#else
#  define PROBE_ARRAY_RAW 0
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

// --- Driving the sequences: one operation on the live state, with the state read just
// before and just after, all inside one call with this thread attached and no Python code in
// between (so nothing the interpreter does on its own, such as a GC or a deferred free, can
// move the sequences inside the window; what it does between calls is reported separately).
//
// The header's static inline functions (_Py_qsbr_quiescent_state, _Py_qbsr_goal_reached,
// _Py_qsbr_shared_current) are compiled in from the interpreter's own installed header.
// _Py_qsbr_advance, _Py_qsbr_poll and _Py_qsbr_shared_next / _Py_qsbr_deferred_advance are
// local symbols of the interpreter binary: conformance.checks.symbols finds their addresses in
// its ELF symbol table, checked against exported anchors, and passes them in.  attach and
// detach are driven by real interpreter activity (Py_BEGIN/END_ALLOW_THREADS).

struct seq_state {
    uint64_t wr_seq, rd_seq;
    Py_ssize_t size;
    uint64_t *seqs;
    long long book;      // this thread's deferrals (3.13.0-3.13.5) or deferred_count
};

static int
seq_state_alloc(struct seq_state *s, Py_ssize_t size)
{
    s->size = size;
    s->seqs = PyMem_RawCalloc(size ? size : 1, sizeof(uint64_t));
    return s->seqs != NULL ? 0 : -1;
}

static void
seq_state_read(struct _qsbr_shared *shared, struct _qsbr_thread_state *mine,
               struct seq_state *s)
{
    s->wr_seq = _Py_atomic_load_uint64(&shared->wr_seq);
    s->rd_seq = _Py_atomic_load_uint64(&shared->rd_seq);
    for (Py_ssize_t i = 0; i < s->size; i++) {
        s->seqs[i] = _Py_atomic_load_uint64(&shared->array[i].qsbr.seq);
    }
#if PY_VERSION_HEX >= 0x030D06F0
    s->book = mine->deferred_count;
#else
    s->book = mine->deferrals;
#endif
}

static PyObject *
seq_state_dict(const struct seq_state *s)
{
    PyObject *seqs = PyList_New(s->size);
    if (seqs == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < s->size; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(s->seqs[i]);
        if (v == NULL) {
            Py_DECREF(seqs);
            return NULL;
        }
        PyList_SET_ITEM(seqs, i, v);
    }
    PyObject *d = Py_BuildValue("{s:K,s:K,s:N,s:L}", "wr_seq", (unsigned long long)s->wr_seq,
                                "rd_seq", (unsigned long long)s->rd_seq, "seqs", seqs,
                                "book", s->book);
    return d;
}

typedef uint64_t (*shared_fn)(struct _qsbr_shared *);
typedef uint64_t (*slot_fn)(struct _qsbr_thread_state *);
typedef bool (*poll_fn)(struct _qsbr_thread_state *, uint64_t);

static PyObject *
seq_op(PyObject *module, PyObject *args)
{
    const char *kind;
    unsigned long long address, goal;
    if (!PyArg_ParseTuple(args, "sKK", &kind, &address, &goal)) {
        return NULL;
    }
    PyThreadState *me = _PyThreadState_GET();
    struct _qsbr_shared *shared = &me->interp->qsbr;
    struct _qsbr_thread_state *mine = ((_PyThreadStateImpl *)me)->qsbr;
    // The array is stable while this thread is attached; the driver keeps every other thread
    // blocked (detached), so nothing reserves (grows) while we run.
    Py_ssize_t size = shared->size;
    struct seq_state before = {0}, middle = {0}, after = {0};
    if (seq_state_alloc(&before, size) < 0 || seq_state_alloc(&middle, size) < 0
        || seq_state_alloc(&after, size) < 0) {
        PyMem_RawFree(before.seqs);
        PyMem_RawFree(middle.seqs);
        PyMem_RawFree(after.seqs);
        return PyErr_NoMemory();
    }
    unsigned long long result = 0;
    int known = 1, has_middle = 0;

    seq_state_read(shared, mine, &before);
    if (strcmp(kind, "quiescent_state") == 0) {
        _Py_qsbr_quiescent_state(mine);
    }
    else if (strcmp(kind, "goal_reached") == 0) {
        result = _Py_qbsr_goal_reached(mine, goal);
    }
    else if (strcmp(kind, "advance") == 0 && address != 0) {
        result = ((shared_fn)(uintptr_t)address)(shared);
    }
    else if (strcmp(kind, "poll") == 0 && address != 0) {
        result = ((poll_fn)(uintptr_t)address)(mine, goal);
    }
#if PY_VERSION_HEX >= 0x030D06F0
    else if (strcmp(kind, "shared_next") == 0 && address != 0) {
        result = ((shared_fn)(uintptr_t)address)(shared);
    }
#else
    else if (strcmp(kind, "deferred_advance") == 0 && address != 0) {
        result = ((slot_fn)(uintptr_t)address)(mine);
    }
#endif
    else if (strcmp(kind, "detach_attach") == 0) {
        has_middle = 1;
        Py_BEGIN_ALLOW_THREADS
        seq_state_read(shared, mine, &middle);
        Py_END_ALLOW_THREADS
    }
    else {
        known = 0;
    }
    seq_state_read(shared, mine, &after);
    // The array must not have moved: the comparison assumes one array throughout.
    int moved = shared->size != size || ((_PyThreadStateImpl *)me)->qsbr != mine;

    PyObject *out = NULL;
    if (!known) {
        PyErr_Format(PyExc_ValueError, "unknown or unavailable operation %s", kind);
    }
    else if (moved) {
        PyErr_SetString(PyExc_RuntimeError, "the QSBR array moved during a sequence operation");
    }
    else {
        PyObject *b = seq_state_dict(&before), *a = seq_state_dict(&after);
        PyObject *m = has_middle ? seq_state_dict(&middle) : Py_NewRef(Py_None);
        if (b != NULL && a != NULL && m != NULL) {
            out = Py_BuildValue("{s:K,s:O,s:O,s:O,s:n}", "result", result, "before", b,
                                "middle", m, "after", a,
                                "my_slot", (Py_ssize_t)((struct _qsbr_pad *)mine - shared->array));
        }
        Py_XDECREF(b);
        Py_XDECREF(a);
        Py_XDECREF(m);
    }
    PyMem_RawFree(before.seqs);
    PyMem_RawFree(middle.seqs);
    PyMem_RawFree(after.seqs);
    return out;
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
#  if PROBE_ARRAY_RAW
    ENTRY("offsetof(struct _qsbr_shared, array_raw)", offsetof(SH, array_raw));
#  endif
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
    {"seq_op", seq_op, METH_VARARGS,
     "seq_op(kind, address, goal) -> dict: run one QSBR operation on this thread's slot "
     "(address: the interpreter's function for advance, poll, shared_next, deferred_advance) "
     "and return the result and the sequences just before and just after."},
    {NULL, NULL, 0, NULL},
};

static int
probe_exec(PyObject *module)
{
    if (probe_refuse_other_release("live probe") < 0) {
        return -1;
    }
    if (PyModule_AddIntConstant(module, "ARRAY_RAW", PROBE_ARRAY_RAW) < 0) {
        return -1;
    }
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
