# The Cython bridge over the port's checked C API (reference_c/include/qsbr_api.h).
#
# Included by _qsbr313.pyx, _qsbr314.pyx, _qsbr31300.pyx and _qsbr31306.pyx, which are compiled
# against the same C sources with QSBR_PROFILE=313, 314, 31300 or 31306.  Every C call runs without the GIL (`with nogil`): reserve and
# fini stop the world, register/unregister/snapshot take the QSBR mutex, and slot operations
# pin their thread state; any of them may wait for another thread.

cimport cython
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc

# The bridge is code under test: it imports nothing from the suite.  It raises PortError with
# the C API's status name (its `kind`) and returns snapshots as plain dicts; the suite's driver
# (conformance/drivers/reference.py) turns both into the adapter protocol's types.


class PortError(Exception):
    """A status other than QSBR_OK, or an argument the checked API would refuse: ``kind`` is
    the status name of reference_c/include/qsbr_api.h (e.g. "SLOT_OWNED")."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind

cdef extern from "<stdbool.h>":
    ctypedef bint cbool "bool"

cdef extern from "qsbr_api.h" nogil:
    const int qsbr_api_profile

    ctypedef struct qsbr_api_interp:
        pass
    ctypedef struct qsbr_api_tstate:
        pass

    int QSBR_OK
    int QSBR_E_BUFFER_TOO_SMALL
    int64_t QSBR_API_NO_SLOT
    int64_t QSBR_API_STALE_SLOT

    const char *qsbr_api_status_name(int status)
    const char *qsbr_api_status_message(int status)
    cbool qsbr_api_lt(uint64_t a, uint64_t b)
    cbool qsbr_api_leq(uint64_t a, uint64_t b)

    qsbr_api_interp *qsbr_api_interp_new()
    void qsbr_api_interp_delete(qsbr_api_interp *interp)
    int qsbr_api_set_sequences(qsbr_api_interp *interp, uint64_t wr_seq, uint64_t rd_seq)
    qsbr_api_tstate *qsbr_api_tstate_new(qsbr_api_interp *interp)
    int qsbr_api_tstate_delete(qsbr_api_tstate *tstate)

    int64_t qsbr_api_reserve(qsbr_api_interp *interp)
    int qsbr_api_register(qsbr_api_tstate *tstate, int64_t index)
    int qsbr_api_unregister(qsbr_api_tstate *tstate)
    int qsbr_api_attach(qsbr_api_tstate *tstate)
    int qsbr_api_detach(qsbr_api_tstate *tstate)
    int qsbr_api_quiescent_state(qsbr_api_tstate *tstate)
    uint64_t qsbr_api_advance(qsbr_api_interp *interp)
    uint64_t qsbr_api_shared_current(qsbr_api_interp *interp)
    int qsbr_api_poll(qsbr_api_tstate *tstate, uint64_t goal, cbool *result)
    int qsbr_api_goal_reached(qsbr_api_tstate *tstate, uint64_t goal, cbool *result)
    int qsbr_api_fini(qsbr_api_interp *interp)
    int qsbr_api_after_fork(qsbr_api_tstate *tstate)
    int qsbr_api_child_after_fork(qsbr_api_tstate *tstate)
    int qsbr_api_deferred_advance(qsbr_api_tstate *tstate, uint64_t *goal)
    int qsbr_api_shared_next(qsbr_api_interp *interp, uint64_t *goal)
    int qsbr_api_should_process(qsbr_api_tstate *tstate, cbool *result)
    int qsbr_api_set_bookkeeping(qsbr_api_tstate *tstate, int deferred_count,
                                 size_t deferred_memory, size_t deferred_page_memory,
                                 cbool should_process)

    ctypedef struct qsbr_api_slot:
        uint64_t seq
        cbool allocated
        const qsbr_api_tstate *owner
        int deferrals
        int deferred_count
        size_t deferred_memory
        size_t deferred_page_memory
        cbool should_process

    ctypedef struct qsbr_api_thread:
        const qsbr_api_tstate *tstate
        int64_t slot

    ctypedef struct qsbr_api_snapshot:
        uint64_t wr_seq
        uint64_t rd_seq
        int64_t size
        int64_t freelist_len
        int64_t thread_count

    void qsbr_api_snapshot_capacity(qsbr_api_interp *interp, int64_t *slots, int64_t *threads)
    int qsbr_api_snapshot_read(qsbr_api_interp *interp, qsbr_api_snapshot *out,
                               qsbr_api_slot *slots, int64_t *freelist, int64_t slot_capacity,
                               qsbr_api_thread *threads, int64_t thread_capacity)

    void qsbr_api_mem_fail_next(long count)
    long qsbr_api_mem_live_blocks()
    long qsbr_api_layout(const char *name)
    long qsbr_api_layout_count()
    const char *qsbr_api_layout_name(long i)


# The API line of this build (QSBR_PROFILE 31300/31303: 3.13, 31306/31404: 3.14) and its
# release profile (conformance.model.profiles).
PROFILE = "3.13" if qsbr_api_profile in (31300, 31303) else "3.14"
RELEASE = {31300: "3.13.0-3.13.2", 31303: "3.13.3-3.13.5", 31306: "3.13.6-3.14.3",
           31404: "3.14.4+"}[qsbr_api_profile]

cdef uint64_t _U64_MAX = 0xFFFFFFFFFFFFFFFF
cdef object _INT64_MIN = -(1 << 63)
cdef object _INT64_MAX = (1 << 63) - 1


cdef inline int _raise_for(int status) except -1:
    if status != QSBR_OK:
        kind = qsbr_api_status_name(status).decode()
        raise PortError(kind, qsbr_api_status_message(status).decode())
    return 0


# The protocol's integers are ints, never bools (docs/adapter-protocol.md, "Errors"): True is an
# int to isinstance, and Cython's typed arguments would coerce it (and 3.0 or numpy ints) silently.
cdef inline bint _is_integer(object value):
    return isinstance(value, int) and not isinstance(value, bool)


cdef uint64_t _u64(object value, str what) except? 0:
    if not _is_integer(value) or value < 0 or value > _U64_MAX:
        raise PortError("BAD_SEQUENCE", f"{what} must be an integer in [0, 2**64), got {value!r}")
    return <uint64_t>value


def qsbr_lt(a, b):
    """QSBR_LT as compiled into the port (S-SEQ-3)."""
    return qsbr_api_lt(_u64(a, "a"), _u64(b, "b"))


def qsbr_leq(a, b):
    """QSBR_LEQ as compiled into the port (S-SEQ-3)."""
    return qsbr_api_leq(_u64(a, "a"), _u64(b, "b"))


def layout():
    """{'sizeof(struct _qsbr_pad)': 64, ...}: the compiled structs' sizes and offsets."""
    result = {}
    for i in range(qsbr_api_layout_count()):
        name = qsbr_api_layout_name(i)
        result[name.decode()] = qsbr_api_layout(name)
    return result


