"""The race probes are derived from the protocol's concurrency table (issue 33): the table in
code says what docs/adapter-protocol.md says; every pair it allows is probed, from the start
states that matter; the races of tests/race_mutant_adapters.py are each killed by a default
probe run, and the honest ports pass.  All bounded by counts: the stepped rounds force each
interleaving, so none of this depends on the scheduler or the build.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import race_mutant_adapters

from conformance.checks import race_table, races

#: The stepped race probes hold a thread between two shared accesses with sys.settrace's
#: opcode events; on the free-threaded builds (3.13t, 3.14t) they do not yet force the
#: interleavings these tests require (seen under tox py314t: rounds with no preemption), so
#: the tests run on the GIL build, where CI runs tests/concurrency (tools/test).
pytestmark = pytest.mark.requires("gil")


DOC = Path(__file__).resolve().parents[2] / "docs" / "adapter-protocol.md"


def _doc_table() -> dict[str, set[str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in ("any time", "per thread state", "alone"):
            rows[cells[0]] = set(re.findall(r"`([a-z_]+)`", cells[1]))
    return rows


def test_the_table_in_code_is_the_documents():
    rows = _doc_table()
    assert rows == {"any time": set(race_table.ANY_TIME),
                    "per thread state": set(race_table.PER_THREAD_STATE),
                    "alone": set(race_table.ALONE)}


def test_pairs_are_every_allowed_pair():
    for profile in ("3.13", "3.14"):
        ops = race_table.operations(profile)
        pairs = race_table.pairs(profile)
        assert len(pairs) == len(set(pairs)) == len(ops) * (len(ops) + 1) // 2
        assert ("new_thread_state", "poll") in pairs and ("poll", "goal_reached") in pairs
        assert not any("fini" in p or "after_fork" in p or "snapshot" in p for p in pairs)
    assert ("shared_next", "advance") not in race_table.pairs("3.13")
    assert not race_table.may_overlap("fini", "advance")
    assert not race_table.may_overlap("snapshot", "reserve")


@pytest.mark.parametrize("name", sorted(race_mutant_adapters.RACY))
def test_each_new_race_is_killed_by_the_default_probes(name):
    facts, kind = race_mutant_adapters.RACY[name]
    impl = getattr(race_mutant_adapters, name)("3.13")
    with races.switching(races.FORCED_SWITCH_INTERVAL):
        result = races.race_probes(impl, races.POINTS)
    assert result.errors, (name, result.stats)
    assert set(result.errors) & facts, result.errors
    detail = next(iter(result.errors.values()))[0]
    assert "no order of them run one at a time gives that" in detail
    probe = detail.split("'")[1]            # the probe that failed: it runs that operation
    assert kind in probe.split(" | ") or kind in probe, detail


@pytest.mark.parametrize("name, probe", [
    # the issue's own: a quiescent state between the compare and the reload of a later,
    # smaller seq makes the minimum forget an earlier slot's seq
    ("scan_reloads_seq", "quiescent_state | poll"),
    # the check and its store on one line: forced at instruction granularity
    ("rd_seq_check_then_store", "poll | quiescent_state; poll"),
    ("scan_reads_wr_last", "poll | attach | advance"),
    ("thread_cached_size", "poll | goal_reached"),
    ("thread_cached_rd_seq", "advance | goal_reached"),
    ("thread_table_copied", "new_thread_state | delete_thread_state"),
])
def test_the_probe_made_for_each_race_kills_it(name, probe):
    impl = getattr(race_mutant_adapters, name)("3.13")
    with races.switching(races.FORCED_SWITCH_INTERVAL):
        result = races.race_probes(impl, races.POINTS, only=[probe])
    assert result.errors, (name, probe, result.stats)


@pytest.mark.parametrize("name", race_mutant_adapters.HONEST)
def test_honest_ports_pass_every_probe(name):
    impl = getattr(race_mutant_adapters, name)("3.14")
    with races.switching(races.FORCED_SWITCH_INTERVAL):
        result = races.race_probes(impl, races.POINTS)
    assert result.errors == {}, result.errors
    covered, missing = races.coverage("3.14", result.by_kind)
    assert missing == [] and len(covered) == len(race_table.pairs("3.14"))
    assert result.stats["escapes"] == 0 and result.escaped == []
    assert result.stats["preemptions"] > 0


def test_the_lock_one_attribute_deeper_is_found():
    interp = race_mutant_adapters.nested_lock("3.13").new_interpreter()
    assert interp.q.mutex in races.locks_of(interp)
    hidden = race_mutant_adapters.hidden_lock("3.13").new_interpreter()
    assert races.locks_of(hidden) == []
    declared = race_mutant_adapters.declared_lock("3.13").new_interpreter()
    assert races.locks_of(declared) == [declared._lock]
