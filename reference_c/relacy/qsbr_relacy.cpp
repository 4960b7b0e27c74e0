// Relacy model checker for the reference port: runs reference_c/src/qsbr.c, compiled unmodified
// (profile 313 or 314; a mutant: a copy with mutants/NAME.patch applied), under Relacy's C++11
// memory-model simulation.  See reference_c/relacy/README.md for the scenarios and limits.
//
//   qsbr-relacy --list
//   qsbr-relacy SCENARIO SCHEDULER ITERATIONS [CONTEXT_BOUND]
//
// SCHEDULER: random (ITERATIONS runs, seeded by the iteration number: the same every run),
// bound (context bound search, exhaustive within the bound; ITERATIONS caps it), full (full
// search; ITERATIONS caps it).  Prints one line:
//   RESULT <scenario> <scheduler> <iterations> <verdict> <milliseconds> <detail>
// verdict: clean (nothing found in the iterations run; "complete" in detail when the search
// space was exhausted), found (Relacy reported an error; detail says which), and exits 0 when
// clean, 1 when found, 2 on bad usage.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string.h>
#include <vector>

#include <relacy/relacy.hpp>

#include "shim.h"
#include "qsbr.c"

#ifndef QSBR_PROFILE
#  error "QSBR_PROFILE must be set"
#endif

