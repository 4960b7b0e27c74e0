"""The stale-goal pair as compilers emit it: an architecture table that is checked, not argued.

``python -m conformance.checks.codegen SOURCE... [--json FILE] [--markdown FILE]`` (and
``tools/codegen-table``) takes CPython release tarballs or trees and, for each release,

1. prepares its own ``Python/qsbr.c`` and ``pycore_qsbr.h`` against the port's stand-ins
   exactly as ``qsbr-conformance upstream`` and the hazards litmus build them
   (``upstream.prepare``, ``upstream.compile_command``), and a copy with the stale-goal fence
   fix (reference_c/fixes/stale-goal-fence.patch, applied by ``hazards._apply_fix``);
2. compiles a tiny caller (``CALLER``, which ``#include``s that qsbr.c so the goal function is
   inlined as a caller inside the same file would have it): a release store of a pointer (the
   unlink, as ``list_resize`` and the dict resize do it) then the goal, once with the release's
   non-advancing goal (``_Py_qsbr_shared_next``; on 3.13.0-3.13.5 ``_Py_qsbr_deferred_advance``'s
   deferring path) and once with ``_Py_qsbr_advance``;
3. with every compiler of ``TOOLCHAINS`` that is installed (gcc, clang-14 and clang-16 for
   x86-64; Debian's cross gcc for aarch64, ppc64le and riscv64; clang-14 and clang-16 for
   aarch64 with ``-march=armv8.3-a+rcpc`` and ``-mcpu=apple-m1``), at -O2 with -g;
4. disassembles each object with that target's objdump (``-dlr``: the source line of every
   instruction), finds the unlink store (the instructions of ``_Py_atomic_store_ptr_release``)
   and the goal's load of ``wr_seq`` (of ``_Py_atomic_load_uint64_acquire``, or the RMW of
   ``_Py_atomic_add_uint64``) on every path between them, and decides from that architecture's
   memory model (``ordered``) whether the store is ordered before the load.

The stand-ins' atomics (reference_c/include/pyatomic.h) are C11 ``<stdatomic.h>`` calls; with
gcc and clang they lower through the same ``__atomic`` builtins as CPython's
``Include/cpython/pyatomic_gcc.h``.  MSVC (``pyatomic_msc.h``) is not covered.

Exit status: 0 when every installed compiler built and every pair was classified; 1 when a
build failed or a pair could not be found; 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..model.profiles import for_version
from . import upstream

CFLAGS = ("-std=c11", "-O2", "-g", "-DNDEBUG", "-D_GNU_SOURCE")
FIX = "stale-goal-fence"
#: The variants compiled: the release as shipped, the fix, and the fix's documented
#: alternative (an add-0 RMW in place of the goal's load: reference_c/fixes/).
FIXES: tuple[str | None, ...] = (None, FIX, "stale-goal-rmw")

#: The caller shape: the unlink then the goal, in one file with the release's qsbr.c.
CALLER = """\
// qsbr-conformance codegen: the unlink (a release store of the new pointer, as list_resize
// and the dict resize publish it) then the goal taken for the old block, with the release's
// own qsbr.c in the same file so that the goal function is inlined.
#include "qsbr.c"

uint64_t
codegen_nonadvancing(struct _qsbr_thread_state *qsbr, void **slot, void *new_items)
{
    _Py_atomic_store_ptr_release(slot, new_items);
#ifdef CODEGEN_DEFERRED
    return _Py_qsbr_deferred_advance(qsbr);
#else
    return _Py_qsbr_shared_next(qsbr->shared);
#endif
}

