"""The release matrix: which upstream revision of QSBR each CPython release ships.

A *release profile* is named by the range of CPython releases that ship one revision of
``Python/qsbr.c`` and ``Include/internal/pycore_qsbr.h``.  Its *line* (``"3.13"`` or ``"3.14"``)
is the API it has: ``deferred_advance`` and the ``deferrals`` counter (3.13.0-3.13.5), or
``shared_next``, ``should_process`` and the memory-aware bookkeeping (3.13.6+ and 3.14).  The
oracle, the facts and the adapter protocol work per line; the layout and the C port's build
(``QSBR_PROFILE``, reference_c/include/qsbr_profile.h) work per release profile.

``--profile 3.13`` and ``--profile 3.14`` are aliases of 3.13.3-3.13.5 and 3.14.4+, and
``--profile auto`` picks the profile of the running interpreter's version.

Evidence: "tarball" rows were checked by ``qsbr-conformance upstream`` against the release's own
sources (zero differences); "PR" rows rest on the merge date of the PR against the release
dates (PEP 719 for 3.13, PEP 745 for 3.14), with no tarball of that range checked here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class ReleaseProfile:
    name: str                 # the release range, e.g. "3.13.6-3.14.3"
    line: str                 # the API line: "3.13" or "3.14"
    c_profile: int            # QSBR_PROFILE of reference_c
    first: tuple[int, int, int]
    last: tuple[int, int, int] | None      # None: open-ended
    also: tuple[tuple[tuple[int, int, int], tuple[int, int, int] | None], ...]
    index_after_unlock: bool  # _Py_qsbr_reserve computes the index after unlocking (gh-129732)
    aligned_array: bool       # the 64-byte aligned array inside array_raw (gh-144438)
    summary: str
    evidence: tuple[str, ...]

    def covers(self, version: tuple[int, int, int]) -> bool:
        ranges = ((self.first, self.last),) + self.also
        return any(lo <= version and (hi is None or version <= hi) for lo, hi in ranges)


PR = "https://github.com/python/cpython/pull/"

RELEASE_PROFILES: tuple[ReleaseProfile, ...] = (
    ReleaseProfile(
        "3.13.0-3.13.2", "3.13", 31300, (3, 13, 0), (3, 13, 2), (),
        index_after_unlock=True, aligned_array=False,
        summary="deferrals; _Py_qsbr_reserve computes the slot index after unlocking the "
                "mutex (the gh-129732 race)",
        evidence=(f"PR: gh-129732 fixed by {PR}129738, 3.13 backport {PR}129747 merged "
                  "2025-02-06, after 3.13.2 (2025-02-04), so first in 3.13.3 (2025-04-08); "
                  "the pre-fix _Py_qsbr_reserve is reconstructed from the PR's description (the "
                  "read of shared->array moved under the lock), not checked against a 3.13.0-"
                  "3.13.2 tarball or the PR's diff",)),
    ReleaseProfile(
        "3.13.3-3.13.5", "3.13", 31303, (3, 13, 3), (3, 13, 5), (),
        index_after_unlock=False, aligned_array=False,
        summary="deferrals (_Py_qsbr_deferred_advance, QSBR_DEFERRED_LIMIT 10); index "
                "computed under the mutex",
        evidence=("tarball: Python-3.13.5.tar.xz",
                  f"PR: {PR}129747 (gh-129732, 3.13.3+)",
                  f"PR: GH-133136's 3.13 backport {PR}136480 (merged 2025-07) replaces the "
                  "deferrals in 3.13.6 (2025-08-06)")),
    ReleaseProfile(
        "3.13.6-3.14.3", "3.14", 31306, (3, 13, 6), (3, 13, 999), (((3, 14, 0), (3, 14, 3)),),
        index_after_unlock=False, aligned_array=False,
        summary="memory-aware batching (_Py_qsbr_shared_next, should_process, "
                "deferred_count/memory/page_memory); the array allocated and freed directly "
                "(48-byte _qsbr_shared)",
        evidence=("tarball: Python-3.13.15.tar.xz",
                  f"PR: GH-133136 {PR}135473 (main, 2025-06, before 3.14.0) and its 3.13 "
                  f"backport {PR}136480 (3.13.6+)",
                  f"PR: gh-144438's 3.14 backport {PR}144923 merged 2026-02-17, after 3.14.3 "
                  "(2026-02-03): 3.14.0-3.14.3 lack the aligned array (inferred from dates; "
                  "no 3.14.0-3.14.3 tarball checked here)")),
    ReleaseProfile(
        "3.14.4+", "3.14", 31404, (3, 14, 4), (3, 14, 999), (),
        index_after_unlock=False, aligned_array=True,
        summary="as 3.13.6-3.14.3, with the array aligned to 64 bytes inside array_raw "
                "(56-byte _qsbr_shared)",
        evidence=("tarball: Python-3.14.7.tar.xz",
                  f"PR: gh-144438 {PR}144554 (main, 2026-02-06), 3.14 backport {PR}144923 "
                  "(2026-02-17), so first in 3.14.4 (inferred from dates)")),
)

ALIASES = {"3.13": "3.13.3-3.13.5", "3.14": "3.14.4+"}
BY_NAME = {p.name: p for p in RELEASE_PROFILES}
BY_C_PROFILE = {p.c_profile: p for p in RELEASE_PROFILES}
BY_C_PROFILE.update({313: BY_NAME[ALIASES["3.13"]], 314: BY_NAME[ALIASES["3.14"]]})
#: Every value --profile accepts.
CHOICES = (*ALIASES, *BY_NAME, "auto")


class UnknownRelease(ValueError):
    pass


def for_version(version: tuple[int, ...]) -> ReleaseProfile:
    """The profile of a CPython version (major, minor, micro)."""
    key = (version[0], version[1], version[2])
    for profile in RELEASE_PROFILES:
        if profile.covers(key):
            return profile
    raise UnknownRelease(
        f"CPython {'.'.join(map(str, key))} has no QSBR profile in the release matrix "
        f"(free-threaded QSBR exists in 3.13.0-3.14.x: {', '.join(BY_NAME)})")


def resolve(name: str) -> ReleaseProfile:
    """A release profile from a --profile value: a range name, an alias, or "auto"."""
    if name == "auto":
        return for_version(sys.version_info[:3])
    name = ALIASES.get(name, name)
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownRelease(f"unknown profile {name!r}; expected one of "
                             f"{', '.join(CHOICES)}") from None


def build_folder(name: str) -> str:
    """reference_c's build folder and ``make PROFILE=`` value of a profile name: 313 and 314
    for the two aliases' ranges, the QSBR_PROFILE number for the others (31300, 31306)."""
    c_profile = resolve(name).c_profile
    return {31303: "313", 31404: "314"}.get(c_profile, str(c_profile))


def line_of(name: str) -> str:
    """The API line of a profile name (a line, an alias or a range)."""
    if name in ("3.13", "3.14"):
        return name
    return resolve(name).line


def matrix_text() -> str:
    """The release matrix as plain text (for --help and the docs)."""
    rows = []
    for p in RELEASE_PROFILES:
        alias = [a for a, target in ALIASES.items() if target == p.name]
        rows.append(f"  {p.name:<14} QSBR_PROFILE={p.c_profile}"
                    f"{' (alias ' + alias[0] + ')' if alias else ''}: {p.summary}")
    return "\n".join(rows)