namespace {

enum Scenario {
    S_RW,           // 1 writer (advance) + 1 reader
    S_QS,           // 1 writer + 1 reader attached before the threads start
    S_1W2R,         // 1 writer (advance) + 2 readers
    S_2W1R,         // 2 writers (exchange + advance each) + 1 reader
    S_CYCLES,       // 1 writer + 1 reader that attaches/detaches twice
    S_FENCE,        // writer: release unlink + non-advancing goal; an advancer; 1 reader
    S_READ_ACQ,     // read-side contract: reader's first load after attach is acquire
    S_READ_SEQCST,  // ... seq_cst (the same shape: must be clean)
    S_STALE_GOAL,   // writer: release unlink + non-advancing goal, racing an advance
    S_GROWTH,       // reserve that grows the array vs an attached reader and an unregister
    S_RESERVE_RACE, // two reserves racing (one grows)
    // -- hazards (qsbr-conformance hazards, docs/hazards.md): the litmus shapes' twins ------
    S_STALE_GOAL_FENCE,     // stale-goal with a seq_cst fence between the unlink and the goal
    S_STALE_GOAL_ADVANCING, // stale-goal with the advancing goal (_Py_qsbr_advance)
    S_RETIRE_BEFORE_UNLINK, // the goal taken before the unlink (dict_merge's clone path)
    // -- end of the hazards block --------------------------------------------------------------
    // ---- loads a true poll / goal_reached answer relies on (issue 25) -------------------
    S_FASTPATH,     // writer: goal_reached fast path (then poll); a helper's scan moves rd_seq
    S_SCAN_RD,      // writer: poll only; the helper's rd_seq CAS lands inside its scan
    // ---- end of the issue 25 block (new scenarios go after it) -----------------------------
    S_COUNT
};

struct ScenarioInfo {
    const char *name;
    int threads;
    const char *what;
};

const ScenarioInfo SCENARIOS[S_COUNT] = {
    {"rw", 2, "writer: release unlink, advance, poll, free; reader: attach, seq_cst load, read, "
              "quiescent state, acquire load, read, detach"},
    {"qs", 2, "reader attached before the threads start (no attach race): read, quiescent "
              "state, read, detach; writer as in rw (the release/acquire pairs of quiescent "
              "state and detach with the scan)"},
    {"1w2r", 3, "one writer (advance), two readers"},
    {"2w1r", 3, "two writers (exchange unlink, advance each), one reader"},
    {"cycles", 2, "one writer, one reader that attaches/loads/reads/detaches twice"},
    {"fence", 3, "writer: release unlink, non-advancing goal (deferred_advance on 313, "
                 "shared_next on 314), no RMW before the scan; another thread advances after "
                 "the goal is taken (acquire of the writer's flag); one reader attaching"},
    {"read-acquire", 2, "read-side contract: the reader attaches after the writer's scan "
                        "(a relaxed flag: scheduling only, no ordering) and its first protected "
                        "load is acquire"},
    {"read-seqcst", 2, "the same shape with a seq_cst first load (the contract)"},
    {"stale-goal", 3, "writer: release unlink, non-advancing goal; another thread advances "
                      "with no ordering to the writer; one reader that passes a quiescent "
                      "state"},
    {"growth", 3, "a reserve that grows the full array (stop-the-world) races an attached "
                  "reader (safepoints) and an unregister (gh-115103)"},
    {"reserve-race", 2, "two reserves race; one takes the last free slot, the other grows "
                        "(gh-129732)"},
    // -- hazards ---------------------------------------------------------------------------
    {"stale-goal-fence", 3, "stale-goal with a seq_cst fence between the writer's unlink and "
                            "its non-advancing goal (the stale-goal-fence fix, caller side)"},
    {"stale-goal-advancing", 3, "stale-goal with the advancing goal (_Py_qsbr_advance, a "
                                "seq_cst read-modify-write)"},
    {"retire-before-unlink", 3, "writer: non-advancing goal, then the release unlink "
                                "(dict_merge's clone path: dictkeys_decref before set_keys); "
                                "another thread advances; one reader that passes a quiescent "
                                "state"},
    // -- end of the hazards block ------------------------------------------------------------
    // ---- issue 25 block ---------------------------------------------------------------------
    {"fastpath", 3, "writer: release unlink, advance, quiescent state, waits (relaxed flag: "
                    "scheduling only) for the helper's first scan, then goal_reached (twice) "
                    "before any poll: its true answer rests on the rd_seq that a "
                    "helper's scan (quiescent state, poll, twice) moved after seeing the reader "
                    "(attached before the threads: read, quiescent state, read, detach) pass"},
    {"scan-rd", 3, "as fastpath, but the writer polls only (twice): a scan that saw the reader "
                   "still attached answers true from the rd_seq it loads after the helper's "
                   "compare-exchange moved it"},
    // ---- end of the issue 25 block ----------------------------------------------------------
};

Scenario g_scenario = S_RW;
// Relacy's bound and full schedulers run until the space is exhausted; this caps them at
// g_cap iterations (counted in the test constructor, once per iteration).
unsigned long g_cap = 0, g_iterations = 0;
const char *g_sched = "";
std::chrono::steady_clock::time_point g_started;

enum Role { R_READER, R_WRITER, R_WRITER_XCHG, R_WRITER_NEXT, R_ADVANCER, R_CYCLER,
            R_GROWER, R_SAFEPOINT_READER, R_UNREGISTER,
            R_RESERVER, R_QS_READER, R_LATE_READER_ACQ, R_LATE_READER_SC,
            R_ADVANCER_AFTER_GOAL,
            R_WRITER_NEXT_FENCE, R_WRITER_RETIRE_FIRST,     // hazards
            R_FAST_WRITER, R_SCAN_WRITER, R_HELPER_POLLER,  // issue 25
            R_NONE };

Role role(int thread)
{
    static const Role roles[S_COUNT][3] = {
        {R_WRITER, R_READER, R_NONE},
        {R_WRITER, R_QS_READER, R_NONE},
        {R_WRITER, R_READER, R_READER},
        {R_WRITER_XCHG, R_WRITER_XCHG, R_READER},
        {R_WRITER, R_CYCLER, R_NONE},
        {R_WRITER_NEXT, R_ADVANCER_AFTER_GOAL, R_READER},
        {R_WRITER, R_LATE_READER_ACQ, R_NONE},
        {R_WRITER, R_LATE_READER_SC, R_NONE},
        {R_WRITER_NEXT, R_ADVANCER, R_READER},
        {R_GROWER, R_SAFEPOINT_READER, R_UNREGISTER},
        {R_RESERVER, R_RESERVER, R_NONE},
        // -- hazards -----------------------------------------------------------------------
        {R_WRITER_NEXT_FENCE, R_ADVANCER, R_READER},
        {R_WRITER, R_ADVANCER, R_READER},
        {R_WRITER_RETIRE_FIRST, R_ADVANCER, R_READER},
        // -- end of the hazards block --------------------------------------------------------
        // issue 25 block
        {R_FAST_WRITER, R_HELPER_POLLER, R_QS_READER},
        {R_SCAN_WRITER, R_HELPER_POLLER, R_QS_READER},
    };
    return roles[g_scenario][thread];
}

const int POISON = 0xDEAD;
const int LIVE = 42;
const uint64_t PROGRESS_DONE = ~(uint64_t)0;
const unsigned char FREED_BYTE = 0xDB;
const int MAX_TS = 16;

struct Obj {
    rl::var<int> val;
};

struct Shadow {
    rl::atomic<uint64_t> *atomic;
    uint64_t last;      // the value the shim last wrote through to the plain field
};

struct World {
    bool setup = true;              // before()/after(): single-threaded, no locks
    std::map<uintptr_t, Shadow> shadows;
    std::map<uintptr_t, rl::mutex *> mutexes;
    std::map<uintptr_t, size_t> blocks;                 // live PyMem_Raw blocks
    std::vector<std::pair<char *, size_t>> freed;       // quarantined (poisoned) blocks
    bool stw_requested = false;     // under stw_mu
    PyInterpreterState interp;
    _PyThreadStateImpl ts[MAX_TS];
    bool registered[MAX_TS];
    int nts = 0;
    _PyThreadStateImpl new_ts[3];   // thread states made by reservers in the threads
};

World *g;
rl::mutex *g_stw_mu;
rl::condition_variable *g_stw_cv;

bool in_freed(uintptr_t addr)
{
    for (auto &r : g->freed) {
        if (addr >= (uintptr_t)r.first && addr < (uintptr_t)r.first + r.second) {
            return true;
        }
    }
    return false;
}

}  // namespace