uint64_t
codegen_advancing(struct _qsbr_thread_state *qsbr, void **slot, void *new_items)
{
    _Py_atomic_store_ptr_release(slot, new_items);
    return _Py_qsbr_advance(qsbr->shared);
}
"""

#: The stand-ins' atomic functions (reference_c/include/pyatomic.h) whose instructions are
#: the pair's ends, and the fix's fence.
STORE_FN = "_Py_atomic_store_ptr_release"
LOAD_FNS = ("_Py_atomic_load_uint64_acquire", "_Py_atomic_add_uint64")
FENCE_FN = "_Py_atomic_fence_seq_cst"


class CodegenError(Exception):
    """A usage error: a missing source, a release without a goal function."""


@dataclass(frozen=True)
class Toolchain:
    name: str                      # "clang-16 aarch64 -mcpu=apple-m1"
    arch: str                      # x86-64, aarch64, ppc64le, riscv64
    cc: tuple[str, ...]            # the compiler (first candidate found on PATH) and flags
    objdump: tuple[str, ...]       # the disassembler candidates, the matching binutils first
    flags: tuple[str, ...] = ()


_X86_DUMP = ("objdump", "x86_64-linux-gnu-objdump", "llvm-objdump-16")
_A64_DUMP = ("aarch64-linux-gnu-objdump", "llvm-objdump-16")
_A64 = "--target=aarch64-linux-gnu"
TOOLCHAINS: tuple[Toolchain, ...] = (
    Toolchain("gcc", "x86-64", ("x86_64-linux-gnu-gcc",), _X86_DUMP),
    Toolchain("clang-14", "x86-64", ("clang-14",), _X86_DUMP, ("--target=x86_64-linux-gnu",)),
    Toolchain("clang-16", "x86-64", ("clang-16",), _X86_DUMP, ("--target=x86_64-linux-gnu",)),
    Toolchain("aarch64-linux-gnu-gcc", "aarch64", ("aarch64-linux-gnu-gcc",), _A64_DUMP),
    Toolchain("aarch64-linux-gnu-gcc +rcpc", "aarch64", ("aarch64-linux-gnu-gcc",), _A64_DUMP,
              ("-march=armv8.3-a+rcpc",)),
    Toolchain("clang-14 aarch64 +rcpc", "aarch64", ("clang-14",), _A64_DUMP,
              (_A64, "-march=armv8.3-a+rcpc")),
    Toolchain("clang-14 aarch64 apple-m1", "aarch64", ("clang-14",), _A64_DUMP,
              (_A64, "-mcpu=apple-m1")),
    Toolchain("clang-16 aarch64", "aarch64", ("clang-16",), _A64_DUMP, (_A64,)),
    Toolchain("clang-16 aarch64 +rcpc", "aarch64", ("clang-16",), _A64_DUMP,
              (_A64, "-march=armv8.3-a+rcpc")),
    Toolchain("clang-16 aarch64 apple-m1", "aarch64", ("clang-16",), _A64_DUMP,
              (_A64, "-mcpu=apple-m1")),
    Toolchain("powerpc64le-linux-gnu-gcc", "ppc64le", ("powerpc64le-linux-gnu-gcc",),
              ("powerpc64le-linux-gnu-objdump",)),
    Toolchain("riscv64-linux-gnu-gcc", "riscv64", ("riscv64-linux-gnu-gcc",),
              ("riscv64-linux-gnu-objdump",)),
)
ARCHES = ("x86-64", "aarch64", "ppc64le", "riscv64")


# --- disassembly -------------------------------------------------------------------------------

@dataclass
class Insn:
    address: int
    mnemonic: str
    operands: str
    source: str = ""               # the innermost function objdump -l names for it
    reloc: str = ""                # the symbol of a relocation on it (a call's target)

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {self.operands}".strip()


_FUNC = re.compile(r"^[0-9a-f]+ <([^>]+)>:$")
_SOURCE_FN = re.compile(r"^([A-Za-z_][\w.]*)\(\):$")
_INSN = re.compile(r"^\s*([0-9a-f]+):\t(.*)$")
_RELOC = re.compile(r"^\s*[0-9a-f]+: R_\w+\s+([^\s+-]+)")


def parse_objdump(text: str) -> dict[str, list[Insn]]:
    """``objdump -dlr --no-show-raw-insn`` output: function symbol -> its instructions, each
    with the function its source line belongs to (inlined functions keep their own name).
    Local labels (``.L...``, which riscv objdump prints) do not start a function."""
    functions: dict[str, list[Insn]] = {}
    current: list[Insn] | None = None
    source = ""
    for line in text.splitlines():
        match = _FUNC.match(line)
        if match:
            if not match.group(1).startswith(".L"):
                current = functions.setdefault(match.group(1), [])
            continue
        match = _SOURCE_FN.match(line)
        if match:
            source = match.group(1)
            continue
        match = _RELOC.match(line)
        if match and current:
            if not current[-1].reloc and match.group(1) != "*ABS*":
                current[-1].reloc = match.group(1)
            continue
        match = _INSN.match(line)
        if match and current is not None:
            # --no-show-raw-insn: "mnemonic<tab>operands"; a comment after "#" or "//"
            body = re.sub(r"\s+(#\s|//).*$", "", match.group(2).replace("\t", " ")).strip()
            if not body or re.fullmatch(r"([0-9a-f]{2} ?)+", body):
                continue            # a continuation of a long instruction's bytes
            parts = body.split(None, 1)
            mnemonic = parts[0]
            operands = parts[1].strip() if len(parts) > 1 else ""
            if mnemonic in ("lock", "rep", "repz", "repnz", "notrack") and operands:
                sub = operands.split(None, 1)
                mnemonic = f"{mnemonic} {sub[0]}"
                operands = sub[1] if len(sub) > 1 else ""
            current.append(Insn(int(match.group(1), 16), mnemonic, operands, source))
    return functions


# --- what each instruction does to memory ------------------------------------------------------

def _x86_mem(operand: str) -> bool:
    return "(" in operand


def writes(arch: str, insn: Insn) -> bool:
    m, ops = insn.mnemonic, insn.operands
    if arch == "x86-64":
        args = _split(ops)
        if m.startswith("lock "):
            return True
        if m.startswith(("xchg", "cmpxchg", "xadd")):
            return any(_x86_mem(a) for a in args)
        return bool(args) and m.startswith("mov") and _x86_mem(args[-1])
    if arch == "aarch64":
        return (m.startswith(("st", "swp", "cas", "ldadd", "ldclr", "ldeor", "ldset"))
                or _outline_atomic(insn))
    if arch == "ppc64le":
        return m.startswith("st")
    if arch == "riscv64":
        return m.startswith(("sd", "sw", "sh", "sb", "amo", "sc."))
    raise ValueError(arch)


def reads(arch: str, insn: Insn) -> bool:
    m, ops = insn.mnemonic, insn.operands
    if arch == "x86-64":
        args = _split(ops)
        if m.startswith("lock "):
            return True
        if m.startswith(("xchg", "cmpxchg", "xadd")):
            return any(_x86_mem(a) for a in args)
        return len(args) >= 2 and m.startswith("mov") and _x86_mem(args[0])
    if arch == "aarch64":
        return m.startswith(("ld", "swp", "cas")) or _outline_atomic(insn)
    if arch == "ppc64le":
        return m.startswith(("ld", "lw", "lh", "lb")) and m != "lwsync"
    if arch == "riscv64":
        return m.startswith(("ld", "lw", "lh", "lb", "amo", "lr.")) and m not in ("li",)
    raise ValueError(arch)


def _split(operands: str) -> list[str]:
    """AT&T operands split at the commas outside parentheses."""
    out, depth, current = [], 0, ""
    for char in operands:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        out.append(current.strip())
    return out


def _outline_atomic(insn: Insn) -> bool:
    """GCC's -moutline-atomics helper (libgcc's __aarch64_ldadd8_acq_rel ...): LSE or LL/SC."""
    return insn.mnemonic == "bl" and insn.reloc.startswith("__aarch64_")


# --- the memory models -------------------------------------------------------------------------

def _a64_acquire_rcsc(insn: Insn) -> bool:
    m = insn.mnemonic
    if _outline_atomic(insn):
        return "_acq" in insn.reloc or "_sync" in insn.reloc
    if m.startswith(("ldar", "ldaxr", "ldaxp")):
        return True
    base = re.fullmatch(r"(ldadd|ldclr|ldeor|ldset|ldsmax|ldsmin|ldumax|ldumin|swp|cas)"
                        r"(a|al)(b|h)?", m)
    return base is not None


def _riscv_fence(insn: Insn) -> tuple[str, str] | None:
    """The (predecessor, successor) sets of a fence; fence.tso is reported as ("tso", "tso")."""
    if insn.mnemonic == "fence.tso":
        return "tso", "tso"
    if insn.mnemonic != "fence":
        return None
    if not insn.operands:
        return "iorw", "iorw"
    pred, _, succ = insn.operands.replace(" ", "").partition(",")
    return pred, succ


def ordered(arch: str, store: Insn, between: list[Insn], load: Insn) -> tuple[bool, str]:
    """Whether ``arch``'s memory model orders ``store`` before ``load`` (two different
    locations) with ``between`` in program order between them; and why."""
    if arch == "x86-64":
        def full(i: Insn) -> bool:
            return (i.mnemonic == "mfence" or i.mnemonic.startswith("lock ")
                    or (i.mnemonic.startswith("xchg") and any(map(_x86_mem, _split(i.operands)))))
        if full(store):
            return True, f"x86-TSO: the store is a locked instruction ({store.text})"
        barrier = next((i for i in between if full(i)), None)
        if barrier is not None:
            return True, f"x86-TSO: {barrier.text} drains the store buffer before the load"
        if full(load):
            return True, f"x86-TSO: the load is a locked instruction ({load.text})"
        return False, ("x86-TSO: a plain store may wait in the store buffer while a later load "
                       "of another location reads memory (no mfence or locked instruction "
                       "between)")
    if arch == "aarch64":
        barrier = next((i for i in between if i.mnemonic in ("dmb", "dsb")
                        and i.operands in ("ish", "sy", "osh", "nsh")), None)
        if barrier is not None:
            return True, f"ARMv8: {barrier.text} orders every earlier access before later ones"
        release = store.mnemonic.startswith(("stlr", "stlur")) or (
            re.fullmatch(r"(swp|cas|ldadd|ldset|ldclr|ldeor)(l|al)(b|h)?", store.mnemonic)
            is not None)
        if release and _a64_acquire_rcsc(load):
            return True, (f"ARMv8 (RCsc): a store-release ({store.mnemonic}) is ordered before "
                          f"a later load-acquire ({load.text.split(',')[0]})")
        if load.mnemonic.startswith(("ldapr", "ldapur")):
            return False, (f"ARMv8.3 RCpc: {load.mnemonic} may be satisfied before an earlier "
                           f"{store.mnemonic} to another location is visible")
        return False, (f"ARMv8: nothing orders {store.mnemonic} before {load.mnemonic} "
                       "(no dmb ish, and not a store-release then an RCsc load-acquire)")
    if arch == "ppc64le":
        barrier = next((i for i in between if i.mnemonic in ("sync", "hwsync", "msync")
                        and i.operands in ("", "0")), None)
        if barrier is not None:
            return True, f"POWER: {barrier.mnemonic} (heavyweight sync) orders store before load"
        light = [i.mnemonic for i in between if i.mnemonic in ("lwsync", "isync", "eieio")]
        return False, ("POWER: only sync orders a store before a later load"
                       + (f" ({', '.join(light)} between does not)" if light else
                          "; lwsync before the store orders earlier accesses, not later loads"))
    if arch == "riscv64":
        for i in between:
            sets = _riscv_fence(i)
            if sets is None or sets[0] == "tso":
                continue
            pred, succ = sets
            if "w" in pred and ("r" in succ or ("w" in succ and writes(arch, load))):
                return True, f"RVWMO: {i.text} orders the store before the {load.mnemonic}"
        if re.search(r"\.(rl|aqrl)$", load.mnemonic):
            return True, f"RVWMO: {load.mnemonic}'s release annotation orders earlier accesses"
        if re.search(r"\.(rl|aqrl)$", store.mnemonic) and re.search(r"\.(aq|aqrl)$",
                                                                    load.mnemonic):
            return True, "RVWMO: an RCsc release then an RCsc acquire are ordered"
        tso = [i.text for i in between if i.mnemonic == "fence.tso"]
        return False, ("RVWMO: no fence w,r (or rw,rw) between the store and the load"
                       + (f"; {tso[0]} orders everything but a store before a load" if tso
                          else ""))
    raise ValueError(arch)


# --- finding the pair --------------------------------------------------------------------------

_BRANCH_TARGET = re.compile(r"\b([0-9a-f]+) <")
_UNCONDITIONAL = {"x86-64": ("jmp",), "aarch64": ("b",), "ppc64le": ("b",),
                  "riscv64": ("j",)}
_RETURN = {"x86-64": ("ret",), "aarch64": ("ret",), "ppc64le": ("blr",), "riscv64": ("ret",)}


def _is_branch(arch: str, insn: Insn) -> bool:
    m = insn.mnemonic
    if arch == "x86-64":
        return m.startswith("j")
    if arch == "aarch64":
        return m in ("b", "cbz", "cbnz", "tbz", "tbnz") or m.startswith("b.")
    if arch == "ppc64le":
        return (m.startswith("b") and m not in ("bl", "blr", "bctr", "bctrl", "blrl")
                and not m.startswith("blr"))
    if arch == "riscv64":
        return m in ("j",) or (m.startswith("b") and m not in ("bl",))
    raise ValueError(arch)


@dataclass
class Pair:
    store: Insn
    between: list[Insn]
    load: Insn


def find_pairs(arch: str, functions: dict[str, list[Insn]], symbol: str,
               load_fn: str) -> list[Pair]:
    """Every path in ``functions[symbol]`` from the unlink store (the first write made by
    ``STORE_FN``) to its return, following branches, and a call or tail jump into another
    function of the object (the goal function, where the compiler did not inline it); on
    each, the goal's load is the last read made by one of ``LOAD_FNS``, and the path is kept
    when that is ``load_fn``'s (3.13.5's deferred advance has a path through the advance)."""
    insns = functions.get(symbol, [])
    stores = [n for n, i in enumerate(insns) if i.source == STORE_FN and writes(arch, i)]
    if not stores:
        return []
    starts = {body[0].address: name for name, body in functions.items() if body}
    index = {name: {i.address: n for n, i in enumerate(body)}
             for name, body in functions.items()}
    first = insns[stores[0]]
    pairs: list[Pair] = []
    seen: set[tuple[tuple[str, int], ...]] = set()

    def callee(insn: Insn) -> str | None:
        target = _BRANCH_TARGET.search(insn.operands)
        if insn.reloc in functions:
            return insn.reloc
        if target is not None and int(target.group(1), 16) in starts:
            return starts[int(target.group(1), 16)]
        return None

    def finish(path: list[tuple[str, int]]) -> None:
        # the goal's load: the last read on the path made by one of LOAD_FNS (the address
        # computation before it may load qsbr->shared); the pair counts when it is load_fn's
        steps = [functions[f][k] for f, k in path]
        ends = [n for n, i in enumerate(steps) if i.source in LOAD_FNS and reads(arch, i)]
        if not ends or steps[ends[-1]].source != load_fn or tuple(path) in seen:
            return
        seen.add(tuple(path))
        pairs.append(Pair(first, steps[:ends[-1]], steps[ends[-1]]))

    def walk(name: str, n: int, path: list[tuple[str, int]]) -> None:
        body = functions[name]
        while n < len(body):
            insn = body[n]
            if (name, n) in path or len(path) > 400:
                return
            path = [*path, (name, n)]
            if insn.mnemonic in _RETURN[arch] or (arch == "riscv64" and insn.mnemonic == "jr"
                                                  and insn.operands == "ra"):
                finish(path)
                return
            other = callee(insn)
            if arch == "riscv64" and insn.mnemonic == "auipc" and other is not None:
                walk(other, 0, path)            # auipc+jr/jalr: a call or tail call
                return
            if _is_call(arch, insn) and not _outline_atomic(insn):
                if other is not None and other != name:
                    walk(other, 0, path)
                    return
            elif _is_branch(arch, insn):
                target = _BRANCH_TARGET.search(insn.operands)
                address = int(target.group(1), 16) if target else None
                if address is not None and address in index[name] and other in (None, name):
                    walk(name, index[name][address], path)
                elif other is not None:
                    walk(other, 0, path)        # a tail call
                    return
                if insn.mnemonic in _UNCONDITIONAL[arch]:
                    return
            n += 1
        finish(path)

    walk(symbol, stores[0] + 1, [])
    return pairs


def _is_call(arch: str, insn: Insn) -> bool:
    return insn.mnemonic in {"x86-64": ("call", "callq"), "aarch64": ("bl",),
                             "ppc64le": ("bl",), "riscv64": ("call", "jal")}[arch]


# --- running -----------------------------------------------------------------------------------

def _which(candidates: tuple[str, ...]) -> str | None:
    return next((shutil.which(c) for c in candidates if shutil.which(c)), None)


def version_line(tool: str) -> str:
    proc = subprocess.run([tool, "--version"], capture_output=True, text=True)
    return (proc.stdout.strip().splitlines() or ["(no --version output)"])[0]


@dataclass
class Row:
    release: str
    toolchain: str
    arch: str
    goal: str                      # the goal function called
    fix: str | None
    store: str = ""
    between: list[str] = field(default_factory=list)
    fence: list[str] = field(default_factory=list)     # the fix's fence instructions
    load: str = ""
    ordered: bool | None = None    # None: not classified (an error)
    paths: int = 0
    why: str = ""
    error: str = ""


def _goal(release: upstream.Release) -> tuple[str, bool]:
    """The release's non-advancing goal function, and whether it is the deferred advance."""
    if re.search(r"^_Py_qsbr_shared_next\(", release.qsbr_c, re.M):
        return "_Py_qsbr_shared_next", False
    if re.search(r"^_Py_qsbr_deferred_advance\(", release.qsbr_c, re.M):
        return "_Py_qsbr_deferred_advance", True
    raise CodegenError(f"{release.source}: qsbr.c has neither _Py_qsbr_shared_next nor "
                       "_Py_qsbr_deferred_advance")


