"""S-SLOT-2: the struct layout of each profile, as measured on x86-64 Linux from the installed
headers of CPython 3.13.5t (3.13.3-3.13.5, alias 3.13), 3.13.15t (3.13.6-3.14.3) and 3.14.7t
(3.14.4+, alias 3.14).  3.13.0-3.13.2 has 3.13.5's layout (gh-129732 changed no struct).

Keys: the two API lines ("3.13", "3.14": their aliases' layouts) and every release profile."""

from __future__ import annotations

_COMMON = {
    "sizeof(struct _qsbr_pad)": 64,
    "offsetof(struct _qsbr_thread_state, seq)": 0,
    "offsetof(struct _qsbr_thread_state, shared)": 8,
    "offsetof(struct _qsbr_thread_state, tstate)": 16,
    "offsetof(struct _qsbr_shared, wr_seq)": 0,
    "offsetof(struct _qsbr_shared, rd_seq)": 8,
    "offsetof(struct _qsbr_shared, array)": 16,
}

EXPECTED_LAYOUT: dict[str, dict[str, int]] = {
    "3.13": {
        **_COMMON,
        "sizeof(struct _qsbr_thread_state)": 40,
        "sizeof(struct _qsbr_shared)": 48,
        "offsetof(struct _qsbr_thread_state, deferrals)": 24,
        "offsetof(struct _qsbr_thread_state, allocated)": 28,
        "offsetof(struct _qsbr_thread_state, freelist_next)": 32,
        "offsetof(struct _qsbr_shared, size)": 24,
        "offsetof(struct _qsbr_shared, mutex)": 32,
        "offsetof(struct _qsbr_shared, freelist)": 40,
    },
    "3.14": {
        **_COMMON,
        "sizeof(struct _qsbr_thread_state)": 64,
        "sizeof(struct _qsbr_shared)": 56,
        "offsetof(struct _qsbr_thread_state, deferred_count)": 24,
        "offsetof(struct _qsbr_thread_state, deferred_memory)": 32,
        "offsetof(struct _qsbr_thread_state, deferred_page_memory)": 40,
        "offsetof(struct _qsbr_thread_state, should_process)": 48,
        "offsetof(struct _qsbr_thread_state, allocated)": 49,
        "offsetof(struct _qsbr_thread_state, freelist_next)": 56,
        "offsetof(struct _qsbr_shared, array_raw)": 24,
        "offsetof(struct _qsbr_shared, size)": 32,
        "offsetof(struct _qsbr_shared, mutex)": 40,
        "offsetof(struct _qsbr_shared, freelist)": 48,
    },
}


_NO_ARRAY_RAW = {name: value for name, value in EXPECTED_LAYOUT["3.14"].items()
                 if "array_raw" not in name}
_NO_ARRAY_RAW.update({
    "sizeof(struct _qsbr_shared)": 48,
    "offsetof(struct _qsbr_shared, size)": 24,
    "offsetof(struct _qsbr_shared, mutex)": 32,
    "offsetof(struct _qsbr_shared, freelist)": 40,
})
EXPECTED_LAYOUT.update({
    "3.13.0-3.13.2": EXPECTED_LAYOUT["3.13"],
    "3.13.3-3.13.5": EXPECTED_LAYOUT["3.13"],
    "3.13.6-3.14.3": _NO_ARRAY_RAW,
    "3.14.4+": EXPECTED_LAYOUT["3.14"],
})


def layout_differences(profile: str, actual: dict[str, int]) -> list[str]:
    """Every expected entry that ``actual`` lacks or gets wrong."""
    return [f"{name}: got {actual.get(name)}, expected {value}"
            for name, value in EXPECTED_LAYOUT[profile].items() if actual.get(name) != value] + [
        f"{name}: got {value}, not part of the {profile} layout"
        for name, value in actual.items()
        if name not in EXPECTED_LAYOUT[profile] and "array_raw" in name]
