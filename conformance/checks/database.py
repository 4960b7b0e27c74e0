"""Hypothesis example databases shared by campaigns and runs (``--db URL``).

* a directory path (``--db DIR``): Hypothesis' DirectoryBasedExampleDatabase, for the workers of
  one machine (or a shared file system);
* ``redis://host:port/N``: Hypothesis' own RedisExampleDatabase (the ``redis`` client package,
  ``pip install 'qsbr-conformance[campaign]'``), for workers on several machines.

What a campaign's worker finds (shrunk) is stored under the differential machine's key for
the implementation (:func:`machine_digest`), where a normal run with the same ``--db`` replays
it first (Hypothesis' reuse phase) before it generates anything new.
"""

from __future__ import annotations

from typing import Any

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

#: Key prefix of the examples in a Redis database (Hypothesis' default is "hypothesis-example:").
REDIS_PREFIX = b"qsbr-conformance:"


class DatabaseError(ValueError):
    """A --db URL that names no database this suite can open (the message says why)."""


def open_database(url: str) -> ExampleDatabase:
    """The example database ``url`` names: a directory path, or ``redis://host:port/N``."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError:
            raise DatabaseError(f"--db {url}: a Redis database needs the redis package "
                                "(pip install 'qsbr-conformance[campaign]')") from None
        client = redis.Redis.from_url(url)
        return RedisExampleDatabase(client, key_prefix=REDIS_PREFIX)
    if "://" in url:
        raise DatabaseError(f"--db {url}: give a directory or a redis:// URL")
    return DirectoryBasedExampleDatabase(url)


def machine_digest(impl: Any) -> bytes:
    """What tells one implementation's examples from another's in a shared database.

    Hypothesis keys a state machine's examples by the machine class; every implementation's
    differential machine has the same class body, so without this a run of the reference port
    would replay (and, as they pass for it, delete) what a campaign found for a port.  The key
    is the implementation's name (without the " (isolated)" of a child process) and profile."""
    name = str(getattr(impl, "name", "")).removesuffix(" (isolated)")
    release = getattr(impl, "release", None) or ""
    return f"qsbr-conformance|{name}|{impl.profile}|{release}".encode()


def set_machine_key(machine: Any, impl: Any) -> None:
    """Make ``machine`` (a class from conformance.checks.differential.make_machine) store its
    examples under ``impl``'s key (see :func:`machine_digest`)."""
    machine._hypothesis_internal_add_digest = machine_digest(impl)
