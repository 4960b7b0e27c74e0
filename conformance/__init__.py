"""qsbr-conformance: the fidelity suite for CPython's quiescent-state-based reclamation.

The package is grouped by responsibility:

- ``conformance.model``: what CPython's QSBR is (facts, the oracle, errors, the adapter
  protocol, the expected layout) and the ledger that records what was checked;
- ``conformance.checks``: the ways of checking an implementation (differential, live, the
  Python-threads torture, the mutant catalog);
- ``conformance.drivers``: how the suite reaches an implementation (in process, in an isolated
  child process, through the C ABI);
- ``conformance.frontends``: the command line, the reports and the pytest plugin;
- ``conformance.sources`` (below them all, importing nothing of the package): where the
  reference port's C sources are (a checkout's reference_c/ or the installed package's copy),
  where to build them, and their hash.

``conformance.adapter``, ``conformance.errors``, ``conformance.oracle`` and ``conformance.cabi``
remain importable under those public names.  Names are imported lazily: a child process hosting
an implementation (conformance.drivers.isolation) then starts without loading Hypothesis.
"""

from importlib import import_module

_EXPORTS = {
    "STALE": "model.adapter", "Implementation": "model.adapter", "Interpreter": "model.adapter",
    "SlotView": "model.adapter", "Snapshot": "model.adapter",
    "load_implementation": "model.adapter",
    "Oracle": "model.oracle", "oracle": "model.oracle",
    "RunResult": "checks.runner", "run_conformance": "checks.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:     # not typing.Any: every child process imports this
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'conformance' has no attribute {name!r}")
