"""--db: an unusable database is a usage error before any check; a failure replayed from a
database says so; stored failures are keyed by what identifies the implementation, so a
rebuild of the same library under another file name replays them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis.database import DirectoryBasedExampleDatabase

from conformance.checks import runner
from conformance.checks.database import DatabaseError
from conformance.checks.plan import Plan
from conformance.drivers import target as targets
from conformance.frontends import cli

ROOT = Path(__file__).resolve().parents[2]
MUTANT = "mutant_adapters:fifo_freelist"
#: nothing listens on port 1
UNREACHABLE = "redis://127.0.0.1:1/0"


def _one_line_usage_error(capsys, status: int) -> str:
    captured = capsys.readouterr()
    assert status == 2, captured
    assert captured.out == "", captured.out          # no check ran, no report
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.mark.requires("fakeredis")      # the redis client package (the campaign extra)
def test_an_unreachable_redis_database_is_a_usage_error_of_a_run(capsys):
    line = _one_line_usage_error(capsys, cli.main(["--db", UNREACHABLE, "-q"]))
    assert UNREACHABLE in line and "cannot reach" in line, line


@pytest.mark.requires("hypofuzz")
def test_an_unreachable_redis_database_is_a_usage_error_of_a_campaign(capsys):
    line = _one_line_usage_error(capsys, cli.main(["campaign", "--db", UNREACHABLE,
                                                   "--seconds", "1", "-q"]))
    assert UNREACHABLE in line and "cannot reach" in line, line


def test_a_database_folder_that_cannot_be_made_is_a_usage_error(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    db = str(blocker / "db")
    line = _one_line_usage_error(capsys, cli.main(["--db", db, "-q"]))
    assert db in line, line


class _BreaksOnSave(DirectoryBasedExampleDatabase):
    """A database that fails when Hypothesis saves the failing example it found."""

    def save(self, key: bytes, value: bytes) -> None:
        raise OSError(28, "No space left on device")


def test_a_database_that_fails_during_the_run_is_not_a_verdict(tmp_path):
    """Hypothesis saves the failure it found; a database error there once hid that failure
    behind a MISUSE verdict and left the fact FAIL with no step sequence."""
    import mutant_adapters
    with pytest.raises(DatabaseError, match="No space left"):
        runner.run_conformance(mutant_adapters.fifo_freelist(), examples=20, seed=1,
                               explore_seconds=0, database=_BreaksOnSave(str(tmp_path)))


def _plan(db: str) -> Plan:
    return Plan(seed=1, examples=10, steps=30, explore_seconds=0, live_examples=0,
                concurrency_rounds=0,
                model_check=False, database=db)


def test_a_failure_replayed_from_the_database_says_so(tmp_path):
    from conformance.frontends import report
    db = str(tmp_path / "db")
    target = targets.resolve(MUTANT, isolate=False)
    first = runner.run(_plan(db), target)
    assert [f for f in first.failures if f.check == "differential"]
    assert not any(f.from_database for f in first.failures)
    again = runner.run(_plan(db).with_(seed=2), target)
    stored = [f for f in again.failures if f.from_database]
    assert stored and stored[0].from_database == db and stored[0].records
    assert f"replayed from the database {db}" in report.to_text(again)
    assert report.to_json(again)["failures"][again.failures.index(stored[0])][
        "from_database"] == db


def test_the_key_is_the_implementation_not_the_library_file():
    one = targets.resolve("conformance.cabi:from_env", "3.13", library="/a/libqsbr.so")
    two = targets.resolve("conformance.cabi:load", "3.13", library="/b/libqsbr-rebuilt.so")
    assert one.identity() == two.identity()
    assert one.identity() != targets.resolve("conformance.cabi:from_env", "3.14",
                                             library="/a/libqsbr.so").identity()
    assert one.identity() != targets.resolve(MUTANT, "3.13").identity()


@pytest.mark.requires("make")
@pytest.mark.requires("cc")
def test_a_rebuild_under_another_name_replays_what_was_stored(tmp_path):
    from conformance.checks import mutants
    mutants.make_mutant(ROOT / "reference_c", "FREELIST_FIFO", "lib", tmp_path / "build",
                        "313")
    built = tmp_path / "build" / "313" / "libqsbr.so"
    rebuilt = tmp_path / "libqsbr-v2.so"
    shutil.copy(built, rebuilt)
    db = str(tmp_path / "db")
    first = runner.run(_plan(db), targets.resolve("conformance.cabi:load",
                                                  library=str(built)))
    assert [f for f in first.failures if f.check == "differential"], first.failures
    again = runner.run(_plan(db).with_(seed=2),
                       targets.resolve("conformance.cabi:load", library=str(rebuilt)))
    assert [f for f in again.failures if f.from_database == db], again.failures