def classify(arch: str, functions: dict[str, list[Insn]], symbol: str,
             load_fn: str = LOAD_FNS[0]) -> tuple[bool | None, Pair | None, int, str]:
    """(ordered on every path, the first unordered pair or the first pair, paths, why)."""
    pairs = find_pairs(arch, functions, symbol, load_fn)
    if not pairs:
        return None, None, 0, "the unlink store or the goal's load was not found"
    verdicts = [(ordered(arch, p.store, p.between, p.load), p) for p in pairs]
    bad = [(v, p) for v, p in verdicts if not v[0]]
    (ok, why), pair = bad[0] if bad else verdicts[0]
    return ok, pair, len(pairs), why


def run_release(source: str, port: Path, toolchains: tuple[Toolchain, ...],
                workdir: Path) -> tuple[list[Row], dict[str, str]]:
    from . import hazards  # its _apply_fix patches a release's qsbr.c as the litmus does

    try:
        release = upstream.read_release(source)
    except upstream.UpstreamError as exc:
        raise CodegenError(str(exc)) from None
    version = ".".join(map(str, release.version))
    goal, deferred = _goal(release)
    profile = for_version(release.version)
    rows: list[Row] = []
    versions: dict[str, str] = {}
    for fix in FIXES:
        folder = workdir / f"{version}-{fix or 'unfixed'}"
        folder.mkdir(parents=True, exist_ok=True)
        shim = upstream.prepare(release, folder)
        if fix is not None:
            target = hazards.Target(f"CPython {version}", version, profile, release, fix)
            error = hazards._apply_fix(port / "fixes" / f"{fix}.patch", target, folder,
                                       folder / "qsbr.c")
            if error:
                raise CodegenError(error)
        (folder / "caller.c").write_text(CALLER, encoding="utf-8")
        base = upstream.compile_command(shim, port, profile, CFLAGS)[1:]
        if deferred:
            base.append("-DCODEGEN_DEFERRED")
        for number, chain in enumerate(toolchains):
            cc, dump = _which(chain.cc), _which(chain.objdump)
            rows_here = [Row(version, chain.name, chain.arch, g, fix)
                         for g in (goal, "_Py_qsbr_advance")]
            if cc is None or dump is None:
                missing = chain.cc[0] if cc is None else chain.objdump[0]
                for row in rows_here:
                    row.error = f"not installed: {missing}"
                rows += rows_here
                continue
            versions.setdefault(Path(cc).name, version_line(cc))
            versions.setdefault(Path(dump).name, version_line(dump))
            obj = folder / f"caller-{number}.o"
            proc = subprocess.run([cc, *chain.flags, *base, "-c", str(folder / "caller.c"),
                                   "-o", str(obj)], capture_output=True, text=True)
            if proc.returncode != 0:
                for row in rows_here:
                    row.error = f"{chain.name} failed: {proc.stderr.strip()[-400:]}"
                rows += rows_here
                continue
            dumped = subprocess.run([dump, "-dlr", "--no-show-raw-insn", str(obj)],
                                    capture_output=True, text=True, check=False).stdout
            functions = parse_objdump(dumped)
            # the add-0 RMW takes the non-advancing goal's wr_seq with _Py_atomic_add_uint64
            load_fns = (LOAD_FNS[1] if fix == "stale-goal-rmw" else LOAD_FNS[0], LOAD_FNS[1])
            symbols = ("codegen_nonadvancing", "codegen_advancing")
            for row, symbol, load_fn in zip(rows_here, symbols, load_fns, strict=True):
                ok, pair, paths, why = classify(chain.arch, functions, symbol, load_fn)
                row.ordered, row.paths, row.why = ok, paths, why
                if pair is None:
                    row.error = f"{symbol}: {why}"
                    continue
                row.store, row.load = pair.store.text, pair.load.text
                row.between = [i.text for i in pair.between]
                row.fence = [i.text for i in pair.between if i.source == FENCE_FN]
            rows += rows_here
    return rows, versions


