"""Fidelity against the live interpreter: the real CPython QSBR state versus the oracle.

A driver (conformance.live_driver) runs in a fresh free-threaded interpreter, performs actions
that CPython maps onto QSBR (a thread starting reserves and registers a slot, a thread ending
unregisters it, os.fork() runs after_fork in the child, a subinterpreter gets its own QSBR
state) and reports what conformance._live_probe reads after each one.  The oracle predicts
the same: every thread's slot, the array size and the freelist order.  The sequence rules are
checked on the live state too: wr_seq odd, detached threads at 0, rd_seq not past the probing
(attached) thread's seq.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import sysconfig
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..model.layout import layout_differences
from ..model.oracle import OracleInterpreter, qsbr_leq

#: The facts a live run checks (reported in the conformance report's live section).
LIVE_FACTS = ("S-SEQ-2", "S-SLOT-2", "S-SLOT-3", "S-FREE-1", "S-FREE-2", "S-FREE-3",
              "S-RES-1", "S-REG-1", "S-UNREG-1", "S-FORK-1", "S-POLL-2")


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

    def merge(self, other: LiveResult) -> None:
        self.version, self.profile = other.version or self.version, other.profile or self.profile
        self.actions += other.actions
        self.runs += other.runs
        self.checks.update(other.checks)
        self.failures.extend(other.failures)


def run_driver(actions: list[list], timeout: float = 120) -> list[dict]:
    """Run the actions in a fresh interpreter; one record per action (plus the initial one)."""
    with tempfile.TemporaryDirectory() as scratch:
        # Outside the source tree: the installed package (with its probe) is what runs.
        proc = subprocess.run([sys.executable, "-m", "conformance.checks.live_driver"],
                              input=json.dumps(actions), capture_output=True, text=True,
                              timeout=timeout, cwd=scratch)
    if proc.returncode != 0:
        raise RuntimeError(f"live driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


class _Model:
    """The oracle, fed with what CPython does for each action."""

    def __init__(self, profile: str, main_ident: int) -> None:
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


def check_actions(actions: list[list]) -> LiveResult:
    """Run one action sequence live and compare every step with the oracle."""
    records = run_driver(actions)
    initial = records[0]
    result = LiveResult(version=initial["version"], profile=initial["profile"],
                        actions=len(actions), runs=1)
    model = _Model(initial["profile"], initial["main_thread_id"])

    diffs = layout_differences(initial["profile"], initial["layout"])
    result.checks["S-SLOT-2"] += 1
    result.failures.extend(f"layout: {d}" for d in diffs)

    previous_threads: list[int] = []
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
        elif kind == "subinterp" and record["sub"] is not None:
            # A new interpreter starts from a fresh QSBR state: its thread gets slot 7 of 8.
            fresh = _Model(initial["profile"], 0)
            diff = _differences({**_observed(record["sub"]), "owners": None},
                                {**fresh.view(), "owners": None})
            result.checks.update(_compared(fresh.oracle.applied))
            result.failures.extend(f"{where}, in the subinterpreter: {d}" for d in diff)
        result.checks.update(_compared(model.oracle.applied))
        diff = _differences(_observed(record["snapshot"]), model.view())
        result.failures.extend(f"{where}: {d}" for d in diff)
        _sequence_checks(record["snapshot"], result, where)
        previous_threads = record["threads"]
    return result


#: A fixed scenario: growth past 8, 16 and 32, releases in mixed order, fork, subinterpreter.
_START: list[list[Any]] = [["start"]]
SCENARIO: list[list[Any]] = (
    _START * 10 + [["stop", 3], ["stop", 0], ["start"], ["fork"]]
    + _START * 28 + [["stop", 7], ["stop", 20], ["stop", 1], ["fork"], ["subinterp"]]
    + _START * 3 + [["stop", 2]] * 5
)


def live_check(examples: int = 10, seed: int | None = None) -> LiveResult:
    """The fixed scenario plus `examples` random action sequences (Hypothesis)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    total = check_actions([a for a in SCENARIO
                           if a[0] != "subinterp" or subinterpreters_available()])
    kinds: list[st.SearchStrategy[list[Any]]] = (
        [st.just(["start"])] * 3 + [st.integers(0, 63).map(lambda k: ["stop", k])] * 2)
    kinds.append(st.just(["fork"]))
    if subinterpreters_available():
        kinds.append(st.just(["subinterp"]))
    actions = st.lists(st.one_of(*kinds), min_size=5, max_size=40).map(_valid)

    @settings(max_examples=examples, deadline=None, database=None,
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
