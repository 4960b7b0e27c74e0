"""Implementations that crash or hang are reported, not fatal; the C ABI loader conforms."""

import subprocess
from pathlib import Path

import pytest
from requires import requires

from conformance import load_implementation, run_conformance
from conformance.drivers import cabi
from conformance.drivers.isolation import IsolatedImplementation
from conformance.frontends import cli

REFERENCE_C = Path(__file__).resolve().parents[2] / "reference_c"


@pytest.mark.parametrize("adapter, signature", [
    ("crashing_adapters:segfault", "killed by SIGSEGV"),
    ("crashing_adapters:abort_on_fini", "killed by SIGABRT"),
    ("crashing_adapters:hang", "did not answer within"),
])
@pytest.mark.slow
def test_crash_or_hang_is_a_clear_failure(adapter, signature, capsys):
    status = cli.main(["--impl", adapter, "--examples", "25", "--seed", "1",
                       "--explore-states", "500", "--step-timeout", "2", "-q"])
    out, err = capsys.readouterr()
    assert status == 1
    assert signature in out
    # the step sequence that led there: the coverage scenario's, or Hypothesis' shrunk one
    assert "shrunk sequence:" in out or "sequence (the fixed coverage scenario" in out
    assert "DOES NOT CONFORM" in out.splitlines()[-1]
    assert "Traceback" not in out + err


def test_isolated_oracle_conforms():
    impl = IsolatedImplementation("conformance.oracle:oracle", profile="3.14")
    try:
        assert impl.profile == "3.14" and "(isolated)" in impl.name
        assert run_conformance(impl, examples=40, seed=2, explore_states=500).conforms
    finally:
        impl.close()


def test_unloadable_adapter_is_a_usage_error(capsys):
    assert cli.main(["--impl", "no_such_module:make", "--isolate"]) == 2
    assert "cannot load" in capsys.readouterr().err


@pytest.fixture(scope="module")
def reference_libraries():
    requires("toolchain")
    subprocess.run(["make", "-C", str(REFERENCE_C), "-s", "all"], check=True,
                   capture_output=True, timeout=300)
    return {p: REFERENCE_C / "build" / p.replace(".", "") / "libqsbr.so"
            for p in ("3.13", "3.14")}


@pytest.mark.parametrize("profile", ["3.13", "3.14"])
def test_c_abi_library_conforms(reference_libraries, profile, monkeypatch):
    monkeypatch.setenv("QSBR_LIBRARY", str(reference_libraries[profile]))
    impl = load_implementation("conformance.cabi:from_env")
    assert impl.profile == profile
    result = run_conformance(impl, examples=100, seed=4, explore_states=500)
    assert result.conforms, [f.message for f in result.failures]
    assert result.fact_status("S-SLOT-2") == "pass"


def test_c_abi_rejects_a_library_without_the_abi(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QSBR_LIBRARY", "libc.so.6")
    assert cli.main(["--impl", "conformance.cabi:from_env", "--no-isolate"]) == 2
    out, err = capsys.readouterr()
    *before, last = err.splitlines()
    assert last.startswith("qsbr-conformance: error: cannot load conformance.cabi:from_env "
                           "(library libc.so.6): libc.so.6 does not export the QSBR C ABI: "
                           "missing "), err
    assert "qsbr_api_advance" in last and out == "", (out, err)
    # (a "loading ..." line comes first when loading took over a second: a busy machine)
    assert all(line.startswith("qsbr-conformance: loading ") for line in before), err


def test_adapter_written_from_the_docs_conforms(monkeypatch, capsys):
    # docs/examples/minimal_adapter.py: a QSBR and its adapter written from the two docs pages
    # alone (no oracle code), run isolated the way a user would.
    monkeypatch.syspath_prepend(str(REFERENCE_C.parent / "docs" / "examples"))
    assert cli.main(["--impl", "minimal_adapter:make", "--examples", "40", "--seed", "3",
                     "--explore-states", "500", "-q"]) == 0
    assert "CONFORMS: TinyQsbr" in capsys.readouterr().out


@pytest.mark.parametrize("profile", ["3.13", "3.14"])
def test_c_abi_snapshot_reads_the_array_through_the_layout(reference_libraries, profile):
    """The C ABI adapter reads the slot array itself (qsbr_api_shared_address + layout):
    freelist_next, shared, the array's alignment; a conforming library shows no difference."""
    from conformance.checks.exhaustive import explore
    from conformance.model.adapter import UNOBSERVED
    from conformance.model.observed import wider_differences

    impl = cabi.load(str(reference_libraries[profile]))
    interp = impl.new_interpreter()
    try:
        handles = [interp.new_thread_state() for _ in range(2)]
        for h in handles:
            interp.register(h, interp.reserve())
        snap = interp.snapshot()
        assert snap.slots[7].freelist_next is None and snap.slots[7].shared_is_interpreter
        assert snap.slots[5].freelist_next == 4 and snap.freelist[:2] == (5, 4)
        assert snap.array_address_mod_64 != UNOBSERVED
        if profile == "3.14":
            assert snap.array_address_mod_64 == 0
        assert wider_differences(snap, profile) == []
    finally:
        interp.close()
    assert explore(impl, depth=2, seconds=300).failure is None


def test_a_call_cut_by_ctrl_c_stops_the_child_instead_of_hanging(monkeypatch):
    # Ctrl-C landing between reading a reply's length and its body used to leave the pipe's
    # framing broken: the next call (the machine's teardown) then read part of a body as a
    # length and waited for ever.  A cut call must stop the child and fail every later call.
    from conformance.drivers import isolation
    from conformance.drivers.isolation import IsolatedImplementation
    from conformance.model import errors

    impl = IsolatedImplementation("conformance.oracle:oracle")
    try:
        interp = impl.new_interpreter()
        child = impl._child
        assert child is not None

        def cut(stream):
            stream.read(4)              # the reply's length only
            raise KeyboardInterrupt
        monkeypatch.setattr(isolation, "_read", cut)
        with pytest.raises(KeyboardInterrupt):
            interp.snapshot()
        monkeypatch.undo()
        assert child.proc.poll() is not None            # stopped, not left half-read
        with pytest.raises(errors.ImplementationCrashedError, match="interrupted"):
            interp.snapshot()
        with pytest.raises(errors.ImplementationCrashedError, match="interrupted"):
            impl.new_interpreter()                      # and no new child is started
    finally:
        impl.close()
