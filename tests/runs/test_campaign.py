"""Campaigns (qsbr-conformance campaign): HypoFuzz workers, a shared example database, and a
normal run that replays what they found."""

from __future__ import annotations

import json

import pytest

from conformance.checks.database import (
    DatabaseError,
    machine_digest,
    open_database,
)
from conformance.checks.runner import run_conformance
from conformance.frontends import cli

BOUNDARY = "campaign_adapters:wrap_with_many_threads"

needs_hypofuzz = pytest.mark.requires("hypofuzz")
needs_fakeredis = pytest.mark.requires("fakeredis")


def _boundary():
    import campaign_adapters
    return campaign_adapters.wrap_with_many_threads("3.13")


def test_open_database_directory_and_bad_urls(tmp_path):
    from hypothesis.database import DirectoryBasedExampleDatabase

    db = open_database(str(tmp_path / "db"))
    assert isinstance(db, DirectoryBasedExampleDatabase)
    db.save(b"k", b"v")
    assert list(open_database(str(tmp_path / "db")).fetch(b"k")) == [b"v"]
    with pytest.raises(DatabaseError):
        open_database("http://example.org/db")


def test_examples_are_kept_per_implementation():
    import mutant_adapters

    from conformance.model.oracle import Oracle
    assert machine_digest(Oracle("3.13")) != machine_digest(Oracle("3.14"))
    assert machine_digest(Oracle("3.13")) != machine_digest(mutant_adapters.fifo_freelist())
    isolated = type("Isolated", (), {"name": "oracle (isolated)", "profile": "3.13"})()
    assert machine_digest(isolated) == machine_digest(Oracle("3.13"))


@needs_fakeredis
def test_redis_database_stores_and_replays_a_failure(monkeypatch):
    """--db redis://: Hypothesis' RedisExampleDatabase, here on fakeredis.  A run stores the
    failure it found; a second run replays it from the database first."""
    import fakeredis
    import mutant_adapters
    import redis
    from hypothesis.extra.redis import RedisExampleDatabase

    server = fakeredis.FakeServer()
    monkeypatch.setattr(redis.Redis, "from_url",
                        classmethod(lambda cls, url, **kw: fakeredis.FakeRedis(server=server)))
    db = open_database("redis://fuzz-db.invalid:6379/0")
    assert isinstance(db, RedisExampleDatabase)
    first = run_conformance(mutant_adapters.fifo_freelist(), examples=20, seed=1,
                            explore_seconds=0, database=db)
    random_failures = [f for f in first.failures if f.check == "differential"]
    assert random_failures, [f.check for f in first.failures]
    assert any(key.startswith(b"qsbr-conformance:") for key in
               fakeredis.FakeRedis(server=server).keys())
    from conformance.checks.campaign import replay_from_database
    again = replay_from_database(mutant_adapters.fifo_freelist(),
                                 open_database("redis://fuzz-db.invalid:6379/0"), 60)
    assert again is not None and again.facts == random_failures[0].facts
    assert again.steps == random_failures[0].steps
    # Another implementation's run does not see (nor delete) them.
    from conformance.model.oracle import Oracle
    assert replay_from_database(Oracle("3.13"), db, 60) is None
    assert replay_from_database(mutant_adapters.fifo_freelist(), db, 60) is not None


def test_the_boundary_bug_survives_a_default_run(capsys):
    """The campaign test's port: a default run (the coverage scenario, the exploration, 150
    random examples) misses its bug (for this seed; docs/campaigns.md gives the rate)."""
    assert cli.main(["--impl", BOUNDARY, "--seed", "1", "-q"]) == 0
    assert "CONFORMS" in capsys.readouterr().out


def test_the_boundary_bug_is_real():
    """The bug is there: the steps that reach it fail (the shortest sequence the campaign's
    stages need: a start near the wrap, four thread states, a reader, the wrap crossed, a
    poll)."""
    from conformance.checks import replay

    U64 = (1 << 64) - 1
    steps = [{"operation": "set_sequences", "args": [U64 - 2, U64 - 2]}]
    for t in range(4):
        steps += [{"operation": "new_thread_state", "result": t},
                  {"operation": "reserve", "result": 7 - t},
                  {"operation": "register", "thread": t, "args": [7 - t]}]
    steps.append({"operation": "attach", "thread": 3})
    steps += [{"operation": "advance"}, {"operation": "advance"},
              {"operation": "poll", "thread": 0, "args": [1]}]
    result = replay.replay_steps(_boundary(), steps)
    assert not result.passed and result.failed_at == len(steps) - 1
    assert "S-POLL-1" in result.facts
    from conformance.model.oracle import Oracle
    assert replay.replay_steps(Oracle("3.13"), steps).passed


@needs_hypofuzz
@pytest.mark.slow
def test_two_worker_campaign_finds_the_boundary_bug_and_a_run_replays_it(tmp_path, capsys):
    db = str(tmp_path / "db")
    report = tmp_path / "campaign.json"
    status = cli.main(["campaign", "--impl", BOUNDARY, "--workers", "2",
                       "--examples", str(CAMPAIGN_BUDGET), "--no-isolate", "--db", db,
                       "--json", str(report), "-q"])
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    print(out)
    assert status == 1, out
    assert data["workers"] == 2 and len(data["per_worker"]) == 2, data["per_worker"]
    assert data["examples_at_find"] <= CAMPAIGN_BUDGET
    assert data["found"] is not None and "S-POLL-1" in data["found"]["facts"], out
    # A normal run from the same database replays it (before anything new), keyed by the
    # same target, and says so.
    from conformance.checks import runner
    from conformance.checks.plan import Plan
    from conformance.drivers import target as targets
    result = runner.run(Plan(seed=1, database=db, live_examples=0, concurrency_rounds=0),
                        targets.resolve(BOUNDARY, "3.13", isolate=False))
    replayed = [f for f in result.failures if f.from_database == db]
    assert replayed and replayed[0].facts == tuple(data["found"]["facts"]), result.failures
    # (That the bug survives a default run without the database is
    # test_the_boundary_bug_survives_a_default_run.)


#: Examples (all workers together) the campaign may run before it finds the bug: found after
#: 294, 955 and 2422 in three campaigns (docs/campaigns.md); the campaign stops on this count.
CAMPAIGN_BUDGET = 10000


def test_the_suite_ignores_the_hypothesis_profile_a_ci_variable_loads():
    # Hypothesis loads its "ci" profile (derandomize=True) when CI is set; HypoFuzz refuses
    # such a test, and a plan's settings must not change with the environment.
    from hypothesis import settings

    from conformance.checks.campaign_target import machine_settings
    from conformance.checks.hsettings import suite_settings

    previous = getattr(settings, "_current_profile", None) or "default"
    settings.load_profile("ci")
    try:
        assert settings().derandomize     # what a bare settings() would inherit
        campaign = machine_settings(7, None)
        assert not campaign.derandomize and campaign.stateful_step_count == 7
        assert not suite_settings(max_examples=3).derandomize
        assert suite_settings(max_examples=3).max_examples == 3
    finally:
        settings.load_profile(previous)


def test_entries_that_no_longer_replay_are_nothing_to_replay(tmp_path):
    # Hypothesis raises unittest.SkipTest when a reuse-only run executes nothing; that must not
    # escape into a run (it would skip the test or the command that called it).
    from conformance.checks.campaign import database_key, replay_from_database
    from conformance.reference import reference_port

    impl = reference_port("3.13")
    db = open_database(str(tmp_path / "db"))
    db.save(database_key(impl), b"\xff\xfe not a stored run of this machine")
    assert replay_from_database(impl, db, 20) is None
