/*
 * _hazard_probe: hardware litmus tests of QSBR's ordering shapes, driven through the running
 * free-threaded interpreter's OWN compiled QSBR functions.
 *
 * Built only for free-threaded CPython (3.13t, 3.14t), against that interpreter's installed
 * internal headers (Py_BUILD_CORE_MODULE), like _live_probe.  The non-exported functions
 * (_Py_qsbr_advance, _Py_qsbr_poll, and _Py_qsbr_shared_next on 3.13.6+ / 3.14 or
 * _Py_qsbr_deferred_advance on 3.13.0-3.13.5) are called at the addresses that
 * conformance.checks.symbols finds in the interpreter binary's .symtab (load bias checked on
 * exported anchors).  _Py_qsbr_quiescent_state and _Py_qbsr_goal_reached are static inline
 * functions of pycore_qsbr.h: compiled here from that interpreter's own header, which is what
 * every caller inside the interpreter compiles too.
 *
 * The two threads are real thread states of the running interpreter: each is a C thread that
 * makes its thread state with PyThreadState_New() (the interpreter reserves and registers its
 * QSBR slot: _Py_qsbr_reserve, _Py_qsbr_register) and attaches with PyEval_RestoreThread()
 * (_Py_qsbr_attach), as any C thread that calls into CPython does.  Slots reserved by hand,
 * without a thread state, would be unsound: a slot's `tstate` is written through when the array
 * grows (initialize_new_array), read by after_fork and by other tools, and a pseudo-thread that
 * is not in the interpreter's thread list cannot be stopped by stop-the-world, so it would keep
 * using the old array after a growth frees it.  The threads run no Python code and hold no
 * reference to any Python object, so the quiescent states they report are true.  While they
 * spin between iterations they honour stop-the-world requests (the eval breaker's stop bit):
 * they detach and re-attach, and reload their slot (the array may have moved).
 *
 * Per iteration (three spin barriers, no sleeps; each thread pinned to its own CPU; the spin
 * barrier, the random offsets and the per-band tally are reference_c/litmus/litmus_core.h's, the
 * same core as the port's litmus):
 *
 *   setup (writer): ptr = old; wr_seq_before = wr_seq                 -- barrier A
 *   each side: spin its random offset (0..range-1 empty iterations, a new pair per iteration
 *   drawn by both threads from the same seeded stream)
 *   writer                                    reader
 *     stale-goal:                               _Py_qsbr_advance(shared)
 *       store_release(ptr, new)   (unlink)      _Py_qsbr_quiescent_state(mine)
 *       [seq_cst fence]                         rseq = mine->seq
 *       goal = GOAL()                           p = load(ptr)
 *     retire-before-unlink:
 *       goal = GOAL()
 *       store_release(ptr, new)
 *                                                                     -- barrier B
 *   writer: _Py_qsbr_quiescent_state(mine); polled = _Py_qsbr_poll(mine, goal);
 *           if polled: old->value = POISON (the reclamation)         -- barrier C
 *   reader: tallies; if it loaded old and the poll reclaimed, reads old->value.
 *
 * GOAL() is the non-advancing goal (shared_next / deferred_advance) or the advancing one
 * (_Py_qsbr_advance).  Forbidden: the reader's quiescent state reached the goal
 * (QSBR_LEQ(goal, rseq), what _Py_qbsr_goal_reached and the poll test) while the reader loaded
 * the old pointer after that quiescent state.  For stale-goal that is impossible under
 * sequential consistency (the store-buffering shape); retire-before-unlink allows it even then.
 *
 * read-after-attach (S-READ-1): the reader is detached when the iteration starts.
 *   writer                                    reader
 *     store_release(ptr, new)                   PyEval_RestoreThread(ts)  (_Py_qsbr_attach:
 *     goal = _Py_qsbr_advance(shared)             a seq_cst store of the slot's seq)
 *     _Py_qsbr_quiescent_state(mine)            p = load(ptr)   (seq_cst, or acquire)
 *     polled = _Py_qsbr_poll(mine, goal)
 *     if polled: old->value = POISON
 * and the reader detaches again (PyEval_SaveThread: _Py_qsbr_detach) after barrier C.
 * Forbidden: the poll reclaimed and the reader loaded the old pointer.  With a seq_cst first load
 * C11 forbids it (control); with an acquire first load C11 allows it (the load may pass the
 * attach store), which hardware shows only where such a load can pass a store (ARM64 LDAPR;
 * not x86, where the seq_cst store is an xchg).
 */
