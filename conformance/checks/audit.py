"""Caller audit of a CPython source tree: where memory is retired through QSBR, and in what order.

``audit_source(SOURCE)`` (SOURCE: a release tarball or an unpacked tree) lists every *site* that
retires memory through QSBR, with the *unlink* it follows (the store that makes the retired memory
unreachable), what lies between the unlink and the goal the retire takes, and a verdict.

Command line: ``python -m conformance.checks.audit SOURCE [--json PATH]`` prints the retiring
functions derived, then one entry per site; the JSON holds ``sites``, ``retiring_functions``,
``parsed_files`` and ``seconds``.  Exit status: 0 when no site is ``retire-before-unlink`` or
``unordered``, 1 when one is, 2 when the audit cannot run (libclang missing, not a CPython 3.13+
tree, a fatal parse error).  A tarball is unpacked once (``Include/``, ``Objects/``, ``Python/``,
``Modules/``, ``Parser/``) into ``~/.cache/qsbr-conformance/audit/<sha256 prefix>/``.

Each site is a dict with ``file``, ``function``, ``line``, ``retire`` (the call's text),
``retirer`` and ``chain`` (the retiring functions down to the goal API), ``goal``, ``goal_kind``
(``non-advancing`` / ``advancing``; ``goal_advances_sometimes`` when the goal function advances
on some paths only, ``other_goals`` when the goal taker takes another goal on other paths),
``flag`` (the use_qsbr-like argument's text), ``retired``, ``field`` (where the retired pointer
was loaded from), ``unlink`` and ``unlink_line`` (or None), ``between`` (a list of
``{kind, what, function, file, line, conditional}``), ``verdict``, ``note``, ``parse_errors``.

Parser
------
libclang (PyPI ``libclang``, the optional extra ``audit``).  Both candidates were tried on
3.13.5's ``Objects/listobject.c``: pycparser (on ``gcc -E`` output) stops at the first GCC
extension of the system headers (``__attribute__`` in ``<assert.h>``); with those defined away it
stops at the next (``<bits/mathcalls.h>``), and CPython's own headers need ``__typeof__``,
``_Atomic`` and the ``__atomic_*`` builtins, so it would need a hand-kept set of fake headers per
release and would lose the macro structure.  libclang parses ``dictobject.c``, ``listobject.c``,
``obmalloc.c`` (with the mimalloc sources it includes), ``codeobject.c``, ``typeobject.c``,
``object.c``, ``Python/ceval.c``, ``gc_free_threading.c`` and ``pystate.c`` in one to two
seconds each, expands CPython's macros (``FT_ATOMIC_STORE_PTR_RELEASE``, ``DECREF_KEYS``,
critical sections) into the calls they make while keeping the invocation's source position,
and resolves every call to its declaration, so the retiring functions are derived from the call
graph rather than from names.  The libclang wheel ships no compiler headers (``stddef.h``,
``stdatomic.h``): the audit uses ``$QSBR_AUDIT_CLANG_INCLUDE``, else a clang's resource folder,
else an installed ``libclang-common-*-dev``, else GCC's (on 3.14.7 GCC's headers and clang 14's
give the same sites and verdicts; the only errors are in intrinsic headers such as
``emmintrin.h``).  A fatal parse error (a header not found) is an error, never an empty audit;
errors inside a site's file are listed in its ``parse_errors``.

The translation units are compiled as the free-threaded core: ``Py_GIL_DISABLED=1``,
``Py_BUILD_CORE``, with a minimal generated ``pyconfig.h`` (x86-64 Linux sizes) and the
include paths ``Include/``, ``Include/internal/``, ``Include/internal/mimalloc/``.  Which files
are parsed is chosen by a plain text prefilter (a file that names a goal API, a retiring
function, or a macro expanding to one); everything after that is read from the AST.

Which functions retire (derived from the sources, not listed by name)
---------------------------------------------------------------------
1. **Goal takers**: a function outside ``Python/qsbr.c`` that calls a QSBR goal API
   (``_Py_qsbr_deferred_advance``, ``_Py_qsbr_shared_next``, ``_Py_qsbr_advance``) and *keeps the
   result* (the goal is stored with the memory).  ``free_delayed`` and
   ``_PyMem_mi_page_maybe_free`` are found this way; a call whose result is discarded
   (``process_delayed_frees`` advancing the sequence in a stop-the-world pause) retires nothing.
   The retired argument of a goal taker is its first pointer (or ``uintptr_t``) parameter.  A
   goal taker with several goal calls (3.13.6+: ``_Py_qsbr_advance`` when enough memory is
   deferred, else ``_Py_qsbr_shared_next``) is judged by the weakest.
2. **Wrappers**, transitively: a function W that calls a retiring function R passing, as R's
   retired argument, one of W's own parameters (through casts, pointer arithmetic, tagging and
   locals initialised from it, never through a field load), with R's flag (if any) not the
   constant false, and either
   a. passes one of its own parameters as R's flag argument (``dictkeys_decref(..., use_qsbr)``
      calling ``free_keys_object(dk, use_qsbr)``), or
   b. makes the call only under ``if (p)`` for a parameter ``p`` (``free_keys_object``,
      ``free_list_items``, ``free_values`` under ``if (use_qsbr)``, 3.14's ``decref_maybe_delay``
      under ``if (delay)``): ``p`` is W's flag, or
   c. R has no flag and W calls it on every path, tests of the pointer itself aside
      (``_PyMem_FreeDelayed``, ``_PyObject_FreeDelayed``, ``_PyObject_XDecRefDelayed``).
3. **Sites**: every other call of a retiring function, except those whose flag argument is the
   constant false (those free at once, not through QSBR).

Unlinks, what lies between, verdicts
------------------------------------
The retired argument is traced back (casts, locals) to the location it was loaded from: a field
(``mp->ma_keys``, ``self->ob_item``, ``_PyObject_ManagedDictPointer(obj)->dict``) or a pointer
(``*dictptr``).  When it is a parameter of the site's function, every parsed call of that
function is asked: if all pass the same field of one of its other arguments
(``code_extra_grow_ft(co, co->co_extra, ...)``), that field is used.  An *unlink* is a store into
the same location in the site's function: an assignment, or a call of a function that stores
through that argument (``set_keys(mp, k)``, ``_Py_atomic_store_ptr_release(&self->ob_item, ...)``,
``FT_ATOMIC_STORE_PTR_RELEASE``), found by summarising every function body, transitively, down
to the ``__atomic_*`` builtins.

*Between* lists what lies on the path from the unlink to the goal load: in the site's function
(source order between the two, marked ``conditional`` when inside a branch or loop the path need
not take; calls in another branch than the retire's are left out) and inside the retiring chain
before its goal call (``dictkeys_decref`` -> ``free_keys_object`` -> ``_PyMem_FreeDelayed`` ->
``free_delayed`` -> goal).  Each is classified: ``full-barrier`` (a seq_cst atomic
read-modify-write or fence, ``__sync_*``, or a call whose every path makes one, such as
``DECREF_KEYS``' ``_Py_atomic_add_ssize``), ``lock`` (``PyMutex_*``, critical sections,
``PyThread_*_lock``, stop-the-world; marked whether the lock's code makes a full barrier on
every path), ``maybe-barrier`` (a call that makes one on some paths only), ``seq_cst-store`` (a
seq_cst store: not a fence; C11 orders it only before later seq_cst operations, the goal loads
are acquire loads), ``opaque`` (a call whose body is in no parsed file: not inspected, listed).

Verdicts:

* ``retire-before-unlink``: the unlinks of the location on a path through the site all come
  after the retire: a reader may pass a quiescent state between the two and then load the
  retired memory, whatever the hardware.
* ``unordered``: an unlink precedes the retire and no unconditional full barrier (nor a lock whose
  code makes one on every path, nor an advancing goal) lies between it and the non-advancing
  goal load.
* ``ordered``: an unlink precedes the retire and one of those lies between.
* ``no-local-unlink``: the retired memory is not loaded from a location this function stores
  (mimalloc page frees, ``PyObject_GC_Del``, a lookup dropping its own reference): the unlink,
  if any, is elsewhere; not judged.

Limits: paths are approximated from the structure of the code (branches of ``if``/``switch``/
``?:``/``&&``/``||`` and loop bodies are conditional, a ``return``/``goto`` between two
statements separates them); aliasing is by name (two spellings of one object are two
locations); a seq_cst RMW counts as a full barrier, as the hardware makes it on x86-64 (a
LOCK-prefixed instruction) and as the Linux kernel relies on for ARM64's acquire-release RMWs,
although C11 alone does not order other locations' accesses by it; functions whose body is in no
parsed file are opaque.  A verdict says what the source shows under these rules, nothing more.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GOAL_APIS = ("_Py_qsbr_deferred_advance", "_Py_qsbr_shared_next", "_Py_qsbr_advance")
VERDICTS = ("retire-before-unlink", "unordered", "ordered", "no-local-unlink")
QSBR_IMPL = "Python/qsbr.c"
SCAN_DIRS = ("Objects", "Python", "Modules", "Parser")
#: Third-party code vendored under Modules/ and Objects/mimalloc (included by obmalloc.c).
SKIP_DIRS = ("Objects/mimalloc", "Modules/_decimal", "Modules/expat", "Modules/_hacl",
             "Modules/_blake2", "Modules/_sha3", "Modules/cjkcodecs", "Modules/_ctypes/darwin",
             "Modules/_ctypes/libffi_osx", "Modules/_xxtestfuzz", "Python/deepfreeze")
LOCK_PREFIXES = ("PyMutex_", "_PyMutex_", "_PyCriticalSection", "PyCriticalSection",
                 "PyThread_acquire_lock", "PyThread_release_lock", "_PyRWMutex_",
                 "_PyRecursiveMutex_", "_PyEval_StopTheWorld", "_PyEval_StartTheWorld")
RMW_BUILTINS = ("__atomic_fetch_", "__atomic_add_fetch", "__atomic_sub_fetch",
                "__atomic_and_fetch", "__atomic_or_fetch", "__atomic_xor_fetch",
                "__atomic_nand_fetch", "__atomic_exchange", "__atomic_compare_exchange",
                "__atomic_test_and_set", "__c11_atomic_fetch_", "__c11_atomic_exchange",
                "__c11_atomic_compare_exchange")
FENCE_BUILTINS = ("__atomic_thread_fence", "__c11_atomic_thread_fence")
STORE_BUILTINS = ("__atomic_store", "__atomic_exchange", "__atomic_compare_exchange",
                  "__c11_atomic_store", "__c11_atomic_exchange", "__c11_atomic_compare_exchange")
SEQ_CST = ("__ATOMIC_SEQ_CST", "memory_order_seq_cst", "5")
SC_STORE = ("a seq_cst store, not a fence: C11 orders it only before later seq_cst operations; "
            "on x86-64 GCC and Clang emit it as XCHG or MOV+MFENCE, full barriers")

PYCONFIG = """\
/* pyconfig.h written by qsbr-conformance's audit: enough to parse the free-threaded core on
 * x86-64 Linux (no code is compiled from it). */