def fail_next_allocations(long count):
    """Make the next `count` raw allocations of the port fail (process-wide)."""
    qsbr_api_mem_fail_next(count)


def live_allocations():
    """Blocks the port allocated and has not freed (process-wide)."""
    return qsbr_api_mem_live_blocks()


# no_gc_clear: the handle tables must still be there when __dealloc__ frees the C thread states,
# also when the interpreter shuts down and clears objects in cycles first.
@cython.no_gc_clear
cdef class Interpreter:
    """One interpreter's QSBR state in the C port, driven through the adapter protocol.

    Thread-state handles are small integers.  Operations on different handles may run from
    different Python threads at once; one handle must be used by one thread at a time.
    """

    cdef qsbr_api_interp *_interp
    cdef dict _tstates          # handle -> address of its qsbr_api_tstate
    cdef dict _handles          # address -> handle
    cdef object _lock           # guards the two tables
    cdef long _next_handle

    def __cinit__(self):
        self._interp = qsbr_api_interp_new()
        if self._interp == NULL:
            raise MemoryError("cannot allocate a QSBR interpreter")
        self._tstates = {}
        self._handles = {}
        self._next_handle = 0
        import threading
        self._lock = threading.Lock()

    def __dealloc__(self):
        self._release()

    cdef void _release(self) noexcept:
        cdef qsbr_api_tstate *t
        if self._interp == NULL:
            return
        # Thread states first (their slots are released by fini), then the interpreter.
        with nogil:
            qsbr_api_fini(self._interp)
        for address in list(self._tstates.values()):
            t = <qsbr_api_tstate *><size_t>address
            with nogil:
                qsbr_api_tstate_delete(t)
        self._tstates.clear()
        self._handles.clear()
        with nogil:
            qsbr_api_interp_delete(self._interp)
        self._interp = NULL

    def close(self):
        """Free every thread state and the interpreter."""
        self._release()

    cdef qsbr_api_interp *_live(self) except NULL:
        if self._interp == NULL:
            raise PortError("ERROR", "this interpreter was closed")
        return self._interp

    cdef qsbr_api_tstate *_tstate(self, handle) except NULL:
        self._live()
        with self._lock:
            address = self._tstates.get(handle)
        if address is None:
            raise PortError("UNKNOWN_THREAD_STATE", f"unknown thread state {handle!r}")
        return <qsbr_api_tstate *><size_t>address

    # -- test hooks ------------------------------------------------------------------------

    def set_sequences(self, wr_seq, rd_seq):
        cdef qsbr_api_interp *interp = self._live()
        cdef uint64_t wr = _u64(wr_seq, "wr_seq"), rd = _u64(rd_seq, "rd_seq")
        cdef int status
        with nogil:
            status = qsbr_api_set_sequences(interp, wr, rd)
        _raise_for(status)

    def fail_next_allocations(self, long count):
        qsbr_api_mem_fail_next(count)

    # -- thread states ---------------------------------------------------------------------

    def new_thread_state(self):
        cdef qsbr_api_interp *interp = self._live()
        cdef qsbr_api_tstate *t
        with nogil:
            t = qsbr_api_tstate_new(interp)
        if t == NULL:
            raise MemoryError("cannot allocate a thread state")
        with self._lock:
            handle = self._next_handle
            self._next_handle += 1
            self._tstates[handle] = <size_t>t
            self._handles[<size_t>t] = handle
        return handle

    def delete_thread_state(self, handle):
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        with nogil:
            status = qsbr_api_tstate_delete(t)
        _raise_for(status)
        with self._lock:
            del self._tstates[handle]
            del self._handles[<size_t>t]

    # -- lifecycle -------------------------------------------------------------------------

    def reserve(self):
        cdef qsbr_api_interp *interp = self._live()
        cdef int64_t index
        with nogil:
            index = qsbr_api_reserve(interp)
        return index

    def register(self, handle, index):
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        cdef int64_t i
        if not _is_integer(index) or not _INT64_MIN <= index <= _INT64_MAX:
            raise PortError("INDEX_OUT_OF_RANGE", f"slot index {index!r} is not a valid index")
        i = index
        with nogil:
            status = qsbr_api_register(t, i)
        _raise_for(status)

    def unregister(self, handle):
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        with nogil:
            status = qsbr_api_unregister(t)
        _raise_for(status)

    def fini(self):
        cdef qsbr_api_interp *interp = self._live()
        with nogil:
            qsbr_api_fini(interp)

    def after_fork(self, handle):
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        with nogil:
            status = qsbr_api_after_fork(t)
        _raise_for(status)

    def after_fork_in_child(self, handle):
        """In the child of os.fork(): reset the port's parking lot, then after_fork."""
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        with nogil:
            status = qsbr_api_child_after_fork(t)
        _raise_for(status)

    # -- sequences -------------------------------------------------------------------------

    def attach(self, handle):
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        with nogil:
            status = qsbr_api_attach(t)
        _raise_for(status)

    def detach(self, handle):
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        with nogil:
            status = qsbr_api_detach(t)
        _raise_for(status)

    def quiescent_state(self, handle):
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        with nogil:
            status = qsbr_api_quiescent_state(t)
        _raise_for(status)

    def advance(self):
        cdef qsbr_api_interp *interp = self._live()
        cdef uint64_t goal
        with nogil:
            goal = qsbr_api_advance(interp)
        return goal

    def deferred_advance(self, handle):
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        cdef uint64_t goal = 0
        with nogil:
            status = qsbr_api_deferred_advance(t, &goal)
        _raise_for(status)
        return goal

    def shared_next(self):
        cdef qsbr_api_interp *interp = self._live()
        cdef int status
        cdef uint64_t goal = 0
        with nogil:
            status = qsbr_api_shared_next(interp, &goal)
        _raise_for(status)
        return goal

    def should_process(self, handle):
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        cdef cbool result = False
        with nogil:
            status = qsbr_api_should_process(t, &result)
        _raise_for(status)
        return result

    def set_bookkeeping(self, handle, int deferred_count, size_t deferred_memory,
                        size_t deferred_page_memory, bint should_process):
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        with nogil:
            status = qsbr_api_set_bookkeeping(t, deferred_count, deferred_memory,
                                              deferred_page_memory, should_process)
        _raise_for(status)

    def poll(self, handle, goal):
        cdef uint64_t g = _u64(goal, "goal")
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        cdef cbool result = False
        with nogil:
            status = qsbr_api_poll(t, g, &result)
        _raise_for(status)
        return result

    def goal_reached(self, handle, goal):
        cdef uint64_t g = _u64(goal, "goal")
        cdef qsbr_api_tstate *t = self._tstate(handle)
        cdef int status
        cdef cbool result = False
        with nogil:
            status = qsbr_api_goal_reached(t, g, &result)
        _raise_for(status)
        return result

    # -- observation -----------------------------------------------------------------------

    def snapshot(self):
        cdef qsbr_api_interp *interp = self._live()
        cdef int64_t slot_cap = 0, thread_cap = 0
        cdef qsbr_api_snapshot snap
        cdef qsbr_api_slot *slots = NULL
        cdef int64_t *freelist = NULL
        cdef qsbr_api_thread *threads = NULL
        cdef int status
        cdef int64_t i
        try:
            while True:
                with nogil:
                    qsbr_api_snapshot_capacity(interp, &slot_cap, &thread_cap)
                # Room for growth between asking and reading; retried if still too small.
                slot_cap = 2 * slot_cap + 8
                thread_cap = thread_cap + 8
                free(slots); free(freelist); free(threads)
                slots = <qsbr_api_slot *>malloc(slot_cap * sizeof(qsbr_api_slot))
                freelist = <int64_t *>malloc(slot_cap * sizeof(int64_t))
                threads = <qsbr_api_thread *>malloc(thread_cap * sizeof(qsbr_api_thread))
                if slots == NULL or freelist == NULL or threads == NULL:
                    raise MemoryError("cannot allocate snapshot buffers")
                with nogil:
                    status = qsbr_api_snapshot_read(interp, &snap, slots, freelist, slot_cap,
                                                    threads, thread_cap)
                if status != QSBR_E_BUFFER_TOO_SMALL:
                    break
            _raise_for(status)
            # Not dict(self._handles): on 3.13t, PyDict_Copy of a dict with deleted entries takes
            # the dict's critical section twice (PyDict_Copy, then dict_merge), and the inner
            # attempt spins 40 sched_yield() calls before it parks and resolves the nesting;
            # beside CPU-bound processes each yield gives the core away for a whole time slice,
            # which made every snapshot take tenths of a second (3.14 skips the nested lock).
            with self._lock:
                handles = {address: handle for address, handle in self._handles.items()}
            slot_views = []
            for i in range(snap.size):
                owner = None
                if slots[i].owner != NULL:
                    owner = handles.get(<size_t>slots[i].owner, f"<foreign {<size_t>slots[i].owner:#x}>")
                if PROFILE == "3.13":
                    bookkeeping = (("deferrals", slots[i].deferrals),)
                else:
                    bookkeeping = (("deferred_count", slots[i].deferred_count),
                                   ("deferred_memory", slots[i].deferred_memory),
                                   ("deferred_page_memory", slots[i].deferred_page_memory),
                                   ("should_process", True if slots[i].should_process else False))
                slot_views.append((slots[i].seq, True if slots[i].allocated else False, owner,
                                   bookkeeping))
            thread_view = {}
            for i in range(snap.thread_count):
                handle = handles.get(<size_t>threads[i].tstate)
                if handle is None:
                    continue        # created by another driver of this interpreter
                if threads[i].slot == QSBR_API_NO_SLOT:
                    thread_view[handle] = None
                elif threads[i].slot == QSBR_API_STALE_SLOT:
                    thread_view[handle] = "stale"     # the protocol's STALE
                else:
                    thread_view[handle] = threads[i].slot
            return {"wr_seq": snap.wr_seq, "rd_seq": snap.rd_seq, "size": snap.size,
                    "slots": tuple(slot_views),
                    "freelist": tuple(freelist[i] for i in range(snap.freelist_len)),
                    "threads": thread_view}
        finally:
            free(slots); free(freelist); free(threads)


