// Real fork() while other threads hold registered QSBR slots (S-FORK-1).
//
// Threads: one attached and running (reports quiescent states, reaches safepoints), one
// attached thread that has deferred advances pending, one detached, and one holding the QSBR
// mutex at the moment of the fork.  The child calls _Py_qsbr_after_fork() for the forking
// thread and checks the result against the rule, computed independently from a snapshot taken
// just before the fork; it reports through its exit status.  Two variants: the world stopped
// before fork() (as CPython does) and not stopped (a stale seq then holds rd_seq back).
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qsbr.h"
#include "harness.h"

#define IMPL(t) ((_PyThreadStateImpl *)(void *)(t))
#define MAX_SLOTS 64

struct fork_world {
    PyInterpreterState *interp;
    PyThreadState *runner, *deferrer, *idle, *forker;
    _Atomic int stop;
    _Atomic int ready;
    _Atomic int hold_mutex;      // 1: ask the locker to take the mutex; 2: it holds it
    _Atomic int locker_done;
};

static void *
runner_main(void *arg)
{
    struct fork_world *w = arg;
    _PyThreadState_Attach(w->runner);
    atomic_fetch_add(&w->ready, 1);
    while (!atomic_load(&w->stop)) {
        _Py_qsbr_quiescent_state(IMPL(w->runner)->qsbr);
        _Py_HandlePending(w->runner);
        sched_yield();
    }
    _PyThreadState_Detach(w->runner);
    return NULL;
}

static void *
deferrer_main(void *arg)
{
    struct fork_world *w = arg;
    _PyThreadState_Attach(w->deferrer);
#if QSBR_DEFERRALS
    for (int i = 0; i < 3; i++) {
        (void)_Py_qsbr_deferred_advance(IMPL(w->deferrer)->qsbr);   // mid-deferral at fork
    }
#endif
    atomic_fetch_add(&w->ready, 1);
    while (!atomic_load(&w->stop)) {
        _Py_HandlePending(w->deferrer);
        sched_yield();
    }
    _PyThreadState_Detach(w->deferrer);
    return NULL;
}

static void *
locker_main(void *arg)
{
    // A thread with no thread state that holds the QSBR mutex across the fork.
    struct fork_world *w = arg;
    while (atomic_load(&w->hold_mutex) != 1) {
        sched_yield();
    }
    PyMutex_Lock(&w->interp->qsbr.mutex);
    atomic_store(&w->hold_mutex, 2);
    while (atomic_load(&w->hold_mutex) != 3) {
        sched_yield();
    }
    PyMutex_Unlock(&w->interp->qsbr.mutex);
    atomic_store(&w->locker_done, 1);
    return NULL;
}

struct expected_child {
    Py_ssize_t size;
    int64_t freelist[MAX_SLOTS];
    Py_ssize_t freelist_len;
    uint64_t seq[MAX_SLOTS];
    int forker_index;
};

// The S-FORK-1 rule, from a pre-fork view: every allocated slot other than the caller's is
// pushed, in index order, on top of the existing freelist; seq values are kept.
static void
expect_after_fork(struct _qsbr_shared *shared, struct _qsbr_thread_state *mine,
                  struct expected_child *e)
{
    int64_t old_list[MAX_SLOTS];
    Py_ssize_t old_len = 0;
    for (struct _qsbr_thread_state *p = shared->freelist; p; p = p->freelist_next) {
        old_list[old_len++] = (struct _qsbr_pad *)p - shared->array;
    }
    e->size = shared->size;
    e->freelist_len = 0;
    for (Py_ssize_t i = shared->size - 1; i >= 0; i--) {
        struct _qsbr_thread_state *q = &shared->array[i].qsbr;
        if (q != mine && q->allocated) {
            e->freelist[e->freelist_len++] = i;      // pushed last = head first
        }
    }
    for (Py_ssize_t i = 0; i < old_len; i++) {
        e->freelist[e->freelist_len++] = old_list[i];
    }
    for (Py_ssize_t i = 0; i < shared->size; i++) {
        e->seq[i] = _Py_atomic_load_uint64(&shared->array[i].qsbr.seq);
    }
    e->forker_index = (int)((struct _qsbr_pad *)mine - shared->array);
}

