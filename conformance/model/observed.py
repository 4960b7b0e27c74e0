"""Checks of the optional, wider snapshot fields (docs/adapter-protocol.md, "The snapshot").

An implementation that can read them reports each slot's ``freelist_next`` and whether its
``shared`` pointer is the interpreter's, and the slot array's address modulo 64.  They are
checked against the rest of the snapshot, which is itself compared with the oracle:

* an allocated slot's ``freelist_next`` is NULL, and its ``shared`` is the interpreter's
  (S-FREE-1: reserve clears the link and sets ``shared``);
* following ``freelist_next`` from the head gives exactly the freelist (S-SLOT-1);
* profile 3.14: the array is aligned to 64 bytes (S-SLOT-2).
"""

from __future__ import annotations

from typing import Any

from .adapter import UNOBSERVED


def wider_differences(snap: Any, profile: str) -> list[tuple[str, str]]:
    """(part, message) for each wider-state rule the snapshot breaks; parts as in blame."""
    found: list[tuple[str, str]] = []
    slots = getattr(snap, "slots", ())
    links = [getattr(s, "freelist_next", UNOBSERVED) for s in slots]
    for index, slot in enumerate(slots):
        if not slot.allocated:
            continue
        if links[index] not in (UNOBSERVED, None):
            found.append(("freelist_next", f"slot {index} is allocated but its freelist_next "
                                           f"is {links[index]!r}, not NULL"))
        shared = getattr(slot, "shared_is_interpreter", UNOBSERVED)
        if shared != UNOBSERVED and shared is not True:
            found.append(("shared", f"slot {index} is allocated but its shared pointer is not "
                                    "the interpreter's"))
    freelist = tuple(getattr(snap, "freelist", ()))
    if slots and UNOBSERVED not in links and freelist:
        walked: list[Any] = []
        link: Any = freelist[0]
        while isinstance(link, int) and 0 <= link < len(slots) and len(walked) <= len(slots):
            walked.append(link)
            link = links[link]
        if tuple(walked) != freelist:
            found.append(("freelist_next", f"following freelist_next from the head gives "
                                           f"{tuple(walked)}, the freelist is {freelist}"))
    mod = getattr(snap, "array_address_mod_64", UNOBSERVED)
    if profile == "3.14" and isinstance(mod, int) and mod != 0:
        found.append(("alignment", f"the 3.14 slot array is not 64-byte aligned "
                                   f"(address % 64 == {mod})"))
    return found


def observes_wider_state(snap: Any) -> bool:
    return any(getattr(s, "freelist_next", UNOBSERVED) != UNOBSERVED
               for s in getattr(snap, "slots", ()))