# -- the concurrency torture (reference_c/harness/qsbr_torture.h) ---------------------------

cdef extern from "qsbr_torture.h" nogil:
    ctypedef struct qsbr_torture_stats:
        uint64_t reads
        uint64_t updates
        uint64_t frees
        uint64_t churn_cycles
        uint64_t max_pending
        uint64_t gp_latency_max
        uint64_t gp_latency_sum
        int64_t array_size
        uint64_t errors_poisoned
        uint64_t errors_bad_magic
        uint64_t errors_too_old
        uint64_t errors_stall
        double elapsed

    ctypedef void (*qsbr_torture_progress_fn)(const qsbr_torture_stats *stats, void *arg) noexcept

    ctypedef struct qsbr_torture_config:
        int readers
        int writers
        int churners
        double seconds
        uint64_t max_updates
        int batching
        unsigned seed
        int stall_ms
        int stop_on_error
        int progress_ms
        qsbr_torture_progress_fn progress
        void *progress_arg

    void qsbr_torture_default_config(qsbr_torture_config *config)
    int qsbr_torture_run(const qsbr_torture_config *config, qsbr_torture_stats *stats)
    uint64_t qsbr_torture_errors(const qsbr_torture_stats *stats)


cdef dict _torture_stats(const qsbr_torture_stats *s):
    return {
        "elapsed": s.elapsed, "reads": s.reads, "updates": s.updates, "frees": s.frees,
        "churn_cycles": s.churn_cycles, "max_pending": s.max_pending,
        "gp_latency_max": s.gp_latency_max,
        "gp_latency_mean": (s.gp_latency_sum / s.frees) if s.frees else 0.0,
        "array_size": s.array_size,
        "errors": {"poisoned": s.errors_poisoned, "bad_magic": s.errors_bad_magic,
                   "too_old": s.errors_too_old, "stall": s.errors_stall},
    }