rl::atomic<uint64_t> *
qsbr_rl_shadow(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    if (in_freed(a)) {
        RL_ASSERT_IMPL(false, rl::test_result_access_to_freed_memory,
                       "atomic access to a QSBR field inside a freed array", $);
    }
    auto it = g->shadows.find(a);
    if (it != g->shadows.end()) {
        if (*(const uint64_t *)addr != it->second.last) {
            RL_ASSERT_IMPL(false, rl::test_result_data_race,
                           "plain (non-atomic) write to a field that other threads access "
                           "atomically", $);
        }
        return it->second.atomic;
    }
    uint64_t value = *(const uint64_t *)addr;
    rl::atomic<uint64_t> *shadow = new rl::atomic<uint64_t>();
    (*shadow)($).store(value, rl::mo_relaxed);
    g->shadows[a] = Shadow{shadow, value};
    return shadow;
}

void
qsbr_rl_wrote(const void *addr, uint64_t value)
{
    g->shadows[(uintptr_t)addr].last = value;
}

void *
qsbr_rl_memcpy(void *dst, const void *src, size_t n)
{
    std::memmove(dst, src, n);
    uintptr_t s = (uintptr_t)src;
    std::vector<std::pair<uintptr_t, rl::atomic<uint64_t> *>> copied;
    for (auto &kv : g->shadows) {
        if (kv.first >= s && kv.first + sizeof(uint64_t) <= s + n) {
            copied.push_back({kv.first, kv.second.atomic});
        }
    }
    // One step for the scheduler: the copy runs under the QSBR mutex with the world stopped
    // (a GROWTH_NO_STW race shows as an access to the old array after it is freed).
    rl::preemption_disabler nopreempt(rl::ctx());
    for (auto &c : copied) {
        uint64_t v = (*c.second)($).load(rl::mo_relaxed);
        uint64_t *d = (uint64_t *)((char *)dst + (c.first - s));
        *d = v;
        rl::atomic<uint64_t> *shadow = qsbr_rl_shadow(d);
        (*shadow)($).store(v, rl::mo_relaxed);
        qsbr_rl_wrote(d, v);
    }
    return dst;
}

static rl::mutex *
mutex_for(PyMutex *m)
{
    auto it = g->mutexes.find((uintptr_t)m);
    if (it != g->mutexes.end()) {
        return it->second;
    }
    rl::mutex *mu = new rl::mutex();
    g->mutexes[(uintptr_t)m] = mu;
    return mu;
}

void qsbr_rl_mutex_lock(PyMutex *m) { if (!g->setup) mutex_for(m)->lock($); }
// After an unlock, a scheduling point: a real thread can be preempted right after releasing the
// mutex, before its next plain access (Relacy switches threads only at its own operations).
void
qsbr_rl_mutex_unlock(PyMutex *m)
{
    if (!g->setup) {
        mutex_for(m)->unlock($);
        rl::ctx().sched();
    }
}

void *
PyMem_RawCalloc(size_t nelem, size_t elsize)
{
    void *p = (std::calloc)(nelem, elsize);
    if (p != NULL) {
        g->blocks[(uintptr_t)p] = nelem * elsize;
    }
    return p;
}

void
PyMem_RawFree(void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    auto it = g->blocks.find((uintptr_t)ptr);
    RL_ASSERT(it != g->blocks.end());
    size_t size = it->second;
    g->blocks.erase(it);
    std::memset(ptr, FREED_BYTE, size);
    g->freed.push_back({(char *)ptr, size});
}

PyThreadState *_PyThreadState_GET(void) { return NULL; }

