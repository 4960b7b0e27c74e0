"""Addresses of the running interpreter's local (non-exported) QSBR functions.

``_Py_qsbr_advance``, ``_Py_qsbr_poll`` and ``_Py_qsbr_shared_next`` /
``_Py_qsbr_deferred_advance`` are local symbols of a free-threaded CPython build (``nm`` lists
them as ``t``; ``nm -D`` does not), so ``dlsym`` cannot find them.  They are in the ELF symbol
table (``.symtab``) of the file that holds the interpreter (the executable, or libpython when
CPython is built shared), unless it was stripped.

The load bias is measured, not guessed: it is the difference between the run-time address of an
exported function (``dlsym`` through ctypes) and its ``.symtab`` value, and a second exported
function must give the same bias; a file that is not the running binary (a rebuilt or different
interpreter) fails that check.  Reading uses pyelftools.
"""

from __future__ import annotations

import ctypes
import os
import sys

ANCHORS = ("PyLong_FromLong", "PyDict_New", "PyList_Append")


class SymbolsUnavailable(Exception):
    """The functions cannot be located soundly (the reason is the message)."""


def _candidates() -> list[str]:
    paths = [os.path.realpath(sys.executable)]
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                parts = line.split()
                if len(parts) >= 6 and "libpython" in os.path.basename(parts[5]):
                    path = os.path.realpath(parts[5])
                    if path not in paths:
                        paths.append(path)
    except OSError:
        pass
    return paths


def _exported_address(name: str) -> int:
    function = getattr(ctypes.pythonapi, name)
    return ctypes.cast(function, ctypes.c_void_p).value or 0


def find_functions(names: tuple[str, ...]) -> dict[str, int]:
    """Run-time addresses of ``names`` in this process; raises SymbolsUnavailable."""
    try:
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile
        from elftools.elf.sections import SymbolTableSection
    except ImportError as exc:
        raise SymbolsUnavailable(f"pyelftools is not installed ({exc})") from None
    wanted = set(names) | set(ANCHORS)
    reasons = []
    for path in _candidates():
        try:
            with open(path, "rb") as handle:
                elf = ELFFile(handle)
                symtab = elf.get_section_by_name(".symtab")
                if not isinstance(symtab, SymbolTableSection):
                    reasons.append(f"{path}: no .symtab (stripped)")
                    continue
                values: dict[str, int] = {}
                for symbol in symtab.iter_symbols():
                    if symbol.name in wanted and symbol["st_info"]["type"] == "STT_FUNC" \
                            and symbol["st_value"]:
                        values.setdefault(symbol.name, symbol["st_value"])
        except (OSError, ELFError) as exc:
            reasons.append(f"{path}: {exc}")
            continue
        missing = [name for name in names if name not in values]
        if missing:
            reasons.append(f"{path}: no {', '.join(missing)} in .symtab")
            continue
        biases = {anchor: _exported_address(anchor) - values[anchor]
                  for anchor in ANCHORS if anchor in values}
        if len(biases) < 2 or len(set(biases.values())) != 1:
            reasons.append(f"{path}: the exported anchors {sorted(biases)} do not agree on one "
                           "load address (not the running binary)")
            continue
        bias = next(iter(biases.values()))
        return {name: values[name] + bias for name in names}
    raise SymbolsUnavailable("; ".join(reasons) or "no interpreter binary found")
