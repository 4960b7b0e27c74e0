"""qsbr-conformance: the fidelity suite for CPython's quiescent-state-based reclamation."""

from .adapter import STALE, Implementation, Interpreter, SlotView, Snapshot, load_implementation
from .oracle import Oracle, oracle
from .runner import RunResult, run_conformance

__all__ = ["STALE", "Implementation", "Interpreter", "Oracle", "RunResult", "SlotView",
           "Snapshot", "load_implementation", "oracle", "run_conformance"]