#ifndef Py_BUILD_CORE_MODULE
#  define Py_BUILD_CORE_MODULE 1
#endif
#include "Python.h"
#include "internal/pycore_ceval.h"        // _PY_EVAL_PLEASE_STOP_BIT
#include "internal/pycore_interp.h"       // PyInterpreterState.qsbr
#include "internal/pycore_pystate.h"      // _PyThreadState_GET()
#include "internal/pycore_qsbr.h"
#include "internal/pycore_runtime.h"     // _PyRuntime.stoptheworld
#include "internal/pycore_tstate.h"       // _PyThreadStateImpl
#include "_probe_release.h"               // probe_refuse_other_release()
#include "litmus_core.h"                  // reference_c/litmus/: barrier, offsets, bands

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#if !defined(Py_GIL_DISABLED)
#  error "the hazard probe is only for free-threaded builds"
#endif

// 3.13.6 (gh-133136) replaced _Py_qsbr_deferred_advance(qsbr) with _Py_qsbr_shared_next(shared)
#if PY_VERSION_HEX >= 0x030D06F0
#  define HAZARD_SHARED_NEXT 1
#else
#  define HAZARD_SHARED_NEXT 0
#endif

#define ALIVE 0x11111111u
#define POISON 0xDEADDEADu

enum { SHAPE_STALE_GOAL, SHAPE_RETIRE_BEFORE_UNLINK, SHAPE_READ_AFTER_ATTACH };
enum { GOAL_NON_ADVANCING, GOAL_ADVANCING };

typedef uint64_t (*shared_fn)(struct _qsbr_shared *);
typedef uint64_t (*slot_fn)(struct _qsbr_thread_state *);
typedef bool (*poll_fn)(struct _qsbr_thread_state *, uint64_t);

struct obj {
    uint64_t value;
    char pad[56];
};

struct counts {
    long long iterations;
    long long forbidden;        // goal reached by the reader's QS, old pointer loaded after it
    long long stale;            // ... and goal == wr_seq_before + 2
    long long reclaimed;        // ... and the writer's _Py_qsbr_poll(goal) then succeeded
    long long poisoned;         // ... and the reader read the poison through its pointer
    long long outcome[2][2];    // [goal reached by the reader's QS][reader loaded old]
    long long writer_first;     // goal == wr_seq_before + 2
    long long goal_advanced;    // the goal function advanced wr_seq itself
    long long polled;           // the writer's poll succeeded
    long long parked[2];        // stop-the-world requests honoured (writer, reader)
    struct lc_tally tally;      // iterations and forbidden outcomes per band of offsets
};

struct run {
    PyInterpreterState *interp;
    int shape, goal_kind, fence;
    int acquire;                // read-after-attach: the first load is an acquire load
    long long iterations;
    int cpu[2];
    uint32_t range;             // offsets: 0..range-1 empty iterations per side
    unsigned long long seed;
    shared_fn advance;
    poll_fn poll;
    void *batch;                // shared_next (shared_fn) or deferred_advance (slot_fn)

    struct lc_sync sync;        // barrier counters and the abort flag, a cache line each
    _Alignas(64) void *ptr;     // the shared pointer (the unlink target)
    char pad0[56];
    _Alignas(64) uint64_t before;   // published by the writer before barrier A
    uint64_t goal;                  // published by the writer before barrier C
    int poll_ok;                    // published by the writer before barrier C
    char pad1[44];
    struct obj objs[2][2];          // [iteration parity][0: old, 1: new]

    struct counts c;
    char error[256];
};

struct worker {
    struct run *run;
    int role;                   // 0: writer, 1: reader
    PyThreadState *ts;
    struct _qsbr_thread_state *mine;
    int attached;
};

