"""Step records: what a failing (or any) run did, in the adapter protocol's own terms.

A failure carries its whole step sequence as a list of :class:`StepRecord` (never cut to "... N
earlier steps"); the reports print each record's :meth:`StepRecord.render`, e.g.::

    t0 = new_thread_state()
    reserve() -> 7
    register(t0, 7)
    attach(t0)
    attach(t0) raises AlreadyAttachedError
    poll(t0, 3) -> False

Thread states are named ``t0``, ``t1``, ... in the order the run created them (the
implementation's own handles are whatever it returned).  The JSON report carries the records as
dictionaries (:meth:`StepRecord.to_json`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: ``result`` of a record whose call has no return value worth printing (None).
NO_RESULT = None


@dataclass(frozen=True)
class StepRecord:
    """One protocol call: ``operation(thread, *args)`` and what the implementation did.

    ``thread`` is the logical thread-state number (``t<thread>``) or None for calls on the
    interpreter; ``result`` is the implementation's return value; ``error`` the class name of
    the exception it raised (or None); ``note`` says why the call was made when the call
    belongs to a test hook (``fail_next_allocations``) or a composite action.
    """

    operation: str
    thread: int | None = None
    args: tuple[Any, ...] = ()
    result: Any = NO_RESULT
    error: str | None = None
    note: str = ""

    def call(self) -> str:
        shown = ([f"t{self.thread}"] if self.thread is not None else []) + [
            repr(a) for a in self.args]
        return f"{self.operation}({', '.join(shown)})"

    def render(self) -> str:
        if self.operation == "new_thread_state" and self.error is None:
            text = f"t{self.result} = new_thread_state()"
        elif self.error is not None:
            text = f"{self.call()} raises {self.error}"
        elif self.result is NO_RESULT:
            text = self.call()
        else:
            text = f"{self.call()} -> {self.result!r}"
        return f"{text}    # {self.note}" if self.note else text

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "thread": self.thread, "args": list(self.args),
                "result": self.result, "error": self.error, "note": self.note,
                "text": self.render()}


def render_steps(records: list[StepRecord]) -> list[str]:
    return [record.render() for record in records]