void
_PyEval_StopTheWorld(PyInterpreterState *)
{
    if (g->setup) {
        return;
    }
    g_stw_mu->lock($);
    RL_ASSERT(!g->stw_requested);
    g->stw_requested = true;
    for (;;) {
        bool attached = false;
        for (int i = 0; i < g->nts; i++) {
            attached |= g->ts[i].base.state == _Py_THREAD_ATTACHED;
        }
        if (!attached) {
            break;
        }
        g_stw_cv->wait(*g_stw_mu, $);
    }
    g_stw_mu->unlock($);
}

void
_PyEval_StartTheWorld(PyInterpreterState *)
{
    if (g->setup) {
        return;
    }
    g_stw_mu->lock($);
    g->stw_requested = false;
    g_stw_cv->notify_all($);
    g_stw_mu->unlock($);
}

namespace {

// Thread-state attach/detach with stop-the-world, as CPython's _PyThreadState_Attach /
// detach_thread: wait out a stop request, become attached, then _Py_qsbr_attach(tstate->qsbr).
void
ts_attach(_PyThreadStateImpl *ts)
{
    g_stw_mu->lock($);
    while (g->stw_requested) {
        g_stw_cv->wait(*g_stw_mu, $);
    }
    ts->base.state = _Py_THREAD_ATTACHED;
    g_stw_mu->unlock($);
    _Py_qsbr_attach(ts->qsbr);
}

void
ts_detach(_PyThreadStateImpl *ts)
{
    _Py_qsbr_detach(ts->qsbr);
    g_stw_mu->lock($);
    ts->base.state = _Py_THREAD_DETACHED;
    g_stw_cv->notify_all($);
    g_stw_mu->unlock($);
}

// A safepoint (the eval breaker): if the world is being stopped, suspend (detach) until it
// restarts, then re-attach.
void
ts_safepoint(_PyThreadStateImpl *ts)
{
    g_stw_mu->lock($);
    bool requested = g->stw_requested;
    g_stw_mu->unlock($);
    if (requested) {
        ts_detach(ts);
        ts_attach(ts);
    }
}

void
read_obj(Obj *p)
{
    RL_ASSERT(p != NULL);
    int v = p->val($);
    RL_ASSERT(v == LIVE);   // a reclaimed object holds POISON (and the write races this read)
}

void
reclaim(Obj *p)
{
    p->val($) = POISON;
    delete p;
}

}  // namespace

template<int N>
struct qsbr_test : rl::test_suite<qsbr_test<N>, N>
{
    World world;
    rl::mutex stw_mu;
    rl::condition_variable stw_cv;
    rl::atomic<Obj *> head;
    rl::atomic<int> goal_taken;         // fence: the writer has taken its goal (release)
    rl::atomic<int> scanned;            // read-*: the writer's poll is over (relaxed only)
    rl::atomic<uint64_t> progress[N];   // 0: nothing yet; seq after a quiescent state; DONE
    Obj *pending[N];
    uint64_t goals[N];