static void
set_error(struct run *run, const char *message, int err)
{
    if (__atomic_exchange_n(&run->sync.abort.value, 1, __ATOMIC_ACQ_REL) == 0) {
        if (err) {
            snprintf(run->error, sizeof(run->error), "%s: %s", message, strerror(err));
        }
        else {
            snprintf(run->error, sizeof(run->error), "%s", message);
        }
    }
}

static int
stop_requested(const struct _stoptheworld_state *stw)
{
    // Written under HEAD_LOCK; read here only to decide whether to go on waiting.
    return _Py_atomic_load_uint8_relaxed((const uint8_t *)&stw->requested) != 0;
}

// Between iterations only: if another thread asked to stop the world, do what the eval loop
// does (_PyThreadState_Suspend, then attach) with public calls: detach, wait until the
// requester has parked this thread (DETACHED -> SUSPENDED) or the request is over, and attach
// again, which waits until the world restarts.  Attaching at once would often win the race
// against the requester's next scan, and it would have to ask again.  The slot may have moved
// if the array grew meanwhile.
static void
honour_stop(struct worker *w)
{
    if (!w->attached || !_Py_eval_breaker_bit_is_set(w->ts, _PY_EVAL_PLEASE_STOP_BIT)) {
        return;
    }
    _Py_unset_eval_breaker_bit(w->ts, _PY_EVAL_PLEASE_STOP_BIT);
    PyEval_SaveThread();
    while (_Py_atomic_load_int(&w->ts->state) == _Py_THREAD_DETACHED
           && (stop_requested(&w->run->interp->stoptheworld)
               || stop_requested(&_PyRuntime.stoptheworld))) {
        sched_yield();
    }
    PyEval_RestoreThread(w->ts);
    w->mine = ((_PyThreadStateImpl *)w->ts)->qsbr;
    w->run->c.parked[w->role]++;
}

// While waiting at a barrier, every few thousand spins: honour a stop-the-world request, then
// yield the CPU (on a loaded machine the other thread may be descheduled).
static void
idle(void *arg)
{
    honour_stop((struct worker *)arg);
    sched_yield();
}

// Two-thread spin barrier (litmus_core.h): 0, or -1 when the run was aborted.
static int
barrier(struct worker *w, uint64_t k)
{
    honour_stop(w);
    return lc_barrier(&w->run->sync, w->role, k, idle, w);
}

static uint64_t
take_goal(struct worker *w, int *advanced)
{
    struct run *run = w->run;
    struct _qsbr_shared *shared = w->mine->shared;
    if (run->goal_kind == GOAL_ADVANCING) {
        *advanced = 1;
        return run->advance(shared);
    }
#if HAZARD_SHARED_NEXT
    *advanced = 0;
    return ((shared_fn)run->batch)(shared);
#else
    // Every QSBR_DEFERRED_LIMIT-th call advances (and resets the count): as shipped.
    uint64_t goal = ((slot_fn)run->batch)(w->mine);
    *advanced = w->mine->deferrals == 0;
    return goal;
#endif
}

