"""A real Redis server for the tests of the campaign's shared database.

``redis_url`` (a session fixture, tests/conftest.py imports it) is ``QSBR_REDIS_URL`` when set
(.ci/run starts a redis-server on a free loopback port and exports it), else the URL of a
``redis-server`` this module starts for the session on a free port of 127.0.0.1, with no
persistence, and stops by its PID at the end (``requires("redis-server")``: skipped locally,
a failure under CI, when there is neither).  ``redis_db`` gives each test its own database
number of that server, emptied before the test, so that tests (and xdist workers) that share
one server do not see each other's examples.

fakeredis stays for unit tests of the key layout only; everything that runs a campaign or a
run against ``--db redis://`` uses this.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from requires import requires

#: Database numbers a test may take (Redis has 16 by default; 0 is left to whoever else uses
#: the server).
_NUMBERS = range(1, 16)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(url: str) -> bool:
    import redis
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.exceptions.ConnectionError:
        return False


def start(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server on a free port of 127.0.0.1 with no persistence (its files in
    ``folder``), once it answers PING; raises RuntimeError when it does not start."""
    binary = shutil.which("redis-server")
    assert binary is not None
    for _ in range(5):          # another process may take the free port first
        port = _free_port()
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--daemonize", "no",
                                 "--dir", str(folder)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        url = f"redis://127.0.0.1:{port}/0"
        # Wait on the condition, bounded by a count of tries of the server, not by a clock:
        # each try is a PING (a second's socket timeout when it does not answer).
        for _ in range(600):
            if proc.poll() is not None:
                break
            if _ping(url):
                return proc, url
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    raise RuntimeError("redis-server did not start on a free port of 127.0.0.1")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """The URL of a real Redis server (see the module's text)."""
    requires("redis-server")
    given = os.environ.get("QSBR_REDIS_URL")
    if given:
        if not _ping(given):
            pytest.fail(f"QSBR_REDIS_URL={given}: no Redis server answers there")
        yield given
        return
    proc, url = start(tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_db(redis_url, worker_id) -> Iterator[str]:
    """A URL of the server with a database number of this test's own, emptied first."""
    import redis
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    index = 0 if worker_id == "master" else int(worker_id.removeprefix("gw"))
    if workers and int(workers) > len(_NUMBERS):
        pytest.fail(f"{workers} xdist workers share {len(_NUMBERS)} Redis databases")
    number = _NUMBERS[index % len(_NUMBERS)]
    url = urlsplit(redis_url)._replace(path=f"/{number}").geturl()
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
