"""qsbr-conformance: the fidelity suite for CPython's quiescent-state-based reclamation.

Names are imported lazily: a child process hosting an implementation (conformance.isolation)
then starts without loading Hypothesis.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "STALE": "adapter", "Implementation": "adapter", "Interpreter": "adapter",
    "SlotView": "adapter", "Snapshot": "adapter", "load_implementation": "adapter",
    "Oracle": "oracle", "oracle": "oracle", "RunResult": "runner", "run_conformance": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'conformance' has no attribute {name!r}")