static void
writer_loop(struct worker *w)
{
    struct run *run = w->run;
    struct _qsbr_shared *shared = &run->interp->qsbr;
    struct lc_offsets offsets;
    lc_offsets_init(&offsets, run->seed, run->range);
    uint64_t k = 1;
    for (long long i = 0; i < run->iterations; i++) {
        uint32_t my_delay, their_delay;
        lc_next_pair(&offsets, &my_delay, &their_delay);
        struct obj *old = &run->objs[i & 1][0], *new = &run->objs[i & 1][1];
        old->value = ALIVE;
        new->value = ALIVE;
        _Py_atomic_store_ptr_relaxed(&run->ptr, old);
        run->before = _Py_atomic_load_uint64(&shared->wr_seq);
        if (barrier(w, ++k) < 0) {                                       // A
            return;
        }
        lc_delay(my_delay);
        uint64_t goal;
        int advanced;
        int ok = 0;
        if (run->shape == SHAPE_STALE_GOAL) {
            _Py_atomic_store_ptr_release(&run->ptr, new);
            if (run->fence) {
                _Py_atomic_fence_seq_cst();
            }
            goal = take_goal(w, &advanced);
        }
        else if (run->shape == SHAPE_RETIRE_BEFORE_UNLINK) {
            goal = take_goal(w, &advanced);
            _Py_atomic_store_ptr_release(&run->ptr, new);
        }
        else {
            _Py_atomic_store_ptr_release(&run->ptr, new);
            goal = take_goal(w, &advanced);
            _Py_qsbr_quiescent_state(w->mine);
            ok = run->poll(w->mine, goal);
            if (ok) {
                old->value = POISON;
            }
        }
        if (barrier(w, ++k) < 0) {                                       // B
            return;
        }
        if (run->shape != SHAPE_READ_AFTER_ATTACH) {
            _Py_qsbr_quiescent_state(w->mine);
            ok = run->poll(w->mine, goal);
            if (ok) {
                old->value = POISON;
            }
        }
        run->goal = goal;
        run->poll_ok = ok;
        run->c.goal_advanced += advanced;
        run->c.polled += ok;
        if (barrier(w, ++k) < 0) {                                       // C
            return;
        }
    }
}

static void
reader_loop(struct worker *w)
{
    struct run *run = w->run;
    struct _qsbr_shared *shared = &run->interp->qsbr;
    struct counts *c = &run->c;
    struct lc_offsets offsets;
    lc_offsets_init(&offsets, run->seed, run->range);
    uint64_t k = 1;
    for (long long i = 0; i < run->iterations; i++) {
        uint32_t their_delay, my_delay;
        lc_next_pair(&offsets, &their_delay, &my_delay);
        struct obj *old = &run->objs[i & 1][0];
        if (barrier(w, ++k) < 0) {                                       // A
            return;
        }
        lc_delay(my_delay);
        uint64_t rseq = 0;
        struct obj *p;
        if (run->shape != SHAPE_READ_AFTER_ATTACH) {
            run->advance(shared);
            _Py_qsbr_quiescent_state(w->mine);
            rseq = _Py_atomic_load_uint64_relaxed(&w->mine->seq);
            p = _Py_atomic_load_ptr(&run->ptr);
        }
        else {
            PyEval_RestoreThread(w->ts);
            w->attached = 1;
            p = run->acquire ? _Py_atomic_load_ptr_acquire(&run->ptr)
                             : _Py_atomic_load_ptr(&run->ptr);
            w->mine = ((_PyThreadStateImpl *)w->ts)->qsbr;
        }
        if (barrier(w, ++k) < 0) {                                       // B
            return;
        }
        // Written before A; the writer writes the next one only after C.
        uint64_t before = run->before;
        if (barrier(w, ++k) < 0) {                                       // C
            return;
        }
        // Written between B and C; the next ones only after the next B.
        uint64_t goal = run->goal;
        int loaded_old = p == old;
        // read-after-attach: "reached" is the writer's poll (it saw this thread offline or
        // past the goal).
        int reached = run->shape == SHAPE_READ_AFTER_ATTACH ? run->poll_ok
                                                             : QSBR_LEQ(goal, rseq);
        c->outcome[reached][loaded_old]++;
        lc_tally_add(&c->tally, their_delay, my_delay, reached && loaded_old);
        c->writer_first += goal == before + QSBR_INCR;
        if (reached && loaded_old) {
            c->forbidden++;
            c->stale += goal == before + QSBR_INCR;
            if (run->poll_ok) {
                c->reclaimed++;
                c->poisoned += p->value == POISON;
            }
        }
        c->iterations++;
        if (run->shape == SHAPE_READ_AFTER_ATTACH) {
            w->attached = 0;
            PyEval_SaveThread();
        }
    }
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *run = w->run;
    int err = lc_pin(run->cpu[w->role]);
    if (err) {
        set_error(run, w->role ? "pinning the reader" : "pinning the writer", err);
        return NULL;
    }
    // A real thread state of this interpreter: reserves and registers a QSBR slot; attaching
    // stores the slot's seq (_Py_qsbr_attach).
    w->ts = PyThreadState_New(run->interp);
    if (w->ts == NULL) {
        set_error(run, "PyThreadState_New failed", 0);
        return NULL;
    }
    PyEval_RestoreThread(w->ts);
    w->attached = 1;
    w->mine = ((_PyThreadStateImpl *)w->ts)->qsbr;
    if (w->role == 1 && run->shape == SHAPE_READ_AFTER_ATTACH) {
        w->attached = 0;                // each iteration starts detached
        PyEval_SaveThread();
    }
    if (barrier(w, 1) == 0) {
        if (w->role == 0) {
            writer_loop(w);
        }
        else {
            reader_loop(w);
        }
    }
    if (!w->attached) {
        PyEval_RestoreThread(w->ts);
    }
    PyThreadState_Clear(w->ts);
    PyThreadState_DeleteCurrent();
    return NULL;
}

