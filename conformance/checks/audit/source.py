"""The caller audit's sources: a CPython tree or release tarball (unpacked once into the cache),
the compiler's builtin headers for libclang, the generated pyconfig.h, and the audit's usage
error.  See conformance/checks/audit/__init__.py for what the audit does."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

SCAN_DIRS = ("Objects", "Python", "Modules", "Parser")

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
    from ...sources import cache_dir
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


