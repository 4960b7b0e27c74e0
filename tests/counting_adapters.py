"""An adapter that counts how often its factory is called (in a file named by
$QSBR_TEST_FACTORY_LOG): the pytest plugin must run the suite once per session."""

from __future__ import annotations

import os

from conformance.model.oracle import Oracle


def counted(profile: str = "3.13") -> Oracle:
    with open(os.environ["QSBR_TEST_FACTORY_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{os.getpid()}\n")
    return Oracle(profile)
