"""A thread that runs the tasks handed to it, one at a time, and hands back each result (or
the exception it raised).  The concurrency checks decide the interleaving from outside while
every operation still runs in its own OS thread, so a thread-affine implementation sees each
thread state used by one thread only."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class TaskThread:
    def __init__(self, name: str | None = None) -> None:
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            task = self.tasks.get()
            if task is None:
                return
            try:
                self.done.put((True, task()))
            except BaseException as exc:    # handed back to the caller of result()
                self.done.put((False, exc))

    def start(self, task: Callable[[], Any]) -> None:
        """Hands ``task`` over; result() waits for it."""
        self.tasks.put(task)

    def result(self) -> Any:
        """The value of the oldest task handed over and not yet collected (its exception is
        raised here)."""
        ok, value = self.done.get()
        if not ok:
            raise value
        return value

    def run(self, task: Callable[[], Any]) -> Any:
        """Runs ``task`` in this thread and waits for it."""
        self.start(task)
        return self.result()

    def close(self) -> None:
        self.tasks.put(None)
        self.thread.join()