static PyObject *
bands_list(const struct lc_tally *t)
{
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    for (int b = 0; b < LC_BANDS; b++) {
        if (t->iterations[b] == 0) {
            continue;
        }
        int64_t low, high;
        lc_band_bounds(t->range, b, &low, &high);
        PyObject *row = Py_BuildValue("[LLKK]", (long long)low, (long long)high,
                                      (unsigned long long)t->iterations[b],
                                      (unsigned long long)t->forbidden[b]);
        if (row == NULL || PyList_Append(list, row) < 0) {
            Py_XDECREF(row);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(row);
    }
    return list;
}

static PyObject *
counts_dict(const struct counts *c)
{
    PyObject *bands = bands_list(&c->tally);
    if (bands == NULL) {
        return NULL;
    }
    return Py_BuildValue(
        "{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:N}",
        "iterations", c->iterations, "forbidden", c->forbidden, "stale", c->stale,
        "reclaimed", c->reclaimed, "poisoned", c->poisoned,
        "reached_old", c->outcome[1][1], "reached_new", c->outcome[1][0],
        "unreached_old", c->outcome[0][1], "unreached_new", c->outcome[0][0],
        "writer_first", c->writer_first, "goal_advanced", c->goal_advanced,
        "polled", c->polled, "parked_writer", c->parked[0], "parked_reader", c->parked[1],
        "bands", bands);
}

static int
gil_enabled(void)
{
    PyObject *sys = PyImport_ImportModule("sys");
    if (sys == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethod(sys, "_is_gil_enabled", NULL);
    Py_DECREF(sys);
    if (r == NULL) {
        return -1;
    }
    int enabled = PyObject_IsTrue(r);
    Py_DECREF(r);
    return enabled;
}

static PyObject *
run_litmus(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"shape", "goal", "fence", "iterations", "cpus", "advance", "poll",
                             "batch", "acquire", "offsets", "seed", NULL};
    const char *shape, *goal;
    int fence, cpu0, cpu1, acquire = 0;
    long long iterations;
    unsigned long long advance, poll, batch, seed = 1;
    unsigned int range = LC_DEFAULT_RANGE;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sspL(ii)KKK|pIK:run", kwlist, &shape,
                                     &goal, &fence, &iterations, &cpu0, &cpu1, &advance, &poll,
                                     &batch, &acquire, &range, &seed)) {
        return NULL;
    }
    struct run *run = PyMem_RawCalloc(1, sizeof(*run));
    if (run == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    if (strcmp(shape, "stale-goal") == 0) {
        run->shape = SHAPE_STALE_GOAL;
    }
    else if (strcmp(shape, "retire-before-unlink") == 0) {
        run->shape = SHAPE_RETIRE_BEFORE_UNLINK;
    }
    else if (strcmp(shape, "read-after-attach") == 0) {
        run->shape = SHAPE_READ_AFTER_ATTACH;
    }
    else {
        PyErr_Format(PyExc_ValueError, "unknown shape %s", shape);
        goto done;
    }
    if (strcmp(goal, "non-advancing") == 0) {
        run->goal_kind = GOAL_NON_ADVANCING;
    }
    else if (strcmp(goal, "advancing") == 0) {
        run->goal_kind = GOAL_ADVANCING;
    }
    else {
        PyErr_Format(PyExc_ValueError, "unknown goal kind %s", goal);
        goto done;
    }
    if (range < 1 || range > LC_MAX_RANGE) {
        PyErr_Format(PyExc_ValueError, "offsets must be 1..%u", LC_MAX_RANGE);
        goto done;
    }
    if (iterations < 0 || cpu0 < 0 || cpu1 < 0 || cpu0 == cpu1) {
        PyErr_SetString(PyExc_ValueError, "iterations >= 0 and two distinct CPUs are needed");
        goto done;
    }
    if (advance == 0 || poll == 0 || batch == 0) {
        PyErr_SetString(PyExc_ValueError, "the interpreter's QSBR function addresses are needed");
        goto done;
    }
    int gil = gil_enabled();
    if (gil != 0) {
        if (gil > 0) {
            PyErr_SetString(PyExc_RuntimeError,
                            "the GIL is enabled: the litmus needs two threads attached at once");
        }
        goto done;
    }
    run->interp = _PyThreadState_GET()->interp;
    run->fence = fence;
    run->acquire = acquire;
    run->iterations = iterations;
    run->range = range;
    run->seed = seed;
    run->c.tally.range = range;
    run->cpu[0] = cpu0;
    run->cpu[1] = cpu1;
    run->advance = (shared_fn)(uintptr_t)advance;
    run->poll = (poll_fn)(uintptr_t)poll;
    run->batch = (void *)(uintptr_t)batch;

    struct worker workers[2] = {{run, 0, NULL, NULL, 0}, {run, 1, NULL, NULL, 0}};
    pthread_t threads[2];
    int started = 0, err = 0;
    // This thread detaches while the two run: its slot is offline, so the writer's poll scans
    // only threads that are attached (ours, and any other the process runs).
    Py_BEGIN_ALLOW_THREADS
    for (; started < 2; started++) {
        err = pthread_create(&threads[started], NULL, worker_main, &workers[started]);
        if (err) {
            set_error(run, "pthread_create", err);
            break;
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    Py_END_ALLOW_THREADS
    if (lc_aborted(&run->sync)) {
        PyErr_SetString(PyExc_RuntimeError, run->error);
        goto done;
    }
    result = counts_dict(&run->c);
done:
    PyMem_RawFree(run);
    return result;
}

static PyMethodDef probe_methods[] = {
    {"run", (PyCFunction)(void (*)(void))run_litmus, METH_VARARGS | METH_KEYWORDS,
     "run(shape, goal, fence, iterations, cpus, advance, poll, batch, acquire=False) -> dict "
     "of counts.\n\n"
     "shape: 'stale-goal', 'retire-before-unlink' or 'read-after-attach' (acquire: its first "
     "load is an acquire load); goal: 'non-advancing' or 'advancing'; "
     "cpus: (writer CPU, reader CPU); advance, poll, batch: run-time addresses of the "
     "interpreter's _Py_qsbr_advance, _Py_qsbr_poll and _Py_qsbr_shared_next (3.13.6+) or "
     "_Py_qsbr_deferred_advance (3.13.0-3.13.5)."},
    {NULL, NULL, 0, NULL},
};

static int
probe_exec(PyObject *module)
{
    if (probe_refuse_other_release("hazard probe") < 0) {
        return -1;
    }
    return PyModule_AddStringConstant(module, "BATCH",
                                      HAZARD_SHARED_NEXT ? "_Py_qsbr_shared_next"
                                                         : "_Py_qsbr_deferred_advance");
}

static PyModuleDef_Slot probe_slots[] = {
    {Py_mod_exec, probe_exec},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
    {0, NULL},
};

static struct PyModuleDef probe_module = {
    PyModuleDef_HEAD_INIT, "_hazard_probe",
    "Hardware litmus tests of QSBR shapes through the running interpreter's own functions.", 0,
    probe_methods, probe_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__hazard_probe(void)
{
    return PyModuleDef_Init(&probe_module);
}
