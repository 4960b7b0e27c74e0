"""The Hypothesis settings every phase of the suite builds on.

A ``settings(...)`` call inherits whatever profile the process has loaded: Hypothesis loads its
"ci" profile by itself when a CI variable is set (``derandomize=True``, which HypoFuzz refuses
to fuzz and which turns a campaign into a replay of one fixed sequence), and a user's conftest
may load any other.  The suite's examples, steps, seed and database come from its Plan, so its
settings start from Hypothesis's own "default" profile: the same plan runs the same way under
every front end, in CI and out of it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings


def suite_settings(**changes: Any) -> settings:
    """Settings from Hypothesis's "default" profile with ``changes``, whatever profile is loaded."""
    return settings(settings.get_profile("default"), **changes)