#ifndef Py_PYCONFIG_H
#define Py_PYCONFIG_H
#define Py_GIL_DISABLED 1
#define SIZEOF_DOUBLE 8
#define SIZEOF_FLOAT 4
#define SIZEOF_FPOS_T 16
#define SIZEOF_INT 4
#define SIZEOF_LONG 8
#define SIZEOF_LONG_DOUBLE 16
#define SIZEOF_LONG_LONG 8
#define SIZEOF_OFF_T 8
#define SIZEOF_PID_T 4
#define SIZEOF_PTHREAD_KEY_T 4
#define SIZEOF_PTHREAD_T 8
#define SIZEOF_SHORT 2
#define SIZEOF_SIZE_T 8
#define SIZEOF_TIME_T 8
#define SIZEOF_UINTPTR_T 8
#define SIZEOF_VOID_P 8
#define SIZEOF_WCHAR_T 4
#define SIZEOF__BOOL 1
#define ALIGNOF_LONG 8
#define ALIGNOF_SIZE_T 8
#define ALIGNOF_MAX_ALIGN_T 16
#define HAVE_STDATOMIC_H 1
#define HAVE_BUILTIN_ATOMIC 1
#define HAVE_PTHREAD_H 1
#define HAVE_UNISTD_H 1
#define HAVE_SYS_TYPES_H 1
#define HAVE_SYS_STAT_H 1
#define HAVE_FCNTL_H 1
#define HAVE_STDINT_H 1
#define HAVE_INTTYPES_H 1
#define HAVE_CLOCK_GETTIME 1
#define HAVE_FORK 1
#define HAVE_DLFCN_H 1
#define HAVE_DYNAMIC_LOADING 1
#define HAVE_LONG_DOUBLE 1
#define HAVE_WCHAR_H 1
#define HAVE_SIGNAL_H 1
#define HAVE_ERRNO_H 1
#define HAVE_SYS_TIME_H 1
#define HAVE_STD_ATOMIC 1
#define WITH_MIMALLOC 1
#define WITH_PYMALLOC 1
#define WITH_DOC_STRINGS 1
#define _POSIX_THREADS 1
#define HAVE_PTHREAD_CONDATTR_SETCLOCK 1
#define PY_SUPPORT_TIER 1
#define STDC_HEADERS 1
#define _GNU_SOURCE 1
#define _FILE_OFFSET_BITS 64
#define _LARGEFILE_SOURCE 1
#define DOUBLE_IS_LITTLE_ENDIAN_IEEE754 1
#endif
"""


class AuditError(Exception):
    """The audit cannot run: a missing dependency or a source that is not a CPython tree."""


def _cindex() -> Any:
    try:
        from clang import cindex  # type: ignore[import-untyped]
    except ImportError:
        raise AuditError("the caller audit needs libclang's Python bindings: "
                         "pip install 'qsbr-conformance[audit]'") from None
    return cindex


# --- the source tree ----------------------------------------------------------------------

def _cache_dir() -> Path:
    from ..sources import cache_dir
    return cache_dir() / "audit"


def source_tree(source: Path | str) -> Path:
    """The root of an unpacked CPython tree: SOURCE itself, or the tarball unpacked (once) into
    the cache, in a folder named by the tarball's SHA-256."""
    path = Path(source)
    if path.is_dir():
        root = path
    elif path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        target = _cache_dir() / digest.hexdigest()[:24]
        done = target / ".unpacked"
        if not done.is_file():
            tmp = target.with_name(target.name + f".tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                with tarfile.open(path) as archive:
                    members = [m for m in archive.getmembers() if _wanted(m.name)
                               and (m.isfile() or m.isdir())]
                    try:
                        archive.extractall(tmp, members=members, filter="data")
                    except TypeError:  # Python < 3.11.4: no filters; members are checked
                        if any(m.name.startswith("/") or ".." in m.name.split("/")
                               for m in members):
                            raise tarfile.TarError("unsafe member names") from None
                        archive.extractall(tmp, members=members)
            except (tarfile.TarError, OSError) as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise AuditError(f"{source}: not a readable tarball ({exc})") from None
            (tmp / ".unpacked").write_text(str(path) + "\n")
            # The marker is inside before the rename, so a folder under the final name is
            # always complete; a concurrent audit that renamed first wins, ours is dropped.
            try:
                tmp.rename(target)
            except OSError:
                if not done.is_file():  # a partial folder from an older layout: replace it
                    shutil.rmtree(target, ignore_errors=True)
                    tmp.rename(target)
            shutil.rmtree(tmp, ignore_errors=True)
        tops = [p for p in target.iterdir() if p.is_dir()]
        root = tops[0] if len(tops) == 1 else target
    else:
        raise AuditError(f"{source}: no such file or directory")
    if not (root / "Include" / "internal" / "pycore_qsbr.h").is_file():
        raise AuditError(f"{source}: no Include/internal/pycore_qsbr.h "
                         "(not a CPython 3.13+ source tree)")
    return root


def _wanted(name: str) -> bool:
    parts = name.split("/", 2)
    return len(parts) >= 2 and parts[1] in ("Include",) + SCAN_DIRS


def _builtin_include() -> list[str]:
    """The compiler's builtin headers (stddef.h, stdatomic.h), which the libclang wheel does not
    ship: $QSBR_AUDIT_CLANG_INCLUDE, else a clang's resource directory, else an installed
    libclang-common, else GCC's (whose intrinsic headers clang partly rejects)."""
    explicit = os.environ.get("QSBR_AUDIT_CLANG_INCLUDE")
    if explicit:
        return [explicit]
    for clang in ("clang", *(f"clang-{v}" for v in range(25, 13, -1))):
        exe = shutil.which(clang)
        if exe:
            try:
                out = subprocess.run([exe, "-print-resource-dir"], capture_output=True,
                                     text=True, timeout=30).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                out = ""
            if out and Path(out, "include", "stddef.h").is_file():
                return [str(Path(out, "include"))]
    found = sorted(Path("/usr/lib").glob("llvm-*/lib/clang/*/include/stddef.h"),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parts[3][5:].split(".")])
    found += sorted(Path("/usr/lib/clang").glob("*/include/stddef.h"))
    if found:
        return [str(found[-1].parent)]
    gcc = shutil.which("gcc")
    if gcc:
        try:
            out = subprocess.run([gcc, "-print-file-name=include"], capture_output=True,
                                 text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and Path(out, "stddef.h").is_file():
            return [out]
    return []


# --- the parsed code ----------------------------------------------------------------------

@dataclass
class _Anc:
    cursor: Any
    index: int  # which child of ``cursor`` the path goes through


@dataclass
class _Node:
    cursor: Any
    anc: tuple[_Anc, ...]  # from the function body down to the node's parent
    start: int
    end: int


class _Fn:
    """One function definition, walked lazily."""

    def __init__(self, cursor: Any, rel: str, text: str, ck: Any) -> None:
        self.cursor = cursor
        self.ck = ck
        self.name: str = cursor.spelling
        self.usr: str = cursor.get_usr()
        self.rel = rel
        self.line: int = cursor.location.line
        self.params: list[str] = [p.spelling for p in cursor.get_arguments()]
        self.param_types: list[str] = [p.type.get_canonical().spelling
                                       for p in cursor.get_arguments()]
        self.text = text  # the function's source text (a prefilter only)
        self._nodes: list[_Node] | None = None

    @property
    def body(self) -> Any:
        for child in self.cursor.get_children():
            if child.kind == self.ck.COMPOUND_STMT:
                return child
        return None

    @property
    def nodes(self) -> list[_Node]:
        if self._nodes is None:
            nodes: list[_Node] = []
            body = self.body
            if body is not None:
                stack: list[tuple[Any, tuple[_Anc, ...]]] = [(body, ())]
                while stack:
                    cur, anc = stack.pop()
                    ext = cur.extent
                    nodes.append(_Node(cur, anc, ext.start.offset, ext.end.offset))
                    children = list(cur.get_children())
                    for i in range(len(children) - 1, -1, -1):
                        stack.append((children[i], anc + (_Anc(cur, i),)))
            nodes.sort(key=lambda n: (n.start, len(n.anc)))
            self._nodes = nodes
        return self._nodes

    def calls(self) -> list[_Node]:
        return [n for n in self.nodes if n.cursor.kind == self.ck.CALL_EXPR]


def _strip(c: Any, ck: Any) -> Any:
    while c is not None and c.kind in (ck.UNEXPOSED_EXPR, ck.PAREN_EXPR, ck.CSTYLE_CAST_EXPR):
        kids = [k for k in c.get_children() if k.kind != ck.TYPE_REF]
        if not kids:
            break
        c = kids[-1]
    return c


def _args(call: Any) -> list[Any]:
    return list(call.get_arguments())


def _tokens(c: Any) -> list[str]:
    return [t.spelling for t in c.get_tokens()]


def _unary(c: Any, kid: Any) -> str | None:
    """'&' or '*' for an address-of or dereference, told apart by the operand's type (robust
    inside macro expansions, where the operator token is not in the cursor's extent)."""
    own = c.type.get_canonical()
    sub = kid.type.get_canonical()
    if own.get_pointee().spelling and own.get_pointee().spelling == sub.spelling:
        return "&"
    if sub.get_pointee().spelling and sub.get_pointee().spelling == own.spelling:
        return "*"
    return None


def _binop(c: Any) -> str | None:
    """The operator of a BINARY_OPERATOR cursor, from the token after its left operand."""
    kids = list(c.get_children())
    if len(kids) != 2:
        return None
    lhs_end = kids[0].extent.end.offset
    rhs_start = kids[1].extent.start.offset
    if lhs_end >= rhs_start:
        return None  # inside one macro expansion: the operands' extents are not distinct
    for tok in c.get_tokens():
        off = tok.extent.start.offset
        if lhs_end <= off < rhs_start:
            return str(tok.spelling)
    return None


class _Code:
    """The function definitions of all parsed translation units, by USR."""

    def __init__(self, root: Path, ck: Any) -> None:
        self.root = root
        self.ck = ck
        self.fns: dict[str, _Fn] = {}
        self.tus: list[Any] = []  # kept alive: cursors refer into them
        self.parsed: set[str] = set()
        self.errors: list[str] = []
        self.fatal: list[str] = []
        self._texts: dict[str, bytes] = {}
        self._summ: dict[str, str] = {}
        self._stores: dict[str, set[tuple]] = {}

    def rel(self, filename: str) -> str | None:
        try:
            return str(Path(filename).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return None

    def file_bytes(self, filename: str) -> bytes:
        if filename not in self._texts:
            try:
                self._texts[filename] = Path(filename).read_bytes()
            except OSError:
                self._texts[filename] = b""
        return self._texts[filename]

    def text(self, c: Any) -> str:
        ext = c.extent
        if ext.start.file is None:
            return str(c.spelling)
        data = self.file_bytes(ext.start.file.name)
        out = data[ext.start.offset:ext.end.offset].decode("utf-8", "replace")
        return " ".join(out.split())

    def parse(self, rel: str, args: list[str], index: Any) -> None:
        if rel in self.parsed:
            return
        self.parsed.add(rel)
        path = self.root / rel
        tu = index.parse(str(path), args=args)
        self.tus.append(tu)
        for diag in tu.diagnostics:
            if diag.severity >= 4:
                where = diag.location.file.name if diag.location.file is not None else rel
                self.fatal.append(f"{where}:{diag.location.line}: {diag.spelling}")
            if diag.severity >= 3 and diag.location.file is not None:
                drel = self.rel(diag.location.file.name)
                if drel is not None:
                    self.errors.append(f"{drel}:{diag.location.line}: {diag.spelling}")
        for cur in tu.cursor.get_children():
            if cur.kind != self.ck.FUNCTION_DECL or not cur.is_definition():
                continue
            loc = cur.location
            if loc.file is None:
                continue
            frel = self.rel(loc.file.name)
            if frel is None:
                continue
            usr = cur.get_usr()
            if usr in self.fns:
                continue
            ext = cur.extent
            text = self.file_bytes(loc.file.name)[ext.start.offset:ext.end.offset]
            self.fns[usr] = _Fn(cur, frel, text.decode("utf-8", "replace"), self.ck)

    def fn_of(self, call: Any) -> _Fn | None:
        ref = call.referenced
        if ref is None:
            return None
        return self.fns.get(ref.get_usr())

    # --- summaries -------------------------------------------------------------------------

    def builtin(self, c: Any) -> str | None:
        """The name of the atomic builtin that ``c`` is (``__atomic_*``, ``__c11_atomic_*``,
        ``__sync_*``): clang shows most of them as an unexposed AtomicExpr, not a call."""
        if c.kind == self.ck.CALL_EXPR:
            name = c.spelling or ""
            return name if name.startswith(("__atomic_", "__c11_atomic_", "__sync_")) else None
        if c.kind != self.ck.UNEXPOSED_EXPR:
            return None
        ext = c.extent
        if ext.start.file is None:
            return None
        head = self.file_bytes(ext.start.file.name)[ext.start.offset:ext.start.offset + 40]
        if not head.startswith((b"__atomic_", b"__c11_atomic_", b"__sync_")):
            return None
        kids = list(c.get_children())
        if kids and kids[0].extent.start.offset == ext.start.offset:
            return None  # an implicit conversion around the builtin, not the builtin
        name = head.split(b"(")[0].strip().decode("ascii", "replace")
        return name

    def classify(self, call: Any) -> tuple[str, str] | None:
        """(kind, description) of a call that matters for ordering, else None."""
        builtin = self.builtin(call)
        if builtin is not None:
            name = builtin
            if name.startswith("__sync_") and not name.startswith("__sync_lock_release"):
                return ("full-barrier", f"{name} (full barrier)")
            words = self.text(call).replace("(", " ").replace(")", " ").replace(",", " ")
            seq_cst = any(t in SEQ_CST for t in words.split())
            if name.startswith(FENCE_BUILTINS) or name.startswith(RMW_BUILTINS):
                if seq_cst:
                    what = "seq_cst fence" if name.startswith(FENCE_BUILTINS) else "seq_cst RMW"
                    return ("full-barrier", f"{name} ({what})")
            elif name.startswith(("__atomic_store", "__c11_atomic_store")) and seq_cst:
                return ("seq_cst-store", f"{name} ({SC_STORE})")
            return None
        if call.kind != self.ck.CALL_EXPR:
            return None
        name = call.spelling or ""
        if name.startswith("__builtin"):
            return None
        fn = self.fn_of(call)
        if name.startswith(LOCK_PREFIXES):
            shown = fn is not None and self.summary(fn) == "always"
            return ("lock", f"{name} (lock operation; "
                    + ("its code makes a seq_cst RMW on every path)" if shown
                       else "no full barrier shown on every path)"))
        if fn is None:
            ref = call.referenced
            if ref is None or not name:
                return ("opaque", f"indirect call {self.text(call)[:60]}")
            return ("opaque", f"{name} (body not in the parsed sources)")
        summ = self.summary(fn)
        if summ == "always":
            return ("full-barrier", f"{name} (a seq_cst RMW or fence on every path)")
        if summ == "maybe":
            return ("maybe-barrier", f"{name} (a full barrier on some paths only)")
        if self.sc_store(fn):
            return ("seq_cst-store", f"{name} ({SC_STORE})")
        return None

    def sc_store(self, fn: _Fn) -> bool:
        """Whether fn is a seq_cst store wrapper (``_Py_atomic_store_ptr``)."""
        ck = self.ck
        exits = [n for n in fn.nodes if n.cursor.kind in (ck.RETURN_STMT, ck.GOTO_STMT)]
        for node in fn.nodes:
            if node.cursor.kind != ck.UNEXPOSED_EXPR and node.cursor.kind != ck.CALL_EXPR:
                continue
            name = self.builtin(node.cursor)
            if name is None or _conditional(node, (), ck) or any(
                    r.end <= node.start for r in exits):
                continue
            got = self.classify(node.cursor)
            if got is not None and got[0] == "seq_cst-store":
                return True
        return False

    def summary(self, fn: _Fn) -> str:
        """'always': every path through fn makes a full barrier; 'maybe': some; 'none'."""
        if fn.usr in self._summ:
            return self._summ[fn.usr]
        self._summ[fn.usr] = "none"  # provisional, for recursion
        result = "none"
        ck = self.ck
        exits = [n for n in fn.nodes if n.cursor.kind in (ck.RETURN_STMT, ck.GOTO_STMT)]
        for node in fn.nodes:
            if node.cursor.kind not in (ck.CALL_EXPR, ck.UNEXPOSED_EXPR):
                continue
            got = self.classify(node.cursor)
            if got is None or got[0] not in ("full-barrier", "maybe-barrier", "lock"):
                continue
            barrier = got[0] == "full-barrier" or (got[0] == "lock" and "its code" in got[1])
            if barrier and not _conditional(node, (), ck) and not any(
                    r.end <= node.start for r in exits):
                result = "always"
                break
            if barrier or got[0] == "maybe-barrier":
                result = "maybe"
        self._summ[fn.usr] = result
        return result

    def stores(self, fn: _Fn) -> set[tuple]:
        """What fn stores through its parameters: ('addr', i) for ``*p_i = ...`` (or an atomic
        store/exchange into p_i), ('field', i, name) for ``p_i->name = ...``."""
        if fn.usr in self._stores:
            return self._stores[fn.usr]
        self._stores[fn.usr] = set()
        out: set[tuple] = set()
        params = fn.params
        for node in fn.nodes:
            cur = node.cursor
            if cur.kind == self.ck.BINARY_OPERATOR and _binop(cur) == "=":
                lhs = _strip(next(iter(cur.get_children())), self.ck)
                loc = self.lvalue(lhs)
                if loc and loc[0] in params:
                    i = params.index(loc[0])
                    out.add(("field", i, loc[1]) if loc[1] else ("addr", i))
            elif cur.kind in (self.ck.CALL_EXPR, self.ck.UNEXPOSED_EXPR):
                for target in self.call_stores(cur):
                    if target[0] in params and target[1]:
                        out.add(("field", params.index(target[0]), target[1]))
                    elif target[0].startswith("*") and target[0][1:] in params:
                        out.add(("addr", params.index(target[0][1:])))
        self._stores[fn.usr] = out
        return out

    def lvalue(self, c: Any) -> tuple[str, str | None] | None:
        """(variable, field) for ``var->field`` / ``var.field``; (``*var``, None) for
        ``*var``; None for anything else.  A base that is not a variable
        (``_PyObject_ManagedDictPointer(obj)->dict``) is named by its source text, so two
        accesses match when they are written alike."""
        c = _strip(c, self.ck)
        if c is None:
            return None
        if c.kind == self.ck.MEMBER_REF_EXPR:
            kids = list(c.get_children())
            if kids:
                base = _strip(kids[0], self.ck)
                if base is not None and base.kind == self.ck.DECL_REF_EXPR:
                    return (base.spelling, c.spelling)
                if base is not None and base.kind == self.ck.CALL_EXPR:
                    key = self.key(base)
                    if key:
                        return (key, c.spelling)
            return None
        if c.kind == self.ck.UNARY_OPERATOR:
            kids = list(c.get_children())
            if kids and _unary(c, kids[0]) == "*":
                base = _strip(kids[0], self.ck)
                if base is not None and base.kind == self.ck.DECL_REF_EXPR:
                    return ("*" + base.spelling, None)
        return None

    def key(self, c: Any, depth: int = 0) -> str | None:
        """A structural name for a simple expression (calls, variables, fields, constants),
        the same wherever it is written, macro arguments included; None for anything else."""
        c = _strip(c, self.ck)
        if c is None or depth > 6:
            return None
        if c.kind == self.ck.DECL_REF_EXPR:
            return str(c.spelling)
        if c.kind == self.ck.MEMBER_REF_EXPR:
            kids = list(c.get_children())
            base = self.key(kids[0], depth + 1) if kids else None
            return f"{base}->{c.spelling}" if base else None
        if c.kind == self.ck.CALL_EXPR and c.spelling:
            parts = [self.key(a, depth + 1) for a in _args(c)]
            if any(p is None for p in parts):
                return None
            return f"{c.spelling}({', '.join(p for p in parts if p is not None)})"
        return None

    def addr_of(self, c: Any) -> tuple[str, str | None] | None:
        """(variable, field) for an argument ``&var->field``; (``*var``, None) for ``var``."""
        c = _strip(c, self.ck)
        if c is None:
            return None
        if c.kind == self.ck.UNARY_OPERATOR:
            kids = list(c.get_children())
            if kids and _unary(c, kids[0]) == "&":
                inner = self.lvalue(kids[0])
                if inner:
                    return inner
            return None
        if c.kind == self.ck.DECL_REF_EXPR:
            return ("*" + c.spelling, None)
        return None

    def call_stores(self, call: Any) -> list[tuple[str, str | None]]:
        """The (variable, field) locations a call stores into."""
        out: list[tuple[str, str | None]] = []
        builtin = self.builtin(call)
        if builtin is not None:
            kids = list(call.get_children()) if call.kind != self.ck.CALL_EXPR else _args(call)
            if builtin.startswith(STORE_BUILTINS) and kids:
                loc = self.addr_of(kids[0])
                if loc:
                    out.append(loc)
            return out
        if call.kind != self.ck.CALL_EXPR:
            return out
        args = _args(call)
        fn = self.fn_of(call)
        if fn is None:
            return out
        for st in self.stores(fn):
            i = st[1]
            if i >= len(args):
                continue
            if st[0] == "addr":
                loc = self.addr_of(args[i])
                if loc:
                    out.append(loc)
            else:
                base = _strip(args[i], self.ck)
                if base is not None and base.kind == self.ck.DECL_REF_EXPR:
                    out.append((base.spelling, st[2]))
        return out


_COND_KINDS = ("IF_STMT", "WHILE_STMT", "FOR_STMT", "SWITCH_STMT", "CONDITIONAL_OPERATOR",
               "BINARY_OPERATOR")


def _cond_child(anc: _Anc, ck: Any) -> bool:
    """Whether the path through ``anc`` goes into a part that is not always executed."""
    kind = anc.cursor.kind
    if kind == ck.IF_STMT:
        return anc.index >= 1
    if kind == ck.WHILE_STMT:
        return anc.index >= 1
    if kind == ck.FOR_STMT:
        n = len(list(anc.cursor.get_children()))
        return anc.index >= max(n - 2, 1)
    if kind in (ck.SWITCH_STMT, ck.CASE_STMT, ck.DEFAULT_STMT):
        return anc.index >= 1 or kind != ck.SWITCH_STMT
    if kind == ck.CONDITIONAL_OPERATOR:
        return anc.index >= 1
    if kind == ck.BINARY_OPERATOR and anc.index == 1:
        return _binop(anc.cursor) in ("&&", "||")
    return False


def _conditional(node: _Node, anchors: tuple[_Node, ...], ck: Any) -> bool:
    """Whether node is inside a branch or loop body that the path between the anchors need not
    take: a conditional part that holds neither anchor."""
    for depth, anc in enumerate(node.anc):
        if not _cond_child(anc, ck):
            continue
        inside = False
        for other in anchors:
            if (len(other.anc) > depth and other.anc[depth].cursor == anc.cursor
                    and other.anc[depth].index == anc.index):
                inside = True
        if not inside:
            return True
    return False


def _exclusive(a: _Node, b: _Node, ck: Any) -> bool:
    """Whether a and b sit in different branches of one if/switch/?: (never on one path)."""
    for depth in range(min(len(a.anc), len(b.anc))):
        x, y = a.anc[depth], b.anc[depth]
        if x.cursor != y.cursor:
            return False
        if x.index != y.index:
            kind = x.cursor.kind
            if kind in (ck.IF_STMT, ck.CONDITIONAL_OPERATOR):
                return x.index >= 1 and y.index >= 1
            if kind == ck.COMPOUND_STMT:
                parent = a.anc[depth - 1].cursor.kind if depth else None
                return parent == ck.SWITCH_STMT
            return False
    return False


# --- the audit ----------------------------------------------------------------------------

@dataclass
class _Retirer:
    fn: _Fn
    retired: int  # parameter index of the retired pointer
    flag: int | None  # parameter index of the use_qsbr-like flag
    inner: _Node  # the call in fn's body that retires (a goal API or another retirer)
    rule: str
    goals: list[_Node] = field(default_factory=list)  # a goal taker's goal calls (all paths)


@dataclass
class _Site:
    fn: _Fn
    call: _Node
    retirer: _Retirer
    info: dict[str, Any] = field(default_factory=dict)


class _Auditor:
    def __init__(self, root: Path) -> None:
        self.ck_mod = _cindex()
        self.ck = self.ck_mod.CursorKind
        self.root = root
        self.code = _Code(root, self.ck)
        self.index = self.ck_mod.Index.create()
        cfg = _cache_dir() / "pyconfig"
        cfg.mkdir(parents=True, exist_ok=True)
        if not (cfg / "pyconfig.h").is_file() or (cfg / "pyconfig.h").read_text() != PYCONFIG:
            tmp = cfg / f"pyconfig.h.{os.getpid()}"
            tmp.write_text(PYCONFIG)
            tmp.replace(cfg / "pyconfig.h")
        self.args = ["-x", "c", "-std=gnu11", "-ferror-limit=0", "-w",
                     "-DPy_BUILD_CORE", "-DPy_BUILD_CORE_BUILTIN"]
        for inc in _builtin_include():
            self.args.append(f"-isystem{inc}")
        self.args += [f"-I{cfg}", f"-I{root / 'Include'}", f"-I{root / 'Include' / 'internal'}",
                      f"-I{root / 'Include' / 'internal' / 'mimalloc'}", f"-I{root}",
                      f"-I{root / 'Python'}", f"-I{root / 'Objects'}"]
        self.retirers: dict[str, _Retirer] = {}
        self._files: dict[str, str] | None = None
        self._defines: list[tuple[str, str]] | None = None

    # files ---------------------------------------------------------------------------------

    def files(self) -> dict[str, str]:
        if self._files is None:
            files: dict[str, str] = {}
            for top in SCAN_DIRS:
                base = self.root / top
                if not base.is_dir():
                    continue
                for path in sorted(base.rglob("*.c")):
                    rel = str(path.relative_to(self.root))
                    if rel.startswith(SKIP_DIRS):
                        continue
                    try:
                        files[rel] = path.read_text(encoding="utf-8", errors="replace")
                    except OSError:
                        continue
            self._files = files
        return self._files

    def header_aliases(self, names: set[str]) -> set[str]:
        """Macros (in Include/ or in the scanned .c files) whose body names one of ``names``,
        transitively, so that a file or function using the macro is parsed and scanned too
        (``DECREF_KEYS_FT`` in dictobject.c); the AST then sees the expansion."""
        if self._defines is None:
            defines: list[tuple[str, str]] = []
            texts = list(self.files().values())
            for path in (self.root / "Include").rglob("*.h"):
                try:
                    texts.append(path.read_text(encoding="utf-8", errors="replace"))
                except OSError:
                    continue
            for text in texts:
                if "define" not in text:
                    continue
                for line in text.replace("\\\n", " ").splitlines():
                    words = line.replace("#", "# ", 1).split()
                    if len(words) >= 3 and words[0] == "#" and words[1] == "define":
                        defines.append((words[2].split("(")[0], line))
            self._defines = defines
        out: set[str] = set()
        wanted = set(names)
        while True:
            new = {macro for macro, line in self._defines
                   if macro not in out and macro not in wanted
                   and any(n in line for n in wanted | out)}
            if not new:
                return out
            out |= new

    def parse_mentioning(self, names: set[str]) -> None:
        names = set(names) | self.header_aliases(names)
        for rel, text in self.files().items():
            if rel not in self.code.parsed and any(n in text for n in names):
                self.code.parse(rel, self.args, self.index)

    # derivation ----------------------------------------------------------------------------

    def derive(self, fn: _Fn, expr: Any, before: int, depth: int = 0
               ) -> tuple[str, Any, _Node | None]:
        """Where an expression's pointer value comes from: ('param', index, None),
        ('field', (var, field), node that loads it), ('const', text, None) or
        ('other', text, None)."""
        ck = self.ck
        c = _strip(expr, ck)
        if c is None or depth > 8:
            return ("other", "", None)
        if c.kind == ck.DECL_REF_EXPR:
            ref = c.referenced
            if ref is not None and ref.kind == ck.PARM_DECL and c.spelling in fn.params:
                return ("param", fn.params.index(c.spelling), None)
            if ref is not None and ref.kind == ck.VAR_DECL:
                src = self.last_assignment(fn, c.spelling, before)
                if src is not None:
                    return self.derive(fn, src[0], src[1], depth + 1)
            return ("other", c.spelling, None)
        if c.kind in (ck.MEMBER_REF_EXPR, ck.UNARY_OPERATOR):
            loc = self.code.lvalue(c)
            if loc:
                node = next((n for n in fn.nodes if n.cursor == c), None)
                return ("field", loc, node)
            return ("other", self.code.text(c), None)
        if c.kind == ck.BINARY_OPERATOR:
            # pointer arithmetic or tagging (``ptr - offset``, ``(uintptr_t)ptr | 1``): follow
            # the pointer operand, else the operand that is not a constant
            kids = list(c.get_children())
            ptrs = [k for k in kids
                    if k.type.get_canonical().kind == self.ck_mod.TypeKind.POINTER]
            rest = [k for k in kids if _strip(k, ck) is not None
                    and _strip(k, ck).kind not in (ck.INTEGER_LITERAL, ck.CXX_UNARY_EXPR)]
            pick = ptrs or rest
            if len(pick) == 1 or (pick and ptrs):
                return self.derive(fn, pick[0], before, depth + 1)
            return ("other", self.code.text(c), None)
        if c.kind == ck.CALL_EXPR:
            # old = exchange(&obj->field, new): the load and the unlink are the call itself
            name = c.spelling or ""
            if name.startswith("_Py_atomic_exchange") or name.startswith("__atomic_exchange"):
                args = _args(c)
                loc = self.code.addr_of(args[0]) if args else None
                if loc and loc[1]:
                    node = next((n for n in fn.nodes if n.cursor == c), None)
                    return ("field", loc, node)
            return ("other", self.code.text(c), None)
        if c.kind in (ck.INTEGER_LITERAL, ck.CXX_BOOL_LITERAL_EXPR):
            return ("const", self.code.text(c), None)
        return ("other", self.code.text(c), None)

    def last_assignment(self, fn: _Fn, var: str, before: int) -> tuple[Any, int] | None:
        """The last value given to local ``var`` in source order before offset ``before``."""
        best: tuple[Any, int] | None = None
        ck = self.ck
        for node in fn.nodes:
            if node.start >= before:
                break
            cur = node.cursor
            if cur.kind == ck.VAR_DECL and cur.spelling == var:
                kids = [k for k in cur.get_children() if k.kind != ck.TYPE_REF]
                if kids:
                    best = (kids[-1], node.start)
            elif cur.kind == ck.BINARY_OPERATOR:
                kids = list(cur.get_children())
                if len(kids) == 2:
                    lhs = _strip(kids[0], ck)
                    if (lhs is not None and lhs.kind == ck.DECL_REF_EXPR
                            and lhs.spelling == var and _binop(cur) == "="):
                        best = (kids[1], node.start)
        return best

    def is_false(self, expr: Any) -> bool:
        return self.code.text(expr).replace(" ", "") in ("0", "false", "(0)", "(false)")

    def guards(self, call: _Node) -> list[Any]:
        """Conditions of the if statements whose then-branch holds the call."""
        return [a.cursor for a in call.anc if a.cursor.kind == self.ck.IF_STMT and a.index == 1]

    def cond_param(self, fn: _Fn, cond: Any) -> int | None:
        c = _strip(next(iter(cond.get_children())), self.ck)
        if c is not None and c.kind == self.ck.DECL_REF_EXPR and c.spelling in fn.params:
            return fn.params.index(c.spelling)
        return None

    def null_test_only(self, fn: _Fn, call: _Node, q: int) -> bool:
        """Whether every condition on the path to call is a test of parameter q alone."""
        for anc in call.anc:
            if _cond_child(anc, self.ck):
                if anc.cursor.kind != self.ck.IF_STMT:
                    return False
                cond = next(iter(anc.cursor.get_children()))
                refs = [n for n in cond.walk_preorder()
                        if n.kind in (self.ck.DECL_REF_EXPR, self.ck.CALL_EXPR,
                                      self.ck.MEMBER_REF_EXPR)]
                if any(r.kind != self.ck.DECL_REF_EXPR or r.spelling != fn.params[q]
                       for r in refs):
                    return False
        ck = self.ck
        return not any(n.cursor.kind in (ck.RETURN_STMT, ck.GOTO_STMT) and n.start < call.start
                       for n in fn.nodes)

    def derive_retirers(self) -> None:
        goal = set(GOAL_APIS)
        self.parse_mentioning(goal)
        for fn in list(self.code.fns.values()):
            if fn.rel == QSBR_IMPL or not any(g in fn.text for g in goal):
                continue
            kept = [node for node in fn.calls()
                    if node.cursor.spelling in goal and node.anc
                    and node.anc[-1].cursor.kind != self.ck.COMPOUND_STMT]
            if kept:
                idx = next((i for i, t in enumerate(fn.param_types)
                            if "*" in t or t in ("unsigned long", "uintptr_t")), 0)
                takes = " or ".join(sorted({n.cursor.spelling + "()" for n in kept}))
                self.retirers[fn.usr] = _Retirer(fn, idx, None, kept[0],
                                                 f"keeps the goal of {takes}", kept)
        while True:
            names = {r.fn.name for r in self.retirers.values()}
            self.parse_mentioning(names)
            added = False
            for fn in list(self.code.fns.values()):
                if fn.usr in self.retirers or fn.rel == QSBR_IMPL:
                    continue
                if not any(n in fn.text for n in names) and not self._aliases_in(fn, names):
                    continue
                for node in fn.calls():
                    found = self.as_wrapper(fn, node)
                    if found is not None:
                        self.retirers[fn.usr] = found
                        added = True
                        break
            if not added:
                break

    def _aliases_in(self, fn: _Fn, names: set[str]) -> bool:
        aliases = getattr(self, "_alias_cache", None)
        key = frozenset(names)
        if aliases is None or aliases[0] != key:
            aliases = (key, self.header_aliases(set(names)))
            self._alias_cache = aliases
        return any(a in fn.text for a in aliases[1])

    def retirer_of(self, call: Any) -> _Retirer | None:
        ref = call.referenced
        return self.retirers.get(ref.get_usr()) if ref is not None else None

    def as_wrapper(self, fn: _Fn, node: _Node) -> _Retirer | None:
        r = self.retirer_of(node.cursor)
        if r is None:
            return None
        args = _args(node.cursor)
        if r.retired >= len(args):
            return None
        if r.flag is not None and r.flag < len(args) and self.is_false(args[r.flag]):
            return None  # frees immediately, not through QSBR
        src = self.derive(fn, args[r.retired], node.start)
        if src[0] != "param":
            return None
        q = src[1]
        if r.flag is not None and r.flag < len(args):
            flag = _strip(args[r.flag], self.ck)
            if flag is not None and flag.kind == self.ck.DECL_REF_EXPR and \
                    flag.spelling in fn.params:
                return _Retirer(fn, q, fn.params.index(flag.spelling), node,
                                f"passes its {flag.spelling} as {r.fn.name}'s flag")
        for cond in self.guards(node):
            p = self.cond_param(fn, cond)
            if p is not None and p != q:
                return _Retirer(fn, q, p, node,
                                f"calls {r.fn.name} under if ({fn.params[p]})")
        if r.flag is None and self.null_test_only(fn, node, q):
            return _Retirer(fn, q, None, node, f"calls {r.fn.name} on every path")
        return None

    def check(self) -> None:
        """Refuse a result that a failed parse would make look clean."""
        if self.code.fatal:
            raise AuditError(
                f"libclang could not parse the sources ({self.code.fatal[0]}); if a compiler "
                "header is missing, set QSBR_AUDIT_CLANG_INCLUDE to a clang resource include "
                "folder (clang -print-resource-dir)/include or install libclang-common-*-dev")
        if not self.retirers:
            raise AuditError(f"{self.root}: no function outside {QSBR_IMPL} keeps a QSBR goal "
                             f"({', '.join(GOAL_APIS)}): nothing to audit")

    # sites ---------------------------------------------------------------------------------

    def sites(self) -> list[_Site]:
        out: list[_Site] = []
        seen: set[tuple[str, int, int]] = set()
        names = {r.fn.name for r in self.retirers.values()}
        for fn in self.code.fns.values():
            if fn.rel == QSBR_IMPL:
                continue
            if not any(n in fn.text for n in names) and not self._aliases_in(fn, names):
                continue
            own = self.retirers.get(fn.usr)
            for node in fn.calls():
                r = self.retirer_of(node.cursor)
                if r is None or (own is not None and own.inner.cursor == node.cursor):
                    continue
                args = _args(node.cursor)
                if r.flag is not None and r.flag < len(args) and self.is_false(args[r.flag]):
                    continue
                loc = node.cursor.location
                key = (fn.rel, loc.line, loc.column)
                if key in seen:
                    continue
                seen.add(key)
                out.append(_Site(fn, node, r))
        return out

    def chain(self, r: _Retirer) -> list[_Retirer]:
        out = [r]
        while out[-1].inner.cursor.spelling not in GOAL_APIS and len(out) < 20:
            nxt = self.retirer_of(out[-1].inner.cursor)
            if nxt is None:
                break
            out.append(nxt)
        return out

    def between(self, fn: _Fn, start: _Node | None, end: _Node) -> list[dict[str, Any]]:
        """The calls that matter on the path from ``start`` (None: the function's entry) to
        ``end`` in fn."""
        lo = start.end if start is not None else -1
        anchors = tuple(a for a in (start, end) if a is not None)
        items: list[dict[str, Any]] = []
        for node in fn.nodes:
            if node.start < lo or node.end > end.start or node.cursor.kind not in (
                    self.ck.CALL_EXPR, self.ck.UNEXPOSED_EXPR):
                continue
            if start is not None and node.start < start.end and node.cursor == start.cursor:
                continue
            if _exclusive(node, end, self.ck):
                continue  # another branch than the one that reaches ``end``
            got = self.code.classify(node.cursor)
            if got is None:
                continue
            items.append({"kind": got[0], "what": got[1], "function": fn.name,
                          "file": fn.rel, "line": node.cursor.location.line,
                          "conditional": _conditional(node, anchors, self.ck)})
        return items

    def path_blocked(self, fn: _Fn, a: _Node, b: _Node) -> bool:
        """An unconditional return/goto between a and b."""
        ck = self.ck
        return any(n.cursor.kind in (ck.RETURN_STMT, ck.GOTO_STMT) and a.end <= n.start
                   and n.end <= b.start and not _conditional(n, (a, b), ck) for n in fn.nodes)

    def field_at_callers(self, fn: _Fn, q: int) -> tuple[str, str | None] | None:
        """The field of one of fn's parameters that every parsed call of fn passes as its
        parameter q (``code_extra_grow_ft(co, co->co_extra, ...)``), named in fn's terms, or
        None when there is no call or the calls disagree."""
        found: set[tuple[str, str | None]] = set()
        for caller in self.code.fns.values():
            if fn.name not in caller.text:
                continue
            for node in caller.calls():
                ref = node.cursor.referenced
                if ref is None or ref.get_usr() != fn.usr:
                    continue
                args = _args(node.cursor)
                if q >= len(args):
                    return None
                src = self.derive(caller, args[q], node.start)
                if src[0] != "field":
                    return None
                var, fld = src[1]
                mapped = None
                for j, arg in enumerate(args):
                    base = _strip(arg, self.ck)
                    if base is not None and base.kind == self.ck.DECL_REF_EXPR and \
                            base.spelling == var.lstrip("*") and j < len(fn.params):
                        mapped = ("*" if var.startswith("*") else "") + fn.params[j]
                if mapped is None:
                    return None
                found.add((mapped, fld))
        return found.pop() if len(found) == 1 else None

    def judge(self, site: _Site) -> dict[str, Any]:
        info = self._judge(site)
        via = info.pop("_via", "")
        if via:
            info["note"] += via
        return info

    def _judge(self, site: _Site) -> dict[str, Any]:
        fn, call, r = site.fn, site.call, site.retirer
        ck = self.ck
        args = _args(call.cursor)
        chain = self.chain(r)
        # a goal taker may take different goals on different paths (3.13.6+: an advancing goal
        # when enough memory is deferred, else a non-advancing one): judge the weakest
        rank = {"none": 0, "maybe": 1, "unknown": 1, "always": 2}
        last = chain[-1]
        options = []
        for g in last.goals or [last.inner]:
            gfn = self.code.fn_of(g.cursor)
            options.append((rank[self.code.summary(gfn) if gfn else "unknown"], g))
        options.sort(key=lambda o: (o[0], o[1].start))
        chain[-1] = _Retirer(last.fn, last.retired, last.flag, options[0][1], last.rule,
                             last.goals)
        goal_call = chain[-1].inner.cursor
        goal_fn = self.code.fn_of(goal_call)
        goal_summary = self.code.summary(goal_fn) if goal_fn is not None else "unknown"
        other_goals = sorted({g.cursor.spelling for _, g in options[1:]} - {goal_call.spelling})
        goal_kind = {"always": "advancing", "maybe": "non-advancing",
                     "none": "non-advancing"}.get(goal_summary, "unknown")
        flag_text = (self.code.text(args[r.flag]) if r.flag is not None and r.flag < len(args)
                     else None)
        retired_text = self.code.text(args[r.retired]) if r.retired < len(args) else ""
        src = self.derive(fn, args[r.retired], call.start) if r.retired < len(args) else (
            "other", "", None)
        chain_items: list[dict[str, Any]] = []
        for link in chain:
            chain_items += self.between(link.fn, None, link.inner)
        info: dict[str, Any] = {
            "file": fn.rel, "function": fn.name, "line": call.cursor.location.line,
            "retire": self.code.text(call.cursor), "retirer": r.fn.name,
            "chain": [link.fn.name for link in chain] + [goal_call.spelling],
            "goal": goal_call.spelling, "goal_kind": goal_kind,
            "goal_advances_sometimes": goal_summary == "maybe",
            "other_goals": other_goals, "flag": flag_text,
            "retired": retired_text, "field": None, "unlink": None, "unlink_line": None,
            "between": [], "verdict": "no-local-unlink", "note": "",
        }
        via_callers = ""
        if src[0] == "param":
            got = self.field_at_callers(fn, int(src[1]))
            if got is not None:
                via_callers = (f"; parameter {fn.params[int(src[1])]} is {got[0]}->{got[1]} "
                               "at every call of " + fn.name)
                src = ("field", got, None)
        info["_via"] = via_callers
        if src[0] != "field":
            what = (f"parameter {fn.params[int(src[1])]}" if src[0] == "param"
                    else f"from {src[1]!s}")
            info["note"] = ("the retired pointer is not loaded from a field in this function "
                            f"({what}); the unlink, if any, is elsewhere: not judged")
            info["between"] = chain_items
            return info
        var, fld = src[1][0], src[1][1]
        info["field"] = f"{var}->{fld}" if fld else var
        load: _Node | None = src[2]
        read_at = (load.start if load is not None
                   else -1 if via_callers else call.start)
        stores: list[_Node] = []
        for node in fn.nodes:
            cur = node.cursor
            if cur.kind == ck.BINARY_OPERATOR and _binop(cur) == "=":
                lhs = next(iter(cur.get_children()))
                if self.code.lvalue(lhs) == (var, fld):
                    stores.append(node)
            elif cur.kind in (ck.CALL_EXPR, ck.UNEXPOSED_EXPR) and (
                    var, fld) in self.code.call_stores(cur):
                # a store nested in a store (the macro's call inside an assignment) counts once
                if not any(s.start <= node.start and node.end <= s.end for s in stores):
                    stores.append(node)
        on_path = [s for s in stores if not _exclusive(s, call, ck)]
        before = [s for s in on_path if s.end <= call.start and s.start >= read_at
                  and not self.path_blocked(fn, s, call)]
        if load is not None and load.cursor.kind == ck.CALL_EXPR and (
                var, fld) in self.code.call_stores(load.cursor):
            before.append(load)  # old = exchange(&field, new): the unlink is the load
        after = [s for s in on_path if s.start >= call.end and not self.path_blocked(fn, call, s)]
        if before:
            unlink = max(before, key=lambda s: s.start)
            items = self.between(fn, unlink, call)
            info["unlink"] = self.code.text(unlink.cursor)
            info["unlink_line"] = unlink.cursor.location.line
            own = self.code.classify(unlink.cursor)
            if own is not None and own[0] in ("full-barrier", "seq_cst-store"):
                items.insert(0, {"kind": own[0], "what": "the unlink itself: " + own[1],
                                 "function": fn.name, "file": fn.rel,
                                 "line": info["unlink_line"], "conditional": False})
            items += chain_items
            info["between"] = items
            ordering = [i for i in items if not i["conditional"] and (
                i["kind"] == "full-barrier" or (i["kind"] == "lock" and "its code" in i["what"]))]
            if ordering:
                info["verdict"] = "ordered"
                info["note"] = "ordered by " + "; ".join(
                    f"{i['what']} ({i['file']}:{i['line']})" for i in ordering[:3])
            elif goal_kind == "advancing":
                info["verdict"] = "ordered"
                info["note"] = f"the goal {goal_call.spelling} is advancing (a seq_cst RMW)"
            else:
                info["verdict"] = "unordered"
                opaque = [i["what"] for i in items if i["kind"] == "opaque"
                          and not i["conditional"]]
                info["note"] = (f"unlink at line {info['unlink_line']}, then the "
                                f"{goal_kind} goal {goal_call.spelling}: no full barrier found "
                                "between them on every path")
                if opaque:
                    info["note"] += "; not inspected: " + ", ".join(opaque[:4])
                if any(i["kind"] == "seq_cst-store" and not i["conditional"] for i in items):
                    info["note"] += ("; a seq_cst store lies between (see between): ordered in "
                                     "practice on x86-64, not by C11 nor on ARM64 with "
                                     "RCpc (LDAPR) acquire loads")
            return info
        if after:
            unlink = min(after, key=lambda s: s.start)
            info["unlink"] = self.code.text(unlink.cursor)
            info["unlink_line"] = unlink.cursor.location.line
            info["between"] = self.between(fn, call, unlink)
            info["verdict"] = "retire-before-unlink"
            info["note"] = (f"{info['field']} is retired (goal taken through "
                            f"{' -> '.join(info['chain'])}) at line {info['line']}, and the "
                            f"replacement is published only at line {info['unlink_line']}: a "
                            "reader passing a quiescent state between them can still load "
                            "the retired memory")
            return info
        info["between"] = chain_items
        info["note"] = (f"the retired pointer is loaded from {info['field']}, but this function "
                        "stores no replacement there on a path through the retire: not judged")
        return info


@dataclass
class AuditResult:
    """One audit: the sites, the retiring functions derived, what was parsed."""

    source: str
    sites: list[dict[str, Any]]
    retiring_functions: list[dict[str, Any]]
    parsed_files: list[str]
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "sites": self.sites,
                "retiring_functions": self.retiring_functions,
                "parsed_files": self.parsed_files, "seconds": round(self.seconds, 2)}


def audit(path: Path | str) -> AuditResult:
    """The full audit of the CPython tree or tarball at ``path`` (see the module docstring).
    Raises AuditError when libclang is missing, the source is not a CPython 3.13+ tree, or
    libclang could not parse it."""
    began = time.monotonic()
    _cindex()
    auditor = _Auditor(source_tree(path))
    auditor.derive_retirers()
    auditor.check()
    sites = [auditor.judge(site) for site in auditor.sites()]
    for site in sites:
        site["parse_errors"] = [e for e in auditor.code.errors
                                if e.startswith(site["file"] + ":")][:5]
    sites.sort(key=lambda r: (r["file"], r["line"], r["function"]))
    retirers = sorted(({"function": r.fn.name, "file": r.fn.rel, "line": r.fn.line,
                        "retired": (r.fn.params[r.retired] if r.retired < len(r.fn.params)
                                    else None),
                        "flag": r.fn.params[r.flag] if r.flag is not None else None,
                        "rule": r.rule} for r in auditor.retirers.values()),
                      key=lambda d: (d["file"], d["line"]))
    return AuditResult(str(path), sites, retirers, sorted(auditor.code.parsed),
                       time.monotonic() - began)


def audit_source(path: Path | str) -> list[dict[str, Any]]:
    """Every QSBR retire site of the CPython tree or tarball at ``path``, one dict each (keys
    in the module docstring), sorted by file and line."""
    return audit(path).sites


def retiring_functions(path: Path | str) -> list[dict[str, Any]]:
    """The retiring functions derived from the sources, with the rule that made each one."""
    return audit(path).retiring_functions


def render_text(sites: list[dict[str, Any]]) -> str:
    counts = {v: sum(1 for s in sites if s["verdict"] == v) for v in VERDICTS}
    lines = [f"QSBR retire sites: {len(sites)} ("
             + ", ".join(f"{v}: {n}" for v, n in counts.items()) + ")"]
    for s in sites:
        lines.append(f"{s['file']}:{s['line']}: {s['function']}: {s['verdict']}")
        lines.append(f"    retire: {s['retire']}  [{' -> '.join(s['chain'])}, "
                     f"{s['goal_kind']} goal]")
        if s["unlink"]:
            lines.append(f"    unlink: line {s['unlink_line']}: {s['unlink']}")
        shown = [b for b in s["between"] if b["kind"] != "opaque" and (
            s["verdict"] in ("ordered", "unordered") or not b["conditional"])]
        if shown:
            for b in shown:
                cond = " (conditional)" if b["conditional"] else ""
                lines.append(f"    between: {b['what']} in {b['function']} "
                             f"({b['file']}:{b['line']}){cond}")
        elif s["unlink"] and s["verdict"] == "retire-before-unlink":
            lines.append("    between: (the retire comes first)")
        elif s["unlink"]:
            lines.append("    between: nothing that orders")
        if s["note"]:
            lines.append(f"    note: {s['note']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.checks.audit",
        description="List the QSBR retire sites of a CPython source tree or release tarball, "
                    "with the unlink each follows and a verdict.  Exit status: 0 when no site "
                    "is flagged retire-before-unlink or unordered, 1 when one is, 2 when the "
                    "audit cannot run.")
    parser.add_argument("source", help="a CPython release tarball or source tree (3.13+)")
    parser.add_argument("--json", metavar="PATH", help="also write the sites as JSON")
    opts = parser.parse_args(argv)
    try:
        result = audit(opts.source)
    except AuditError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    print(f"{opts.source}: {len(result.parsed_files)} translation units parsed; "
          "retiring functions derived from the sources:")
    for r in result.retiring_functions:
        flag = f", flag {r['flag']}" if r["flag"] else ""
        print(f"  {r['function']} ({r['file']}:{r['line']}; retires {r['retired']}{flag}): "
              f"{r['rule']}")
    sys.stdout.write(render_text(result.sites))
    print(f"({result.seconds:.1f} s)")
    if opts.json:
        Path(opts.json).write_text(json.dumps(result.as_json(), indent=2) + "\n")
    flagged = [s for s in result.sites
               if s["verdict"] in ("retire-before-unlink", "unordered")]
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
