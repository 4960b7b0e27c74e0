"""Fidelity against the live interpreter: the real CPython QSBR state versus the oracle.

A driver (conformance.live_driver) runs in a fresh free-threaded interpreter, performs actions
that CPython maps onto QSBR (a thread starting reserves and registers a slot, a thread ending
unregisters it, os.fork() runs after_fork in the child, a subinterpreter gets its own QSBR
state) and reports what conformance._live_probe reads after each one.  The oracle predicts
the same: every thread's slot, the array size and the freelist order.  The sequence rules are
checked on the live state too: wr_seq odd, detached threads at 0, rd_seq not past the probing
(attached) thread's seq.

Sequence values are compared with the oracle operation by operation: a ["seq", kind] action
runs one operation on the main thread's slot inside the probe (the header's own
quiescent_state and goal_reached; the interpreter's own _Py_qsbr_advance, _Py_qsbr_poll and
_Py_qsbr_shared_next / _Py_qsbr_deferred_advance, reached through their ELF symbols (see
conformance.checks.symbols); detach and attach through Py_BEGIN/END_ALLOW_THREADS) and reports
wr_seq, rd_seq and every slot's seq just before and just after.  The oracle starts from the
"before" values and must predict the result and every "after" value.  The interpreter's own
activity (GC, dict and list resizes, deferred frees) also advances wr_seq and moves rd_seq:
it happens between actions, never inside the probe's window, and the difference between one
action's "after" and the next one's "before" is reported as the interpreter's own advances.
"""

from __future__ import annotations

import copy
import functools
import json
import sysconfig
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..model.layout import layout_differences
from ..model.oracle import OracleInterpreter, qsbr_leq

#: The facts a live run checks (reported in the conformance report's live section).
LIVE_FACTS = ("S-SEQ-2", "S-SLOT-2", "S-SLOT-3", "S-FREE-1", "S-FREE-2", "S-FREE-3",
              "S-RES-1", "S-REG-1", "S-UNREG-1", "S-FORK-1", "S-POLL-2",
              "S-QS-1", "S-ADV-1", "S-GOAL-1", "S-POLL-1", "S-DEF-1", "S-DEF-2",
              "S-ATTACH-1", "S-DETACH-1")

#: The sequence operations a live run drives ("batch": shared_next on 3.13.6+, else
#: deferred_advance).
SEQ_KINDS = ("quiescent_state", "advance", "goal_reached", "poll", "batch", "detach_attach")


def free_threaded() -> bool:
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def probe_available() -> bool:
    if not free_threaded():
        return False
    try:
        from . import _live_probe  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return False
    return True


def subinterpreters_available() -> bool:
    try:
        import _interpreters  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class LiveResult:
    version: str = ""
    profile: str = ""
    actions: int = 0
    runs: int = 0
    checks: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    #: sequence values (wr_seq, rd_seq, each slot's seq, the operation's result) compared
    seq_values: int = 0
    #: sequence operations driven, by kind
    seq_ops: Counter = field(default_factory=Counter)
    #: wr_seq advances made by the interpreter itself between actions (GC, resizes, frees)
    interpreter_advances: int = 0
    #: subinterpreter steps whose main-interpreter array shows a thread state the interpreter
    #: created and deleted by itself (import.c's switch_to_main_interpreter())
    interpreter_thread_states: int = 0
    #: why some operations could not be driven (e.g. no .symtab), if so
    seq_skipped: list[str] = field(default_factory=list)
    #: operations not compared because another thread's seq changed inside the window
    seq_raced: int = 0

    def merge(self, other: LiveResult) -> None:
        self.version, self.profile = other.version or self.version, other.profile or self.profile
        self.actions += other.actions
        self.runs += other.runs
        self.checks.update(other.checks)
        self.failures.extend(other.failures)
        self.seq_values += other.seq_values
        self.seq_ops.update(other.seq_ops)
        self.interpreter_advances += other.interpreter_advances
        self.interpreter_thread_states += other.interpreter_thread_states
        self.seq_raced += other.seq_raced
        self.seq_skipped.extend(s for s in other.seq_skipped if s not in self.seq_skipped)


@functools.lru_cache(maxsize=1)
def _symtab_values() -> dict[str, dict[str, int]]:
    """Read once here and handed to every driver: reading them there imports pyelftools in
    each fresh interpreter, about half of a driver's start-up on 3.13t."""
    from .live_driver import FUNCTIONS
    from .symbols import symtab_values
    return symtab_values(tuple(FUNCTIONS.values()))


