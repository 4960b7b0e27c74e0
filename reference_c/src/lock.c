// Stand-in for CPython's Python/lock.c and Python/parking_lot.c: a one-byte PyMutex whose
// contended waiters sleep in a parking lot of mutex/condvar buckets keyed by address.
//
// Upstream queues each waiter and hands the lock over fairly; this stand-in wakes every
// waiter of an address and lets them race again.  Correctness (mutual exclusion, no lost
// wake-up, detaching while blocked) is the same; fairness and speed are not the point here.
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include "qsbr_pyport.h"
#include "pycore_lock.h"
#include "pycore_tstate.h"

#define NUM_BUCKETS 251
#define MAX_SPIN_COUNT 40

struct bucket {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
};

static struct bucket buckets[NUM_BUCKETS];
static pthread_once_t buckets_once = PTHREAD_ONCE_INIT;

static void
init_buckets(void)
{
    // Also run in a fork child, where the old mutexes and condvars are simply abandoned.
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    // Timed waits measure a duration: use the monotonic clock.
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    for (int i = 0; i < NUM_BUCKETS; i++) {
        pthread_mutex_init(&buckets[i].mutex, NULL);
        pthread_cond_init(&buckets[i].cond, &attr);
    }
    pthread_condattr_destroy(&attr);
}

static struct bucket *
bucket_for(const void *address)
{
    pthread_once(&buckets_once, init_buckets);
    uintptr_t key = (uintptr_t)address;
    return &buckets[(key >> 3) % NUM_BUCKETS];
}

static int
holds_expected(const void *address, const void *expected, size_t size)
{
    switch (size) {
        case 1:
            return _Py_atomic_load_uint8(address) == *(const uint8_t *)expected;
        case 4:
            return _Py_atomic_load_int(address) == *(const int *)expected;
        case 8:
            return _Py_atomic_load_uint64(address) == *(const uint64_t *)expected;
        default:
            return 0;
    }
}

int
_PyParkingLot_Park(const void *address, const void *expected, size_t size,
                   PyTime_t timeout_ns, void *park_arg, int detach)
{
    (void)park_arg;
    struct bucket *b = bucket_for(address);

    // Like upstream: an attached thread detaches while it sleeps so that a stop-the-world
    // requested by whoever it waits for can complete.
    PyThreadState *tstate = NULL;
    if (detach) {
        tstate = _PyThreadState_GET();
        if (tstate != NULL &&
            _Py_atomic_load_int_relaxed(&tstate->state) == _Py_THREAD_ATTACHED) {
            _PyThreadState_Detach(tstate);
        }
        else {
            tstate = NULL;
        }
    }

    int result = Py_PARK_OK;
    pthread_mutex_lock(&b->mutex);
    // Checked under the bucket lock: an unparker changes the value before it takes this lock,
    // so either we see the new value here or we are already waiting when it broadcasts.
    if (!holds_expected(address, expected, size)) {
        result = Py_PARK_AGAIN;
    }
    else if (timeout_ns < 0) {
        pthread_cond_wait(&b->cond, &b->mutex);
    }
    else {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ns / 1000000000;
        deadline.tv_nsec += timeout_ns % 1000000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec += 1;
            deadline.tv_nsec -= 1000000000;
        }
        if (pthread_cond_timedwait(&b->cond, &b->mutex, &deadline) == ETIMEDOUT) {
            result = Py_PARK_TIMEOUT;
        }
    }
    pthread_mutex_unlock(&b->mutex);

    if (tstate != NULL) {
        _PyThreadState_Attach(tstate);
    }
    return result;
}

void
_PyParkingLot_UnparkAll(const void *address)
{
    struct bucket *b = bucket_for(address);
    pthread_mutex_lock(&b->mutex);
    // Several addresses share a bucket: wake everyone; each waiter re-checks its own value.
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mutex);
}

void
_PyParkingLot_AfterFork(void)
{
    pthread_once(&buckets_once, init_buckets);
    init_buckets();
}

void
_PyMutex_LockSlow(PyMutex *m, _PyLockFlags flags)
{
    uint8_t v = _Py_atomic_load_uint8_relaxed(&m->_bits);
    int spin_count = 0;
    for (;;) {
        if ((v & _Py_LOCKED) == 0) {
            // The lock is unlocked. Try to grab it.
            if (_Py_atomic_compare_exchange_uint8(&m->_bits, &v, v | _Py_LOCKED)) {
                return;
            }
            continue;
        }

        if (spin_count < MAX_SPIN_COUNT) {
            // Spin briefly before blocking, as upstream does.
            sched_yield();
            spin_count++;
            v = _Py_atomic_load_uint8_relaxed(&m->_bits);
            continue;
        }

        uint8_t newv = v | _Py_HAS_PARKED;
        if (!(v & _Py_HAS_PARKED)) {
            if (!_Py_atomic_compare_exchange_uint8(&m->_bits, &v, newv)) {
                continue;
            }
        }

        _PyParkingLot_Park(&m->_bits, &newv, sizeof(newv), -1, NULL,
                           flags & _PY_LOCK_DETACH);
        v = _Py_atomic_load_uint8_relaxed(&m->_bits);
    }
}

void
_PyMutex_UnlockSlow(PyMutex *m)
{
    // Some waiter set _Py_HAS_PARKED: release the lock, then wake the waiters.
    _Py_atomic_exchange_uint8(&m->_bits, _Py_UNLOCKED);
    _PyParkingLot_UnparkAll(&m->_bits);
}

void
_PyMutex_at_fork_reinit(PyMutex *m)
{
    // In the child only the forking thread exists: whoever held or waited on the lock is gone.
    _Py_atomic_store_uint8(&m->_bits, _Py_UNLOCKED);
}

void
_PyEvent_Notify(PyEvent *evt)
{
    _Py_atomic_store_uint8(&evt->v, 1);
    _PyParkingLot_UnparkAll(&evt->v);
}

int
PyEvent_WaitTimed(PyEvent *evt, PyTime_t timeout_ns, int detach)
{
    uint8_t unset = 0;
    if (_Py_atomic_load_uint8(&evt->v) == 0) {
        _PyParkingLot_Park(&evt->v, &unset, sizeof(unset), timeout_ns, NULL, detach);
    }
    return _Py_atomic_load_uint8(&evt->v) != 0;
}
