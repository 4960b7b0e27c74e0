import pytest
from redis_server import redis_db, redis_url  # noqa: F401
from requires import requires
from seeds import pytest_runtest_makereport, record_seed, seed  # noqa: F401

from conformance.model.oracle import Oracle
from conformance.reference import reference_port

PROFILES = ("3.13", "3.14")


@pytest.fixture(params=PROFILES)
def profile(request):
    return request.param


@pytest.fixture(params=["oracle", "bridge"])
def implementation(request, profile):
    """Both implementations of the adapter protocol that the project ships."""
    if request.param == "oracle":
        return Oracle(profile)
    return reference_port(profile)


@pytest.fixture
def interp(implementation):
    interpreter = implementation.new_interpreter()
    yield interpreter
    interpreter.fail_next_allocations(0)
    interpreter.close()


def pytest_runtest_setup(item):
    """``@pytest.mark.requires(WHAT, ...)``: tests/requires.py decides (skip, or fail under CI)."""
    for mark in item.iter_markers(name="requires"):
        requires(*mark.args)
