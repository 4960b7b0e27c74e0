"""Caller audit of a CPython source tree: where memory is retired through QSBR, and in what order.

``audit_source(SOURCE)`` (SOURCE: a release tarball or an unpacked tree) lists every *site* that
retires memory through QSBR, with the *unlink* it follows (the store that makes the retired memory
unreachable), what lies between the unlink and the goal the retire takes, and a verdict.

Command line: ``python -m conformance.checks.audit SOURCE [--json PATH]`` prints the retiring
functions derived, then one entry per site; the JSON holds ``sites``, ``retiring_functions``,
``parsed_files`` and ``seconds``.  Exit status: 0 when no site is ``retire-before-unlink``,
``unordered-every-path`` or ``unordered-some-paths``, 1 when one is, 2 when the audit cannot run
(libclang missing, not a CPython 3.13+ tree, a fatal parse error).  A tarball is unpacked once
(``Include/``, ``Objects/``, ``Python/``, ``Modules/``, ``Parser/``) into
``~/.cache/qsbr-conformance/audit/<sha256 prefix>/``.

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
not take; calls in another branch than the retire's, and calls on a path that returns before
the goal, such as ``free_delayed``'s stop-the-world fallback, are left out) and inside the
retiring chain before its goal call (``dictkeys_decref`` -> ``free_keys_object`` ->
``_PyMem_FreeDelayed`` -> ``free_delayed`` -> goal).  Each is classified: ``fence`` (a seq_cst
fence, ``__sync_synchronize``, or a call whose every path makes one, such as
``_Py_atomic_fence_seq_cst``), ``full-barrier`` (a seq_cst read-modify-write, ``__sync_*``, or
a call whose every path makes one, such as ``DECREF_KEYS``' ``_Py_atomic_add_ssize``), ``lock``
(``PyMutex_*``, critical sections, ``PyThread_*_lock``, stop-the-world; marked whether the
lock's code makes a full barrier on every path), ``decref`` (``Py_DECREF``, ``Py_XDECREF``, and
``Py_CLEAR`` through them: a seq_cst CAS only when the object is shared, so the ordering depends
on the data), ``maybe-barrier`` (a call that makes a barrier on some paths only),
``seq_cst-store`` (a seq_cst store: not a fence; C11 orders it only before later seq_cst
operations, the goal loads are acquire loads), ``opaque`` (a call whose body is in no parsed
file: not inspected, listed).

Verdicts (``VERDICTS``):

* ``retire-before-unlink``: the unlinks of the location on a path through the site all come
  after the retire: a reader may pass a quiescent state between the two and then load the
  retired memory, whatever the hardware.
* ``unordered-every-path``: an unlink precedes the retire and nothing that could order lies
  between it and the non-advancing goal's load on any path (a seq_cst store between is noted:
  XCHG on x86-64, not an order under C11 nor with ARMv8.3 RCpc loads).
* ``unordered-some-paths``: nothing unconditional orders them, but on some paths, or for some
  data, something does: a fence or RMW inside a branch or loop, a call that makes one on some
  paths, a lock operation, or a decref (``list_clear_impl``'s and ``list_sort_impl``'s
  ``Py_XDECREF`` loops, 3.14's ``clear_lock_held``'s ``Py_CLEAR`` loop: a CAS only for a shared
  item; an empty list or owned items make none).
* ``ordered-hardware``: ordered on hardware, not under C11: an unconditional seq_cst RMW of
  another location lies between (``dk_refcnt``'s atomic add in ``dictkeys_decref``; a full
  barrier on x86-64, ARMv8, POWER and RISC-V), or the unlink is a seq_cst store and a lock
  operation follows it (``_PyObject_SetManagedDict``'s ``Py_END_CRITICAL_SECTION``: the unlock's
  CAS on the path that unlocks; XCHG on x86-64 on every path).
* ``ordered``: ordered under C11 too: a seq_cst fence lies between on every path, or the goal
  advances (a seq_cst RMW of ``wr_seq`` itself), or the goal function fences before its load.
* ``no-local-unlink``: the retired memory is not loaded from a location this function stores
  (mimalloc page frees, ``PyObject_GC_Del``, a lookup dropping its own reference): the unlink,
  if any, is elsewhere; not judged.

Limits: paths are approximated from the structure of the code (branches of ``if``/``switch``/
``?:``/``&&``/``||`` and loop bodies are conditional, a ``return``/``goto`` between two
statements separates them); aliasing is by name (two spellings of one object are two
locations); a seq_cst RMW of another location orders on hardware (x86-64's LOCK prefix, ARM64's
acquire-release RMWs, POWER's sync, RISC-V's fence before the AMO: docs/codegen-table.md), and
the verdict says so apart (``ordered-hardware``), because C11 alone does not order other
locations' accesses by it; functions whose body is in no parsed file are opaque.  The audit
reads the writers' side only: readers' first loads after attach (S-READ-1) are not audited.
A verdict says what the source shows under these rules, nothing more.
"""

from __future__ import annotations

from .analysis import VERDICTS
from .frontend import GOAL_APIS
from .report import AuditResult, audit, audit_source, main, render_text, retiring_functions
from .source import AuditError, source_tree

__all__ = ["GOAL_APIS", "VERDICTS", "AuditError", "AuditResult", "audit", "audit_source", "main",
           "render_text", "retiring_functions", "source_tree"]