    qsbr_test()
    {
        if (g_cap != 0 && ++g_iterations > g_cap) {
            long ms = (long)std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - g_started).count();
            std::printf("RESULT\t%s\t%s\t%lu\tclean\t%ld\tstopped at the cap (not "
                        "exhaustive)\n", SCENARIOS[g_scenario].name, g_sched, g_cap, ms);
            std::fflush(stdout);
            std::_Exit(0);
        }
        g = &world;
        g_stw_mu = &stw_mu;
        g_stw_cv = &stw_cv;
    }

    ~qsbr_test()
    {
        for (auto &kv : world.shadows) {
            delete kv.second.atomic;
        }
        for (auto &kv : world.mutexes) {
            delete kv.second;
        }
        for (auto &kv : world.blocks) {
            (std::free)((void *)kv.first);
        }
        for (auto &r : world.freed) {
            (std::free)(r.first);
        }
        g = NULL;
    }

    _PyThreadStateImpl *
    add_ts(bool reg)
    {
        _PyThreadStateImpl *ts = &world.ts[world.nts];
        std::memset(ts, 0, sizeof(*ts));
        ts->base.interp = &world.interp;
        ts->base.state = _Py_THREAD_DETACHED;
        world.registered[world.nts] = reg;
        world.nts++;
        if (reg) {
            Py_ssize_t index = _Py_qsbr_reserve(&world.interp);
            RL_ASSERT(index >= 0);
            _Py_qsbr_register(ts, &world.interp, index);
        }
        return ts;
    }

    void before()
    {
        world.setup = true;
        std::memset(&world.interp, 0, sizeof(world.interp));
        std::memset(world.new_ts, 0, sizeof(world.new_ts));
        world.interp.qsbr.wr_seq = QSBR_INITIAL;
        world.interp.qsbr.rd_seq = QSBR_INITIAL;
        // One thread state per model thread (index = thread), registered except for the
        // roles that make their own.
        for (int i = 0; i < N; i++) {
            Role r = role(i);
            add_ts(r != R_GROWER && r != R_RESERVER && r != R_ADVANCER);
        }
        if (world.interp.qsbr.array == NULL) {
            add_ts(true);           // the first array (8 slots)
        }
        if (g_scenario == S_GROWTH) {
            while (world.interp.qsbr.freelist != NULL) {
                add_ts(true);       // fill the array: the grower's reserve must grow it
            }
        }
        else if (g_scenario == S_RESERVE_RACE) {
            while (world.interp.qsbr.freelist != NULL
                   && world.interp.qsbr.freelist->freelist_next != NULL) {
                add_ts(true);       // leave exactly one free slot
            }
        }
        for (int i = 0; i < N; i++) {
            if (role(i) == R_QS_READER) {
                _Py_qsbr_attach(world.ts[i].qsbr);
            }
        }
        // Shadows for every sequence that exists now (created by this setup thread).
        qsbr_rl_shadow(&world.interp.qsbr.wr_seq);
        qsbr_rl_shadow(&world.interp.qsbr.rd_seq);
        for (Py_ssize_t i = 0; i < world.interp.qsbr.size; i++) {
            qsbr_rl_shadow(&world.interp.qsbr.array[i].qsbr.seq);
        }
        Obj *first = new Obj;
        first->val($) = LIVE;
        head($).store(first, rl::mo_relaxed);
        goal_taken($).store(0, rl::mo_relaxed);
        scanned($).store(0, rl::mo_relaxed);
        for (int i = 0; i < N; i++) {
            progress[i]($).store(0, rl::mo_relaxed);
            pending[i] = NULL;
            goals[i] = 0;
        }
        world.setup = false;
    }

    // -- memory-order roles ----------------------------------------------------------------

    void reader(int i, rl::memory_order first_load)
    {
        struct _qsbr_thread_state *q = world.ts[i].qsbr;
        if (role(i) == R_LATE_READER_ACQ || role(i) == R_LATE_READER_SC) {
            // Scheduling only: a relaxed load creates no happens-before edge.
            rl::backoff b;
            while (scanned($).load(rl::mo_relaxed) == 0) {
                b.yield($);
            }
        }
        if (role(i) != R_QS_READER) {
            _Py_qsbr_attach(q);
        }
        read_obj(qsbr_rl_atomic_load(head, first_load));
        if (role(i) == R_READER || role(i) == R_QS_READER) {
            _Py_qsbr_quiescent_state(q);
            progress[i]($).store(q->seq, rl::mo_release);
            read_obj(head($).load(rl::mo_acquire));
        }
        _Py_qsbr_detach(q);
        progress[i]($).store(PROGRESS_DONE, rl::mo_release);
    }

    void cycler(int i)
    {
        struct _qsbr_thread_state *q = world.ts[i].qsbr;
        for (int k = 0; k < 2; k++) {
            _Py_qsbr_attach(q);
            read_obj(qsbr_rl_atomic_load(head, rl::mo_seq_cst));
            _Py_qsbr_detach(q);
        }
        progress[i]($).store(PROGRESS_DONE, rl::mo_release);
    }

    bool others_progressed(int i, uint64_t goal)
    {
        for (int j = 0; j < N; j++) {
            if (j == i) {
                continue;
            }
            uint64_t p = progress[j]($).load(rl::mo_acquire);
            if (p != PROGRESS_DONE && (p == 0 || QSBR_LT(p, goal))) {
                return false;
            }
        }
        return true;
    }

    // The release's non-advancing goal.
    static uint64_t next_goal(struct _qsbr_thread_state *q, struct _qsbr_shared *shared)
    {
#if QSBR_DEFERRALS
        (void)shared;
        return _Py_qsbr_deferred_advance(q);
#else
        (void)q;
        return _Py_qsbr_shared_next(shared);
#endif
    }

    void writer(int i)
    {
        Role r = role(i);
        struct _qsbr_thread_state *q = world.ts[i].qsbr;
        struct _qsbr_shared *shared = &world.interp.qsbr;
        _Py_qsbr_attach(q);
        Obj *fresh = new Obj;
        fresh->val($) = LIVE;
        Obj *old;
        uint64_t goal = 0;
        if (r == R_WRITER_XCHG) {
            old = head($).exchange(fresh, rl::mo_acq_rel);
        }
        else {
            old = head($).load(rl::mo_relaxed);
            if (r == R_WRITER_RETIRE_FIRST) {           // hazards: retired before the unlink
                goal = next_goal(q, shared);
            }
            head($).store(fresh, rl::mo_release);       // the unlink: a release store
            if (r == R_WRITER_NEXT_FENCE) {             // hazards: the caller-side fence
                _Py_atomic_fence_seq_cst();
            }
        }
        if (r == R_WRITER_NEXT || r == R_WRITER_NEXT_FENCE) {
            goal = next_goal(q, shared);
        }
        else if (r != R_WRITER_RETIRE_FIRST) {
            goal = _Py_qsbr_advance(shared);
        }
        goals[i] = goal;
        goal_taken($).store(1, rl::mo_release);
        _Py_qsbr_quiescent_state(q);
        bool freed = false;
        if (_Py_qsbr_poll(q, goal)) {
            reclaim(old);
            freed = true;
        }
        scanned($).store(1, rl::mo_relaxed);
        if (!freed && others_progressed(i, goal)
            && QSBR_LEQ(goal, _Py_qsbr_shared_current(shared))) {
            // Liveness: every other thread is detached or passed a quiescent state at or
            // after the goal, so after our own quiescent state a poll must succeed.
            _Py_qsbr_quiescent_state(q);
            RL_ASSERT(_Py_qsbr_poll(q, goal) && "liveness: poll fails after every thread "
                      "passed a quiescent state at the goal or detached");
            reclaim(old);
            freed = true;
        }
        if (!freed) {
            pending[i] = old;
        }
        _Py_qsbr_detach(q);
        progress[i]($).store(PROGRESS_DONE, rl::mo_release);
    }

    void advancer(int i)
    {
        if (role(i) == R_ADVANCER_AFTER_GOAL) {
            rl::backoff b;
            while (goal_taken($).load(rl::mo_acquire) == 0) {
                b.yield($);
            }
        }
        _Py_qsbr_advance(&world.interp.qsbr);
        progress[i]($).store(PROGRESS_DONE, rl::mo_release);
    }

    // -- issue 25: the loads behind a true answer ------------------------------------------

    // A writer whose reclamation rests on rd_seq as moved by another thread's scan: the
    // goal_reached fast path (R_FAST_WRITER: it tries that first), or the rd_seq a scan loads
    // after its own minimum fell short (R_SCAN_WRITER: polls only).  Either load must acquire
    // the helper's compare-exchange, which carries the reader's release (quiescent state or
    // detach) that the helper's scan acquired; relaxed, the reclaim races the reader's read.
    void fast_writer(int i)
    {
        struct _qsbr_thread_state *q = world.ts[i].qsbr;
        _Py_qsbr_attach(q);
        Obj *fresh = new Obj;
        fresh->val($) = LIVE;
        Obj *old = head($).load(rl::mo_relaxed);
        head($).store(fresh, rl::mo_release);
        uint64_t goal = _Py_qsbr_advance(&world.interp.qsbr);
        goals[i] = goal;
        _Py_qsbr_quiescent_state(q);
        if (role(i) == R_FAST_WRITER) {
            // Scheduling only (a relaxed flag: no ordering): let the helper scan first.
            rl::backoff b;
            while (scanned($).load(rl::mo_relaxed) == 0) {
                b.yield($);
            }
        }
        bool freed = false;
        for (int k = 0; k < 2 && !freed; k++) {
            if (role(i) == R_FAST_WRITER ? _Py_qbsr_goal_reached(q, goal)
                                         : _Py_qsbr_poll(q, goal)) {
                reclaim(old);
                freed = true;
            }
        }
        if (!freed && role(i) == R_FAST_WRITER && _Py_qsbr_poll(q, goal)) {
            reclaim(old);
            freed = true;
        }
        if (!freed) {
            pending[i] = old;
        }
        _Py_qsbr_detach(q);
        progress[i]($).store(PROGRESS_DONE, rl::mo_release);
    }

    // Passes quiescent states and scans (a goal one past the current one, never reached
    // without a scan), moving rd_seq for the writer; frees nothing itself.
    void helper_poller(int i)
    {
        struct _qsbr_thread_state *q = world.ts[i].qsbr;
        struct _qsbr_shared *shared = &world.interp.qsbr;
        _Py_qsbr_attach(q);
        for (int k = 0; k < 2; k++) {
            _Py_qsbr_quiescent_state(q);
            (void)_Py_qsbr_poll(q, _Py_qsbr_shared_current(shared) + QSBR_INCR);
            scanned($).store(k + 1, rl::mo_relaxed);    // scheduling only, as above
        }
        _Py_qsbr_detach(q);
        progress[i]($).store(PROGRESS_DONE, rl::mo_release);
    }

    // -- registry roles --------------------------------------------------------------------

    // Reserve a slot for a new thread state and register it, checking the index first (an
    // index that is not a reserved, unowned slot of the current array is gh-129732).
    void reserver(int i)
    {
        struct _qsbr_shared *shared = &world.interp.qsbr;
        Py_ssize_t index = _Py_qsbr_reserve(&world.interp);
        RL_ASSERT(index >= 0);
        PyMutex_Lock(&shared->mutex);
        bool ok = index >= 0 && index < shared->size
                  && shared->array[index].qsbr.allocated
                  && shared->array[index].qsbr.tstate == NULL;
        PyMutex_Unlock(&shared->mutex);
        RL_ASSERT(ok && "reserve returned an index that is not a reserved free slot of "
                        "the current array (gh-129732)");
        _PyThreadStateImpl *ts = &world.new_ts[i];
        ts->base.interp = &world.interp;
        _Py_qsbr_register(ts, &world.interp, index);
        progress[i]($).store(PROGRESS_DONE, rl::mo_release);
    }

    void safepoint_reader(int i)
    {
        _PyThreadStateImpl *ts = &world.ts[i];
        ts_attach(ts);
        ts_safepoint(ts);
        _Py_qsbr_quiescent_state(ts->qsbr);
        ts_safepoint(ts);
        ts_detach(ts);
    }

    void unregisterer(int i)
    {
        _Py_qsbr_unregister(&world.ts[i].base);
        world.registered[i] = false;
    }

    void thread(unsigned index)
    {
        int i = (int)index;
        switch (role(i)) {
        case R_READER: reader(i, rl::mo_seq_cst); break;
        case R_LATE_READER_ACQ: reader(i, rl::mo_acquire); break;
        case R_LATE_READER_SC: reader(i, rl::mo_seq_cst); break;
        case R_QS_READER: reader(i, rl::mo_acquire); break;
        case R_CYCLER: cycler(i); break;
        case R_WRITER: case R_WRITER_XCHG: case R_WRITER_NEXT: writer(i); break;
        case R_WRITER_NEXT_FENCE: case R_WRITER_RETIRE_FIRST: writer(i); break;   // hazards
        case R_ADVANCER: case R_ADVANCER_AFTER_GOAL: advancer(i); break;
        case R_GROWER: reserver(i); break;
        case R_RESERVER: reserver(i); break;
        case R_SAFEPOINT_READER: safepoint_reader(i); break;
        case R_UNREGISTER: unregisterer(i); break;
        case R_FAST_WRITER: case R_SCAN_WRITER: fast_writer(i); break;
        case R_HELPER_POLLER: helper_poller(i); break;
        case R_NONE: break;
        }
    }

    // Structural invariants of the registry after the threads ran.
    void check_registry()
    {
        struct _qsbr_shared *shared = &world.interp.qsbr;
        struct _qsbr_pad *lo = shared->array, *hi = shared->array + shared->size;
        long owned = 0;
        std::vector<_PyThreadStateImpl *> all;
        for (int i = 0; i < world.nts; i++) {
            if (world.registered[i]) {
                all.push_back(&world.ts[i]);
            }
            else {
                RL_ASSERT(world.ts[i].qsbr == NULL || role(i) != R_UNREGISTER);
            }
        }
        for (int i = 0; i < N; i++) {
            if (world.new_ts[i].qsbr != NULL) {
                all.push_back(&world.new_ts[i]);
            }
        }
        for (_PyThreadStateImpl *ts : all) {
            struct _qsbr_pad *pad = (struct _qsbr_pad *)ts->qsbr;
            RL_ASSERT(pad >= lo && pad < hi && "a thread state's slot is outside the array");
            RL_ASSERT(ts->qsbr->allocated && ts->qsbr->tstate == (PyThreadState *)ts
                      && "a thread state's slot does not point back at it");
            owned++;
        }
        long allocated = 0, free_count = 0;
        for (struct _qsbr_pad *p = lo; p < hi; p++) {
            allocated += p->qsbr.allocated;
        }
        for (struct _qsbr_thread_state *f = shared->freelist; f != NULL && free_count <= 64;
             f = f->freelist_next) {
            struct _qsbr_pad *pad = (struct _qsbr_pad *)f;
            RL_ASSERT(pad >= lo && pad < hi && "a freelist entry is outside the array");
            RL_ASSERT(!f->allocated && "an allocated slot is on the freelist");
            free_count++;
        }
        RL_ASSERT(allocated == owned && "allocated slots != registered thread states");
        RL_ASSERT(free_count == shared->size - allocated && "freelist length is wrong");
    }

    void after()
    {
        world.setup = true;
        // Liveness at the end: every thread has detached, so each pending reclamation's poll
        // must succeed now.
        for (int i = 0; i < N; i++) {
            if (pending[i] != NULL) {
                if (QSBR_LT(world.interp.qsbr.wr_seq, goals[i])) {
                    _Py_qsbr_advance(&world.interp.qsbr);   // a non-advancing goal
                }
                RL_ASSERT(_Py_qsbr_poll(world.ts[i].qsbr, goals[i])
                          && "liveness: poll fails with every thread detached");
                reclaim(pending[i]);
            }
        }
        Obj *last = head($).load(rl::mo_relaxed);
        delete last;
        for (auto &r : world.freed) {
            for (size_t k = 0; k < r.second; k++) {
                RL_ASSERT((unsigned char)r.first[k] == FREED_BYTE
                          && "a freed QSBR array was written after it was freed");
            }
        }
        if (g_scenario == S_GROWTH || g_scenario == S_RESERVE_RACE) {
            check_registry();
        }
        // fini frees the current array: nothing the port allocated may be left.
        _Py_qsbr_fini(&world.interp);
        RL_ASSERT(world.blocks.empty() && "a QSBR array was never freed (leak)");
    }
};