def to_json(rows: list[Row], versions: dict[str, str], argv: list[str]) -> dict[str, Any]:
    return {"command": ["python", "-m", "conformance.checks.codegen", *argv],
            "cflags": list(CFLAGS), "caller": CALLER, "versions": versions,
            "rows": [asdict(r) for r in rows]}


def _cell(items: list[str]) -> str:
    return "; ".join(f"`{i}`" for i in items) if items else "-"


def to_markdown(data: dict[str, Any]) -> str:
    command = " ".join(Path(a).name if "/" in a else a for a in data["command"])
    lines = ["# The unlink and the QSBR goal's load, as compilers emit them", "",
             "Whether each architecture's memory model orders the caller's unlink (a release "
             "store) before the goal's load of `wr_seq`, per release, compiler and fix "
             "(conformance/checks/codegen.py; docs/findings.md has the summary).", "",
             f"Generated by `{command}` (flags: `{' '.join(data['cflags'])}`; each compiler's "
             "own default target otherwise).",
             "", "| release | compiler | arch | goal | fix | unlink store | between | "
             "goal's load | ordered? |", "|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        if r["error"]:
            verdict = f"not checked: {r['error']}"
        else:
            verdict = ("**ordered**" if r["ordered"] else "**NOT ordered**") + f": {r['why']}"
        between = [b for b in r["between"] if b] if len(r["between"]) <= 6 else \
            [*r["between"][:5], f"... {len(r['between']) - 5} more"]
        lines.append(f"| {r['release']} | {r['toolchain']} | {r['arch']} | `{r['goal']}` | "
                     f"{r['fix'] or '-'} | {_cell([r['store']] if r['store'] else [])} | "
                     f"{_cell(between)} | {_cell([r['load']] if r['load'] else [])} | "
                     f"{verdict} |")
    lines += ["", "Compilers and disassemblers (`--version`, first line):", ""]
    lines += [f"- `{name}`: {line}" for name, line in sorted(data["versions"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m conformance.checks.codegen",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="CPython release tarballs or source trees")
    parser.add_argument("--arch", action="append", choices=ARCHES,
                        help="only these architectures (repeatable; default: all)")
    parser.add_argument("--toolchain", action="append", metavar="NAME",
                        choices=[t.name for t in TOOLCHAINS],
                        help="only these toolchains, by the table's compiler column "
                             "(repeatable; default: all)")
    parser.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the Markdown table")
    parser.add_argument("--port", metavar="DIR", help="the port's reference_c/")
    args = parser.parse_args(argv)
    try:
        port = upstream.port_sources(args.port)
    except upstream.UpstreamError as exc:
        print(f"codegen: {exc}", file=sys.stderr)
        return 2
    chains = tuple(t for t in TOOLCHAINS if (not args.arch or t.arch in args.arch)
                   and (not args.toolchain or t.name in args.toolchain))
    rows: list[Row] = []
    versions: dict[str, str] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="qsbr-codegen-") as scratch:
            for source in args.sources:
                more, seen = run_release(source, port, chains, Path(scratch))
                rows += more
                versions.update(seen)
    except CodegenError as exc:
        print(f"codegen: {exc}", file=sys.stderr)
        return 2
    data = to_json(rows, versions, argv)
    table = to_markdown(data)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(table, encoding="utf-8")
    if not args.json and not args.markdown:
        print(table, end="")
    failed = [r for r in rows if r.error and not r.error.startswith("not installed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