def run_driver(actions: list[list], timeout: float = 120) -> list[dict]:
    """Run the actions in a fresh interpreter; one record per action (plus the initial one).

    ``timeout`` bounds the time between two records, charged as conformance.drivers.patience
    does (time spent waiting for a CPU behind other processes does not count)."""
    from ..drivers.isolation import python_command
    from ..drivers.patience import run_watched
    request = {"actions": actions, "symtab": _symtab_values()}
    with tempfile.TemporaryDirectory() as scratch:
        # Outside the source tree: the installed package (with its probe) is what runs.
        proc = run_watched(python_command("conformance.checks.live_driver"),
                           input_text=json.dumps(request), budget=timeout, cwd=scratch,
                           what="the live driver (CPython itself)")
    if proc.hung is not None:
        raise RuntimeError(f"live driver failed: {proc.hung}\n{proc.stderr[-4000:]}")
    if proc.returncode != 0:
        raise RuntimeError(f"live driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


class _Model:
    """The oracle, fed with what CPython does for each action."""

    def __init__(self, profile: str, main_ident: int) -> None:
        self.profile = profile
        self.oracle = OracleInterpreter(profile)
        self.handle = {main_ident: self._new_thread()}
        self.main = self.handle[main_ident]

    def _new_thread(self) -> int:
        # CPython's new_threadstate(): reserve a slot, link the thread state, register.
        handle = self.oracle.new_thread_state()
        self.oracle.register(handle, self.oracle.reserve())
        return handle

    def start(self, ident: int) -> None:
        self.handle[ident] = self._new_thread()

    def stop(self, ident: int) -> None:
        # tstate_delete_common(): unregister (the thread is detached by then).
        handle = self.handle.pop(ident)
        self.oracle.unregister(handle)
        self.oracle.delete_thread_state(handle)

    def own_thread_state(self) -> _Model:
        """This model after one thread state the interpreter creates and deletes by itself.

        A subinterpreter that imports a single-phase-init extension module (the builtins it
        loads while starting up among them) runs its init function in the MAIN interpreter,
        on a thread state made for that (import.c, switch_to_main_interpreter(): 3.13 and 3.14
        alike): new_threadstate() reserves and registers a main-interpreter slot, and the
        thread state is deleted (unregistered) right after.  With a free slot that leaves the
        freelist as it was (popped, then pushed back); with a full array it leaves the array
        grown.  How many such thread states a subinterpreter makes is not observable, and one
        or more leave the same state, so the comparison accepts this state or the unchanged
        one, and nothing else."""
        other = copy.deepcopy(self)
        handle = other._new_thread()
        other.oracle.unregister(handle)
        other.oracle.delete_thread_state(handle)
        return other

    def after_fork(self) -> OracleInterpreter:
        child = copy.deepcopy(self.oracle)
        child.after_fork(self.main)
        return child

    def view(self, oracle: OracleInterpreter | None = None) -> dict:
        oracle = oracle or self.oracle
        ident_of: dict[Any, int] = {h: ident for ident, h in self.handle.items()}
        snap = oracle.snapshot()
        return {"size": snap.size, "freelist": list(snap.freelist),
                "allocated": [s.allocated for s in snap.slots],
                "owners": [ident_of.get(s.owner) if s.owner is not None else None
                           for s in snap.slots],
                "my_slot": snap.threads[self.main]}


def _compared(applied: list[str]) -> list[str]:
    """The facts of the oracle's rules that the live view compares (not the bookkeeping,
    which CPython's allocator drives)."""
    return [fact for fact in applied if fact in LIVE_FACTS]


def _observed(snap: dict) -> dict:
    return {"size": snap["size"], "freelist": snap["freelist"],
            "allocated": [s["allocated"] for s in snap["slots"]],
            "owners": [s["owner_thread_id"] for s in snap["slots"]],
            "my_slot": snap["my_slot"]}


def _differences(got: dict, want: dict) -> list[str]:
    return [f"{key}: live {got[key]!r}, oracle {want[key]!r}" for key in want
            if got[key] != want[key]]


def _sequence_checks(snap: dict, result: LiveResult, where: str) -> None:
    wr, rd = snap["wr_seq"], snap["rd_seq"]
    mine = snap["slots"][snap["my_slot"]]["seq"] if snap["my_slot"] >= 0 else 0
    problems = []
    if wr % 2 != 1:
        problems.append(f"wr_seq {wr} is even (S-SEQ-2)")
    if not qsbr_leq(rd, wr):
        problems.append(f"rd_seq {rd} is past wr_seq {wr} (S-POLL-2)")
    if mine == 0 or not qsbr_leq(rd, mine):
        problems.append(f"the probing thread's seq {mine} is 0 or behind rd_seq {rd} (S-POLL-2)")
    for index, slot in enumerate(snap["slots"]):
        if index != snap["my_slot"] and slot["seq"] != 0 and slot["allocated"]:
            problems.append(f"slot {index} of a waiting (detached) thread has seq {slot['seq']}")
    result.checks.update(["S-SEQ-2", "S-POLL-2"])
    result.failures.extend(f"{where}: {p}" for p in problems)


def _seq_compare(model: _Model, record: dict, result: LiveResult, where: str) -> None:
    """One driven sequence operation: the oracle, started from the live "before" values, must
    predict the result and every "after" value."""
    op, seq = record["op"], record["seq"]
    oracle, main = model.oracle, model.main
    before, after = seq["before"], seq["after"]
    if len(before["seqs"]) != len(oracle.slots):
        result.failures.append(f"{where}: live array of {len(before['seqs'])} slots, oracle "
                               f"{len(oracle.slots)}")
        return
    oracle.wr_seq, oracle.rd_seq = before["wr_seq"], before["rd_seq"]
    for slot, value in zip(oracle.slots, before["seqs"], strict=True):
        slot.seq = value
    others = [i for i in range(len(before["seqs"])) if i != seq["my_slot"]]
    states = [before, after] + ([seq["middle"]] if seq["middle"] else [])
    if any(len({state["seqs"][i] for state in states}) > 1 for i in others):
        # Another thread attached or detached inside the window (the driver waits for them
        # to settle first; on a loaded machine one may still be on its way): not comparable.
        result.seq_raced += 1
        return
    mine = oracle.slots[seq["my_slot"]]
    book = "deferrals" if model.profile == "3.13" else "deferred_count"
    mine.bookkeeping[book] = before["book"]
    compared = []                       # (what, live, oracle)
    if op == "quiescent_state":
        oracle.quiescent_state(main)
    elif op == "advance":
        compared.append(("result", seq["result"], oracle.advance()))
    elif op == "goal_reached":
        compared.append(("result", bool(seq["result"]), oracle.goal_reached(main, record["goal"])))
    elif op == "poll":
        compared.append(("result", bool(seq["result"]), oracle.poll(main, record["goal"])))
    elif op == "shared_next":
        compared.append(("result", seq["result"], oracle.shared_next()))
    elif op == "deferred_advance":
        compared.append(("result", seq["result"], oracle.deferred_advance(main)))
        compared.append((book, after["book"], mine.bookkeeping[book]))
    elif op == "detach_attach":
        oracle.detach(main)
        middle = seq["middle"]
        compared += [("detached: wr_seq", middle["wr_seq"], oracle.wr_seq),
                     ("detached: rd_seq", middle["rd_seq"], oracle.rd_seq)]
        compared += [(f"detached: slot {i} seq", v, s.seq)
                     for i, (v, s) in enumerate(zip(middle["seqs"], oracle.slots, strict=True))]
        oracle.attach(main)
    compared += [("wr_seq", after["wr_seq"], oracle.wr_seq),
                 ("rd_seq", after["rd_seq"], oracle.rd_seq)]
    compared += [(f"slot {i} seq", v, s.seq)
                 for i, (v, s) in enumerate(zip(after["seqs"], oracle.slots, strict=True))]
    result.seq_values += len(compared)
    result.seq_ops[op] += 1
    result.failures.extend(f"{where}: {what}: live {live!r}, oracle {want!r}"
                           for what, live, want in compared if live != want)


def check_actions(actions: list[list]) -> LiveResult:
    """Run one action sequence live and compare every step with the oracle."""
    records = run_driver(actions)
    initial = records[0]
    result = LiveResult(version=initial["version"], profile=initial["profile"],
                        actions=len(actions), runs=1)
    model = _Model(initial["profile"], initial["main_thread_id"])

    # The layout of the release profile: 3.13.6-3.14.3 and 3.14.4+ share the 3.14 API line.
    release = initial["profile"]
    if initial["profile"] == "3.14":
        release = "3.14.4+" if initial.get("array_raw") else "3.13.6-3.14.3"
    diffs = layout_differences(release, initial["layout"])
    if initial.get("symbols_error"):
        result.seq_skipped.append(initial["symbols_error"])
    result.checks["S-SLOT-2"] += 1
    result.failures.extend(f"layout: {d}" for d in diffs)

    previous_threads: list[int] = []
    last_wr: int | None = None
    for step, record in enumerate(records):
        kind = record["action"]
        where = f"step {step} ({kind})"
        model.oracle.applied = []
        if kind == "start":
            model.start(record["threads"][-1])
        elif kind == "stop":
            gone = set(previous_threads) - set(record["threads"])
            model.stop(gone.pop())
        elif kind == "fork":
            child_model = model.after_fork()
            diff = _differences(_observed(record["child"]), model.view(child_model))
            result.checks.update(_compared(child_model.applied))
            result.failures.extend(f"{where}, in the child: {d}" for d in diff)
        elif kind == "seq":
            if record["seq"] is None:
                if record["skipped"] not in result.seq_skipped:
                    result.seq_skipped.append(record["skipped"])
            else:
                if last_wr is not None:
                    drift = (record["seq"]["before"]["wr_seq"] - last_wr) & ((1 << 64) - 1)
                    result.interpreter_advances += drift // 2
                model.oracle.applied = []
                _seq_compare(model, record, result, where)
                last_wr = record["seq"]["after"]["wr_seq"]
        elif kind == "subinterp" and record["sub"] is not None:
            # A new interpreter starts from a fresh QSBR state: its thread gets slot 7 of 8.
            fresh = _Model(initial["profile"], 0)
            diff = _differences({**_observed(record["sub"]), "owners": None},
                                {**fresh.view(), "owners": None})
            result.checks.update(_compared(fresh.oracle.applied))
            result.failures.extend(f"{where}, in the subinterpreter: {d}" for d in diff)
        result.checks.update(_compared(model.oracle.applied))
        diff = _differences(_observed(record["snapshot"]), model.view())
        if diff and kind == "subinterp":
            grown = model.own_thread_state()
            if not _differences(_observed(record["snapshot"]), grown.view()):
                model, diff = grown, []
                result.interpreter_thread_states += 1
                result.checks.update(_compared(grown.oracle.applied))
        result.failures.extend(f"{where}: {d}" for d in diff)
        _sequence_checks(record["snapshot"], result, where)
        previous_threads = record["threads"]
    return result


#: A fixed scenario: growth past 8, 16 and 32, releases in mixed order, fork, subinterpreter,
#: and the sequence operations ("batch": the interpreter's own batching function).
_START: list[list[Any]] = [["start"]]
_SEQ: list[list[Any]] = [["seq", "quiescent_state"], ["seq", "advance"], ["seq", "goal_reached"],
                         ["seq", "poll"], ["seq", "detach_attach"], ["seq", "poll"],
                         ["seq", "goal_reached"]]
_BATCH: list[list[Any]] = [["seq", "batch"]] * 11     # deferred_advance: 10 defer, then advance
SCENARIO: list[list[Any]] = (
    _SEQ + _START * 10 + [["stop", 3], ["stop", 0], ["start"], ["fork"]] + _SEQ + _BATCH
    + _START * 28 + [["stop", 7], ["stop", 20], ["stop", 1], ["fork"], ["subinterp"]] + _SEQ
    + _START * 3 + [["stop", 2]] * 5 + _SEQ
)


def live_check(examples: int = 10, seed: int | None = None) -> LiveResult:
    """The fixed scenario plus `examples` random action sequences (Hypothesis)."""
    from hypothesis import HealthCheck, given
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    from .hsettings import suite_settings

    total = check_actions([a for a in SCENARIO
                           if a[0] != "subinterp" or subinterpreters_available()])
    kinds: list[st.SearchStrategy[list[Any]]] = (
        [st.just(["start"])] * 3 + [st.integers(0, 63).map(lambda k: ["stop", k])] * 2
        + [st.sampled_from(SEQ_KINDS).map(lambda op: ["seq", op])] * 3)
    kinds.append(st.just(["fork"]))
    if subinterpreters_available():
        kinds.append(st.just(["subinterp"]))
    actions = st.lists(st.one_of(*kinds), min_size=5, max_size=40).map(_valid)

    @suite_settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
    @given(actions)
    def one_sequence(sequence: list[list]) -> None:
        outcome = check_actions(sequence)
        total.merge(outcome)
        assert not outcome.failures, outcome.failures

    if seed is not None:
        one_sequence = hypothesis_seed(seed)(one_sequence)
    try:
        one_sequence()
    except AssertionError:
        pass        # the failures are in `total`
    return total


def _valid(sequence: list[list]) -> list[list]:
    """Drop stops when no thread is alive."""
    alive, kept = 0, []
    for action in sequence:
        if action[0] == "stop":
            if alive == 0:
                continue
            alive -= 1
        elif action[0] == "start":
            alive += 1
        kept.append(action)
    return kept
