"""Hypothesis example databases shared by campaigns and runs (``--db URL``).

* a directory path (``--db DIR``): Hypothesis' DirectoryBasedExampleDatabase, for the workers of
  one machine (or a shared file system);
* ``redis://host:port/N``: Hypothesis' own RedisExampleDatabase (the ``redis`` client package,
  ``pip install 'qsbr-conformance[campaign]'``), for workers on several machines.

:func:`open_database` reaches the database before any check runs (a Redis server is pinged
with a short timeout, a folder is created and written to): an unreachable or unwritable
database is a usage error (:class:`DatabaseError`), never a verdict about the implementation.

What a campaign's worker finds (shrunk) is stored under the differential machine's key for
the target (:func:`machine_digest` of ``Target.identity()``), where a normal run with the same
``--db`` replays it first (Hypothesis' reuse phase) before it generates anything new.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

#: Key prefix of the examples in a Redis database (Hypothesis' default is "hypothesis-example:").
REDIS_PREFIX = b"qsbr-conformance:"
#: Seconds a Redis server has to accept the connection and to answer.
REDIS_TIMEOUT = 3.0


class DatabaseError(ValueError):
    """A --db that names no database this suite can use (the message says why): a usage
    error."""


def open_database(url: str) -> ExampleDatabase:
    """The example database ``url`` names (a directory path, or ``redis://host:port/N``),
    reached once: DatabaseError, in seconds, when it cannot be used."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return _redis(url)
    if "://" in url:
        raise DatabaseError(f"--db {url}: give a directory or a redis:// URL")
    try:
        os.makedirs(url, exist_ok=True)
        with tempfile.TemporaryFile(dir=url):
            pass
    except OSError as exc:
        raise DatabaseError(f"--db {url}: cannot use the folder as an example database: "
                            f"{exc.strerror or exc}") from None
    return DirectoryBasedExampleDatabase(url)


def _redis(url: str) -> ExampleDatabase:
    try:
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError:
        raise DatabaseError(f"--db {url}: a Redis database needs the redis package "
                            "(pip install 'qsbr-conformance[campaign]')") from None
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT,
                                      socket_timeout=REDIS_TIMEOUT)
        client.ping()
    except (redis.RedisError, ValueError, OSError) as exc:
        raise DatabaseError(f"--db {url}: cannot reach the Redis database: "
                            f"{type(exc).__name__}: {exc}") from None
    return RedisExampleDatabase(client, key_prefix=REDIS_PREFIX)


def identity_of(impl: Any) -> str:
    """An identity for an implementation opened without a target (run_conformance alone):
    its name (without the " (isolated)" of a child process), line and release."""
    name = str(getattr(impl, "name", "")).removesuffix(" (isolated)")
    release = getattr(impl, "release", None) or ""
    return f"impl|{name}|line={impl.profile}|release={release}"


def machine_digest(identity: str | Any) -> bytes:
    """What tells one implementation's examples from another's in a shared database.

    Hypothesis keys a state machine's examples by the machine class; every implementation's
    differential machine has the same class body, so without this a run of the reference port
    would replay (and, as they pass for it, delete) what a campaign found for a port.  The key
    is the target's identity (conformance.drivers.target.Target.identity: kind, spec, API line,
    release, and a C ABI library's reported version, never its file name, so that a rebuild
    of the same implementation replays what was stored for it; docs/campaigns.md), or for an
    implementation object without a target, :func:`identity_of` it."""
    if not isinstance(identity, str):
        identity = identity_of(identity)
    return f"qsbr-conformance|{identity}".encode()


def set_machine_key(machine: Any, identity: str | Any) -> None:
    """Make ``machine`` (a class from conformance.checks.differential.make_machine) store its
    examples under the key of ``identity`` (see :func:`machine_digest`)."""
    machine._hypothesis_internal_add_digest = machine_digest(identity)