static int
child_checks(struct fork_world *w, const struct expected_child *e, int world_was_stopped)
{
    int failures = 0;
#define CHILD_CHECK(cond) \
    do { if (!(cond)) { fprintf(stderr, "    child: CHECK(%s) failed\n", #cond); failures++; } } while (0)
    struct _qsbr_shared *shared = &w->interp->qsbr;
    CHILD_CHECK(PyMutex_IsLocked(&shared->mutex));   // the locker held it at fork
    _Py_qsbr_after_fork(IMPL(w->forker));

    CHILD_CHECK(!PyMutex_IsLocked(&shared->mutex));
    PyMutex_Lock(&shared->mutex);                    // usable again
    PyMutex_Unlock(&shared->mutex);

    Py_ssize_t n = 0;
    for (struct _qsbr_thread_state *p = shared->freelist; p; p = p->freelist_next, n++) {
        CHILD_CHECK(n < e->freelist_len && p == &shared->array[e->freelist[n]].qsbr);
        if (n >= e->freelist_len) {
            break;
        }
    }
    CHILD_CHECK(n == e->freelist_len);
    for (Py_ssize_t i = 0; i < shared->size; i++) {
        CHILD_CHECK(_Py_atomic_load_uint64(&shared->array[i].qsbr.seq) == e->seq[i]);
    }
    struct _qsbr_thread_state *mine = IMPL(w->forker)->qsbr;
    CHILD_CHECK(mine->allocated && mine->tstate == w->forker);
    CHILD_CHECK(mine == &shared->array[e->forker_index].qsbr);

    // Reclamation in the child: with the world stopped before fork every other thread had
    // detached, so a new goal is reachable; without, the runner's stale seq holds it back.
    uint64_t goal = _Py_qsbr_advance(shared);
    _Py_qsbr_quiescent_state(mine);
    bool reached = _Py_qsbr_poll(mine, goal);
    CHILD_CHECK(reached == (world_was_stopped != 0));

    // The slots are reusable: a reserve in the child hands out the head of the list.
    _PyThreadState_Detach(w->forker);
    Py_ssize_t index = _Py_qsbr_reserve(w->interp);
    CHILD_CHECK(index == (e->freelist_len ? e->freelist[0] : -2));
#undef CHILD_CHECK
    return failures;
}

static void
run_fork_case(int stop_world)
{
    struct fork_world w = {.interp = PyInterpreterState_New()};
    w.forker = PyThreadState_New(w.interp);
    w.runner = PyThreadState_New(w.interp);
    w.deferrer = PyThreadState_New(w.interp);
    w.idle = PyThreadState_New(w.interp);
    PyThreadState *gone = PyThreadState_New(w.interp);
    PyThreadState_Delete(gone);                       // something already on the freelist
    (void)_Py_qsbr_advance(&w.interp->qsbr);

    pthread_t runner, deferrer, locker;
    pthread_create(&runner, NULL, runner_main, &w);
    pthread_create(&deferrer, NULL, deferrer_main, &w);
    pthread_create(&locker, NULL, locker_main, &w);
    while (atomic_load(&w.ready) < 2) {
        sched_yield();
    }
    _PyThreadState_Attach(w.forker);
    if (stop_world) {
        _PyEval_StopTheWorld(w.interp);     // CPython: stop every other thread, then fork
    }
    atomic_store(&w.hold_mutex, 1);
    while (atomic_load(&w.hold_mutex) != 2) {
        sched_yield();
    }

    struct expected_child e;
    expect_after_fork(&w.interp->qsbr, IMPL(w.forker)->qsbr, &e);
    uint64_t parent_wr = w.interp->qsbr.wr_seq;
    CHECK(stop_world || e.seq[(struct _qsbr_pad *)IMPL(w.runner)->qsbr - w.interp->qsbr.array] != 0);

    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        _PyParkingLot_AfterFork();
        if (stop_world) {
            _PyEval_StartTheWorld(w.interp);
        }
        _exit(child_checks(&w, &e, stop_world) ? 1 : 0);
    }
    CHECK(pid > 0);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    if (stop_world) {
        _PyEval_StartTheWorld(w.interp);
    }
    atomic_store(&w.hold_mutex, 3);
    while (!atomic_load(&w.locker_done)) {
        sched_yield();
    }
    // The parent is untouched by what the child did.
    struct _qsbr_shared *shared = &w.interp->qsbr;
    CHECK_EQ_U64(shared->wr_seq, parent_wr);
    CHECK(IMPL(w.runner)->qsbr->allocated && IMPL(w.runner)->qsbr->tstate == w.runner);
    CHECK(IMPL(w.idle)->qsbr->allocated);

    atomic_store(&w.stop, 1);
    _PyThreadState_Detach(w.forker);
    pthread_join(runner, NULL);
    pthread_join(deferrer, NULL);
    pthread_join(locker, NULL);
    PyThreadState_Delete(w.forker);
    PyThreadState_Delete(w.runner);
    PyThreadState_Delete(w.deferrer);
    PyThreadState_Delete(w.idle);
    PyInterpreterState_Delete(w.interp);
}

static void
test_fork_with_world_stopped(void)
{
    run_fork_case(1);
}

static void
test_fork_without_stop(void)
{
    run_fork_case(0);
}

const test_case fork_tests[] = {
    {"fork_with_world_stopped", "S-FORK-1", test_fork_with_world_stopped},
    {"fork_without_stop_the_world", "S-FORK-1", test_fork_without_stop},
    {NULL, NULL, NULL},
};