cdef void _torture_progress(const qsbr_torture_stats *stats, void *arg) noexcept with gil:
    # Called from the C monitor loop: take the GIL (a thread state) just for the callback.
    callback = <object>arg
    try:
        callback(_torture_stats(stats))
    except BaseException:
        pass    # progress output must never break the run


def torture(*, int readers=4, int writers=2, int churners=1, double seconds=2.0,
            unsigned long long max_updates=0, bint batching=True, unsigned seed=1,
            int stall_ms=2000, bint stop_on_error=False, progress=None,
            double progress_interval=1.0):
    """Run the C torture of this profile's port with the GIL released.

    Returns (status, stats): status 0 = no error and objects freed, 1 = errors, 2 = nothing
    freed.  `progress(stats)` is called about every `progress_interval` seconds.
    """
    cdef qsbr_torture_config config
    cdef qsbr_torture_stats stats
    cdef int status
    if readers < 0 or writers < 1 or churners < 0 or (seconds <= 0 and max_updates == 0):
        raise ValueError("need readers >= 0, writers >= 1, churners >= 0, and a duration "
                         "(seconds > 0) or max_updates > 0")
    qsbr_torture_default_config(&config)
    config.readers, config.writers, config.churners = readers, writers, churners
    config.seconds, config.max_updates, config.batching = seconds, max_updates, batching
    config.seed, config.stall_ms, config.stop_on_error = seed, stall_ms, stop_on_error
    if progress is not None:
        config.progress = _torture_progress
        config.progress_arg = <void *>progress
        config.progress_ms = max(1, <int>(progress_interval * 1000))
    with nogil:
        status = qsbr_torture_run(&config, &stats)
    if status < 0:
        raise RuntimeError("the torture could not be set up")
    return status, _torture_stats(&stats)
