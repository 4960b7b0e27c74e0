"""Campaigns (qsbr-conformance campaign): HypoFuzz workers, a shared example database, and a
normal run that replays what they found."""

from __future__ import annotations

import json
from pathlib import Path

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
def test_redis_keys_carry_the_suites_prefix(monkeypatch):
    """The key layout alone, on fakeredis: what the suite stores in a shared Redis is under
    its own prefix (the database tests below run on a real redis-server)."""
    import fakeredis
    import redis
    from hypothesis.extra.redis import RedisExampleDatabase

    from conformance.checks.database import REDIS_PREFIX

    server = fakeredis.FakeServer()
    monkeypatch.setattr(redis.Redis, "from_url",
                        classmethod(lambda cls, url, **kw: fakeredis.FakeRedis(server=server)))
    db = open_database("redis://fuzz-db.invalid:6379/0")
    assert isinstance(db, RedisExampleDatabase)
    db.save(b"k", b"v")
    keys = fakeredis.FakeRedis(server=server).keys()
    assert keys and all(key.startswith(REDIS_PREFIX) for key in keys), keys


def test_redis_database_stores_and_replays_a_failure(redis_db):
    """--db redis:// on a real redis-server (tests/redis_server.py): a run stores the failure
    it found; a second run replays it from the database first."""
    import mutant_adapters
    from hypothesis.extra.redis import RedisExampleDatabase

    from conformance.checks.campaign import replay_from_database

    db = open_database(redis_db)
    assert isinstance(db, RedisExampleDatabase)
    first = run_conformance(mutant_adapters.fifo_freelist(), examples=20, seed=1,
                            explore_seconds=0, database=db)
    random_failures = [f for f in first.failures if f.check == "differential"]
    assert random_failures, [f.check for f in first.failures]
    again = replay_from_database(mutant_adapters.fifo_freelist(), open_database(redis_db), 60)
    assert again is not None and again.facts == random_failures[0].facts
    assert again.steps == random_failures[0].steps
    # Another implementation's run does not see (nor delete) them.
    from conformance.model.oracle import Oracle
    assert replay_from_database(Oracle("3.13"), db, 60) is None
    assert replay_from_database(mutant_adapters.fifo_freelist(), db, 60) is not None


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


def _campaign(folder: Path, redis_db: str, *options: str) -> tuple[int, dict]:
    """``qsbr-conformance campaign`` as its own process in ``folder`` (a machine of its own),
    on the shared Redis database."""
    import os
    import sys

    import watched
    tests = Path(__file__).resolve().parents[1]
    folder.mkdir()
    report = folder / "campaign.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tests), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = watched.run([sys.executable, "-m", "conformance", "campaign", "--no-isolate",
                        "--db", redis_db, "--json", str(report), "-q", *options],
                       cwd=folder, env=env)
    assert report.is_file(), proc.stdout + proc.stderr
    print(proc.stdout)
    return proc.returncode, json.loads(report.read_text())


@needs_hypofuzz
@pytest.mark.slow
def test_two_machines_share_what_they_find_through_a_real_redis(redis_db, tmp_path):
    """Two machines, simulated: two campaigns, each its own process in its own folder, on one
    real redis-server (tests/redis_server.py).  Machine a finds a bug and stores it on the
    server; machine b's campaign reports the same facts, from a sequence no longer than the one
    the server holds.  (One worker each: a fast find, so that the test is a
    test of the sharing; the two-worker campaign of a hard bug is the test below.)"""
    import redis

    impl = "mutant_adapters:fifo_freelist"
    status, first = _campaign(tmp_path / "machine-a", redis_db, "--impl", impl,
                              "--workers", "1", "--examples", "3000")
    assert status == 1 and first["found"] is not None, first
    assert "S-FREE-3" in first["found"]["facts"]
    assert redis.Redis.from_url(redis_db).dbsize() > 0      # machine a stored it there
    status, second = _campaign(tmp_path / "machine-b", redis_db, "--impl", impl,
                               "--workers", "1", "--examples", "20")
    assert status == 1 and second["found"] is not None, second
    assert second["found"]["facts"] == first["found"]["facts"]
    # Machine b starts from the server's example and may shrink it further (HypoFuzz stores
    # the smaller one): never a longer one than machine a stored.
    assert len(second["found"]["steps"]) <= len(first["found"]["steps"])
    # (A run's replay of what a database holds, and its "replayed from the database" label,
    # is tests/runs/test_database_errors.py's: here the coverage scenario, which runs first,
    # already catches this mutant.)


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
    # (That a default run without the database misses it is a measurement, not a test: any
    # improvement of the default run would break such a test.  docs/campaigns.md has it.)


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

