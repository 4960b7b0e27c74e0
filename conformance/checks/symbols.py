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


def find_functions(names: tuple[str, ...],
                   known: dict[str, dict[str, int]] | None = None) -> dict[str, int]:
    """Run-time addresses of ``names`` in this process; raises SymbolsUnavailable.

    ``known`` is :func:`symtab_values` of another process of the same interpreter: the
    ``.symtab`` values it read, per file.  They spare reading the ELF files again (pyelftools
    alone imports some ninety modules, each costly on 3.13t); the load bias is still measured
    here and checked on two anchors, so values from another binary are refused as before.
    """
    reasons: list[str] = []
    for path, values in (known or {}).items():
        checked = _from_values(path, names, values, reasons)
        if checked is not None:
            return checked
    return _from_values_of_files(names, reasons)


def symtab_values(names: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """The ``.symtab`` values of those of ``names`` it has and the anchors, from the first
    interpreter file of this process that passes the anchor check ({} where none does), for
    :func:`find_functions` in another process of the same interpreter."""
    try:
        import elftools.elf.elffile  # noqa: F401
    except ImportError:
        return {}
    found = _scan_files(names, (), [])
    return {found[0]: found[1]} if found is not None else {}


def _from_values(path: str, names: tuple[str, ...], values: dict[str, int],
                 reasons: list[str]) -> dict[str, int] | None:
    missing = [name for name in names if name not in values]
    if missing:
        reasons.append(f"{path}: no {', '.join(missing)} in .symtab")
        return None
    biases = {anchor: _exported_address(anchor) - values[anchor]
              for anchor in ANCHORS if anchor in values}
    if len(biases) < 2 or len(set(biases.values())) != 1:
        reasons.append(f"{path}: the exported anchors {sorted(biases)} do not agree on one "
                       "load address (not the running binary)")
        return None
    bias = next(iter(biases.values()))
    return {name: values[name] + bias for name in names}


def _read_symtab(path: str, wanted: set[str], reasons: list[str]) -> dict[str, int] | None:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection
    try:
        with open(path, "rb") as handle:
            elf = ELFFile(handle)
            symtab = elf.get_section_by_name(".symtab")
            if not isinstance(symtab, SymbolTableSection):
                reasons.append(f"{path}: no .symtab (stripped)")
                return None
            values: dict[str, int] = {}
            for symbol in symtab.iter_symbols():
                if symbol.name in wanted and symbol["st_info"]["type"] == "STT_FUNC" \
                        and symbol["st_value"]:
                    values.setdefault(symbol.name, symbol["st_value"])
            return values
    except (OSError, ELFError) as exc:
        reasons.append(f"{path}: {exc}")
        return None


def _from_values_of_files(names: tuple[str, ...], reasons: list[str]) -> dict[str, int]:
    try:
        import elftools.elf.elffile  # noqa: F401
    except ImportError as exc:
        raise SymbolsUnavailable(f"pyelftools is not installed ({exc})") from None
    found = _scan_files(names, names, reasons)
    if found is None:
        raise SymbolsUnavailable("; ".join(reasons) or "no interpreter binary found")
    return found[2]


def _scan_files(names: tuple[str, ...], required: tuple[str, ...], reasons: list[str]
                ) -> tuple[str, dict[str, int], dict[str, int]] | None:
    """The first interpreter file whose ``.symtab`` has ``required`` and passes the anchor
    check: (its path, the values read of ``names`` and the anchors, the addresses of
    ``required``)."""
    for path in _candidates():
        values = _read_symtab(path, set(names) | set(ANCHORS), reasons)
        if values is None:
            continue
        addresses = _from_values(path, required, values, reasons)
        if addresses is not None:
            return path, values, addresses
    return None