template<int N>
static bool
run(rl::test_params &params)
{
    return rl::simulate<qsbr_test<N>>(params);
}

int
main(int argc, char **argv)
{
    if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
        for (int s = 0; s < S_COUNT; s++) {
            std::printf("%-14s %d threads  %s\n", SCENARIOS[s].name, SCENARIOS[s].threads,
                        SCENARIOS[s].what);
        }
        return 0;
    }
    if (argc < 4 || argc > 5) {
        std::fprintf(stderr, "usage: %s --list | SCENARIO random|bound|full ITERATIONS "
                             "[CONTEXT_BOUND]\n", argv[0]);
        return 2;
    }
    int s = 0;
    while (s < S_COUNT && std::strcmp(SCENARIOS[s].name, argv[1]) != 0) {
        s++;
    }
    if (s == S_COUNT) {
        std::fprintf(stderr, "%s: unknown scenario '%s' (see --list)\n", argv[0], argv[1]);
        return 2;
    }
    g_scenario = (Scenario)s;
    rl::test_params params;
    std::string sched = argv[2];
    if (sched == "random") {
        params.search_type = rl::sched_random;
    }
    else if (sched == "bound") {
        params.search_type = rl::sched_bound;
    }
    else if (sched == "full") {
        params.search_type = rl::sched_full;
    }
    else {
        std::fprintf(stderr, "%s: unknown scheduler '%s'\n", argv[0], argv[2]);
        return 2;
    }
    char *end;
    params.iteration_count = std::strtoul(argv[3], &end, 10);
    if (*end != '\0' || params.iteration_count == 0) {
        std::fprintf(stderr, "%s: bad iteration count '%s'\n", argv[0], argv[3]);
        return 2;
    }
    params.context_bound = argc == 5 ? (unsigned)std::atoi(argv[4]) : 2;
    rl::ostringstream out;
    params.output_stream = &out;
    params.progress_stream = &out;
    params.progress_output_period = 1000000;
    auto started = std::chrono::steady_clock::now();
    g_started = started;
    g_sched = argv[2];
    if (params.search_type != rl::sched_random) {
        g_cap = params.iteration_count;
    }
    bool ok = SCENARIOS[s].threads == 2 ? run<2>(params) : run<3>(params);
    long ms = (long)std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started).count();
    std::string detail;
    if (ok) {
        detail = params.search_type == rl::sched_random ? "seeded random"
                                                        : "complete (space exhausted)";
    }
    else {
        detail = rl::test_result_str(params.test_result);
        std::string text(out.str().c_str());
        size_t at = text.find("assertion: ");
        if (at == std::string::npos) {
            at = text.find("QSBR");
        }
        if (at != std::string::npos) {
            size_t eol = text.find('\n', at);
            detail += ": " + text.substr(at, eol == std::string::npos ? 160 : eol - at);
        }
        std::fprintf(stderr, "%s\n", text.c_str());
    }
    std::replace(detail.begin(), detail.end(), '\t', ' ');
    std::printf("RESULT\t%s\t%s\t%lu\t%s\t%ld\t%s\n", SCENARIOS[s].name, sched.c_str(),
                (unsigned long)params.stop_iteration, ok ? "clean" : "found", ms,
                detail.c_str());
    return ok ? 0 : 1;
}
