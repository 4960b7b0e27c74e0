"""The caller audit (conformance/checks/audit/): QSBR retire sites of a CPython tree, verdicts.

The known answers are CPython's own code (read from the release tarballs): dict_merge's clone
path (``dict_dict_merge`` in Objects/dictobject.c) retires ``mp->ma_keys`` before ``set_keys``
publishes the clone; ``list_resize`` and ``dictresize`` unlink and then take a non-advancing goal
with nothing ordering them.  A synthetic tree (no tarball needed) checks each verdict, and a
planted edit of a release's dictresize (the retire moved before the unlink) must be flagged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from requires import RELEASES, tarball

from conformance.checks import audit

try:
    import clang.cindex  # noqa: F401
    HAVE_LIBCLANG = True
except ImportError:
    HAVE_LIBCLANG = False

# Under CI (which installs the audit extra) the tests run, and fail, without libclang.
needs_libclang = pytest.mark.requires("libclang")


_RESULTS: dict[str, audit.AuditResult] = {}


def result_of(version: str) -> audit.AuditResult:
    if version not in _RESULTS:
        _RESULTS[version] = audit.audit(tarball(version))
    return _RESULTS[version]


def sites_of(version: str) -> list[dict]:
    return result_of(version).sites


def find(sites: list[dict], function: str, retire_starts: str) -> list[dict]:
    return [s for s in sites if s["function"] == function
            and s["retire"].replace(" ", "").startswith(retire_starts.replace(" ", ""))]


# --- a synthetic tree: every verdict, no tarball --------------------------------------------

SYNTHETIC_QSBR_H = """\
#include <stdint.h>
#include <stdbool.h>
struct _qsbr_thread_state { uint64_t seq; };
struct _qsbr_shared { uint64_t wr_seq; };
static inline uint64_t
_Py_qsbr_shared_current(struct _qsbr_shared *shared)
{
    return __atomic_load_n(&shared->wr_seq, __ATOMIC_ACQUIRE);
}
static inline uint64_t
_Py_qsbr_advance(struct _qsbr_shared *shared)
{
    return __atomic_fetch_add(&shared->wr_seq, 2, __ATOMIC_SEQ_CST) + 2;
}
static inline uint64_t
_Py_qsbr_shared_next(struct _qsbr_shared *shared)
{
    return _Py_qsbr_shared_current(shared) + 2;
}
"""

SYNTHETIC_C = """\
#include "pycore_qsbr.h"
#include <stdlib.h>

struct item { void *ptr; uint64_t goal; };
static struct _qsbr_shared shared;
static struct item queue[64];
static int n;

static void
free_delayed(uintptr_t ptr)
{
    uint64_t goal = _Py_qsbr_shared_next(&shared);
    queue[n].ptr = (void *)ptr;
    queue[n].goal = goal;
    n++;
}

static void
process(void)
{
    _Py_qsbr_advance(&shared);   /* result discarded: not a retirer */
}

void
Mem_FreeDelayed(void *ptr)
{
    if (ptr != NULL) {
        free_delayed((uintptr_t)ptr);
    }
}

static void
free_table(void *table, bool use_qsbr)
{
    if (use_qsbr) {
        Mem_FreeDelayed(table);
    }
    else {
        free(table);
    }
}

typedef struct { void *table; int refcnt; int mutex; } Obj;

static inline void
Py_XDECREF(void *op)                           /* a decref (by name): a CAS if shared */
{
    if (op != NULL) {
        ((int *)op)[0]--;
    }
}

static inline void
PyMutex_Unlock(int *m)                         /* a lock operation: the CAS on some paths */
{
    int expected = 1;
    if (m != NULL) {
        __atomic_compare_exchange_n(m, &expected, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    }
}

static inline void
set_table(Obj *o, void *t)
{
    __atomic_store_n(&o->table, t, __ATOMIC_RELEASE);
}

int
publish_then_retire(Obj *o, void *newt)       /* unordered-every-path */
{
    void *old = o->table;
    set_table(o, newt);
    free_table(old, true);
    return 0;
}

int
retire_then_publish(Obj *o, void *newt)       /* retire-before-unlink */
{
    free_table(o->table, o->refcnt > 1);
    set_table(o, newt);
    return 0;
}

int
publish_fence_retire(Obj *o, void *newt)      /* ordered */
{
    void *old = o->table;
    __atomic_store_n(&o->table, newt, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    free_table(old, true);
    return 0;
}

int
publish_maybe_fence_retire(Obj *o, void *newt, int f)   /* unordered-some-paths: conditional */
{
    void *old = o->table;
    o->table = newt;
    if (f) {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    }
    free_table(old, true);
    return 0;
}

int
publish_rmw_retire(Obj *o, void *newt)        /* ordered-hardware: an unrelated seq_cst RMW */
{
    void *old = o->table;
    set_table(o, newt);
    __atomic_fetch_add(&o->refcnt, -1, __ATOMIC_SEQ_CST);
    free_table(old, true);
    return 0;
}

int
publish_decref_loop_retire(Obj *o, void *newt, void **items, int k)  /* unordered-some-paths */
{
    void *old = o->table;
    set_table(o, newt);
    for (int i = 0; i < k; i++) {
        Py_XDECREF(items[i]);
    }
    free_table(old, true);
    return 0;
}

int
publish_seqcst_unlock_retire(Obj *o, void *newt)   /* ordered-hardware: seq_cst unlink, unlock */
{
    void *old = o->table;
    __atomic_store_n(&o->table, newt, __ATOMIC_SEQ_CST);
    PyMutex_Unlock(&o->mutex);
    free_table(old, true);
    return 0;
}

int
publish_release_unlock_retire(Obj *o, void *newt)  /* unordered-some-paths: a release unlink */
{
    void *old = o->table;
    set_table(o, newt);
    PyMutex_Unlock(&o->mutex);
    free_table(old, true);
    return 0;
}

int
publish_fence_then_return(Obj *o, void *newt, int f)  /* unordered-every-path: the fenced path
                                                         returns before the retire */
{
    void *old = o->table;
    set_table(o, newt);
    if (f) {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        return 1;
    }
    free_table(old, true);
    return 0;
}

int
immediate(Obj *o)                              /* flag false: not a QSBR retire */
{
    free_table(o->table, false);
    o->table = NULL;
    return 0;
}

void
retire_param(void *p)                          /* a pure alias: a retiring function itself */
{
    Mem_FreeDelayed(p);
}

void
retire_fresh(void)                             /* no local unlink */
{
    void *p = malloc(8);
    Mem_FreeDelayed(p);
    process();
}
"""


def synthetic_tree(base: Path) -> Path:
    root = base / "tree"
    (root / "Include" / "internal").mkdir(parents=True)
    (root / "Objects").mkdir()
    (root / "Include" / "internal" / "pycore_qsbr.h").write_text(SYNTHETIC_QSBR_H)
    (root / "Objects" / "synth.c").write_text(SYNTHETIC_C)
    return root


@needs_libclang
def test_synthetic_tree_gives_each_verdict(tmp_path):
    sites = audit.audit_source(synthetic_tree(tmp_path))
    by_function = {s["function"]: s for s in sites}
    assert by_function["publish_then_retire"]["verdict"] == "unordered-every-path"
    assert by_function["publish_then_retire"]["unlink"] == "set_table(o, newt)"
    assert by_function["retire_then_publish"]["verdict"] == "retire-before-unlink"
    assert by_function["publish_fence_retire"]["verdict"] == "ordered"
    assert any("fence" in b["what"] for b in by_function["publish_fence_retire"]["between"])
    assert by_function["publish_maybe_fence_retire"]["verdict"] == "unordered-some-paths"
    assert by_function["publish_rmw_retire"]["verdict"] == "ordered-hardware"
    assert "not under C11" in by_function["publish_rmw_retire"]["note"]
    loop = by_function["publish_decref_loop_retire"]
    assert loop["verdict"] == "unordered-some-paths"
    assert [(b["kind"], b["conditional"]) for b in loop["between"]
            if b["function"] == "publish_decref_loop_retire"] == [("decref", True)]
    assert by_function["publish_seqcst_unlock_retire"]["verdict"] == "ordered-hardware"
    assert by_function["publish_release_unlock_retire"]["verdict"] == "unordered-some-paths"
    fenced_return = by_function["publish_fence_then_return"]
    assert fenced_return["verdict"] == "unordered-every-path", fenced_return
    assert not [b for b in fenced_return["between"] if b["kind"] == "fence"]
    assert by_function["retire_fresh"]["verdict"] == "no-local-unlink"
    assert "retire_param" not in by_function
    assert "immediate" not in by_function  # the flag is false: freed at once, not retired
    assert "process" not in by_function
    for site in sites:
        assert site["file"] == "Objects/synth.c"
        assert site["goal"] == "_Py_qsbr_shared_next" and site["goal_kind"] == "non-advancing"
        assert site["chain"][-2:] == ["free_delayed", "_Py_qsbr_shared_next"]
    # the rule derives the retiring functions: free_delayed keeps the goal, the rest wrap it
    retirers = {r["function"]: r for r in audit.retiring_functions(synthetic_tree(tmp_path / "b"))}
    assert set(retirers) == {"free_delayed", "Mem_FreeDelayed", "free_table", "retire_param"}
    assert set(audit.VERDICTS) == {s["verdict"] for s in sites}  # the tree shows every verdict
    assert retirers["free_table"]["flag"] == "use_qsbr"


@needs_libclang
def test_advancing_goal_orders_the_site(tmp_path):
    root = synthetic_tree(tmp_path)
    c = root / "Objects" / "synth.c"
    c.write_text(c.read_text().replace("uint64_t goal = _Py_qsbr_shared_next(&shared);",
                                       "uint64_t goal = _Py_qsbr_advance(&shared);"))
    sites = {s["function"]: s for s in audit.audit_source(root)}
    assert sites["publish_then_retire"]["goal_kind"] == "advancing"
    assert sites["publish_then_retire"]["verdict"] == "ordered"
    # retiring before the unlink stays wrong whatever the goal
    assert sites["retire_then_publish"]["verdict"] == "retire-before-unlink"


@needs_libclang
def test_cli_writes_json_and_exit_status(tmp_path, capsys):
    out = tmp_path / "a.json"
    assert audit.main([str(synthetic_tree(tmp_path)), "--json", str(out)]) == 1
    data = json.loads(out.read_text())
    assert {"file", "function", "line", "retire", "unlink", "between", "verdict", "note"} <= set(
        data["sites"][0])
    assert "retire-before-unlink: 1" in capsys.readouterr().out


def test_missing_libclang_names_the_extra(monkeypatch, tmp_path):
    import builtins
    real = builtins.__import__

    def no_clang(name, *args, **kwargs):
        if name.startswith("clang"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_clang)
    with pytest.raises(audit.AuditError, match=r"qsbr-conformance\[audit\]"):
        audit.audit_source(tmp_path)


@needs_libclang
def test_not_a_cpython_tree(tmp_path):
    with pytest.raises(audit.AuditError, match="not a CPython"):
        audit.audit_source(tmp_path)
    assert audit.main([str(tmp_path / "missing")]) == 2


@needs_libclang
def test_a_failed_parse_is_an_error_not_an_empty_audit(tmp_path, monkeypatch):
    monkeypatch.setenv("QSBR_AUDIT_CLANG_INCLUDE", str(tmp_path / "no-such-folder"))
    with pytest.raises(audit.AuditError, match="could not parse"):
        audit.audit_source(synthetic_tree(tmp_path))


@needs_libclang
def test_a_tree_where_nothing_keeps_a_goal_is_an_error(tmp_path):
    root = synthetic_tree(tmp_path)
    c = root / "Objects" / "synth.c"
    c.write_text(c.read_text().replace("uint64_t goal = _Py_qsbr_shared_next(&shared);",
                                       "uint64_t goal = 0;"))
    with pytest.raises(audit.AuditError, match="keeps a QSBR goal"):
        audit.audit_source(root)


# --- the releases -------------------------------------------------------------------------

@needs_libclang
@pytest.mark.parametrize("version", RELEASES)
def test_the_retiring_functions_are_derived_from_each_release(version):
    derived = {r["function"]: r for r in result_of(version).retiring_functions}
    assert {"free_delayed", "_PyMem_mi_page_maybe_free"} <= {
        name for name, r in derived.items() if r["rule"].startswith("keeps the goal")}
    for wrapper, flag in (("_PyMem_FreeDelayed", None), ("free_keys_object", "use_qsbr"),
                          ("free_list_items", "use_qsbr"), ("dictkeys_decref", "use_qsbr"),
                          ("free_values", "use_qsbr")):
        assert derived[wrapper]["flag"] == flag, derived[wrapper]
    assert "process_delayed_frees" not in derived  # advances, keeps no goal: retires nothing
    goals = {"3.13.5": "_Py_qsbr_deferred_advance"}.get(version, "_Py_qsbr_shared_next")
    assert {s["goal"] for s in sites_of(version) if s["retirer"] == "free_list_items"} == {goals}


@needs_libclang
@pytest.mark.parametrize("version", RELEASES)
def test_dict_merge_clone_path_retires_before_unlink(version):
    sites = find(sites_of(version), "dict_dict_merge", "dictkeys_decref(interp, mp->ma_keys")
    assert len(sites) == 1, sites
    site = sites[0]
    assert site["file"] == "Objects/dictobject.c"
    assert site["verdict"] == "retire-before-unlink"
    assert site["unlink"] == "set_keys(mp, keys)" and site["unlink_line"] > site["line"]


@needs_libclang
@pytest.mark.parametrize("version", RELEASES)
def test_list_resize_and_dictresize_are_unordered_on_every_path(version):
    sites = sites_of(version)
    resize = [s for s in sites if s["function"] == "list_resize"]
    assert [s["verdict"] for s in resize] == ["unordered-every-path"], resize
    assert resize[0]["field"] == "self->ob_item"
    dictresize = [s for s in sites if s["function"] == "dictresize"]
    combined = [s for s in dictresize if s["field"] == "mp->ma_keys"
                and s["retirer"] == "free_keys_object"]
    split_values = [s for s in dictresize if s["field"] == "mp->ma_values"]
    assert [s["verdict"] for s in combined] == ["unordered-every-path"], dictresize
    assert [s["verdict"] for s in split_values] == ["unordered-every-path"], dictresize
    for site in resize + combined + split_values:
        assert site["goal_kind"] == "non-advancing"
        # free_delayed's stop-the-world path returns before the goal: not between
        assert not [b for b in site["between"] if b["kind"] != "opaque"], site["between"]


@needs_libclang
@pytest.mark.parametrize("version", RELEASES)
def test_decref_loops_leave_list_clear_and_sort_unordered_on_some_paths(version):
    sites = sites_of(version)
    for function in ("list_clear_impl", "list_sort_impl"):
        found = [s for s in sites if s["function"] == function]
        assert [s["verdict"] for s in found] == ["unordered-some-paths"], found
        assert any(b["kind"] == "decref" and b["conditional"] and b["function"] == function
                   for b in found[0]["between"]), found[0]["between"]


@needs_libclang
def test_clear_lock_held_values_branch_is_unordered_on_some_paths():
    """3.14.7 clear_lock_held's split-table branch: set_values(mp, NULL), a Py_CLEAR loop over
    the old values, then free_values: ordered only where an item is shared."""
    found = [s for s in sites_of("3.14.7") if s["function"] == "clear_lock_held"
             and s["retirer"] == "free_values"]
    assert [s["verdict"] for s in found] == ["unordered-some-paths"], found
    assert [b["kind"] for b in found[0]["between"] if b["function"] == "clear_lock_held"] == [
        "decref"], found[0]["between"]


@needs_libclang
@pytest.mark.parametrize("version", RELEASES)
def test_dk_refcnt_rmw_orders_on_hardware_only(version):
    """dictresize's dictkeys_decref(oldkeys) after set_keys: DECREF_KEYS' seq_cst add on
    dk_refcnt lies between, a full barrier on hardware but no C11 fence."""
    sites = [s for s in sites_of(version) if s["function"] == "dictresize"
             and s["retirer"] == "dictkeys_decref"]
    assert [s["verdict"] for s in sites] == ["ordered-hardware"], sites
    assert any(b["kind"] == "full-barrier" and not b["conditional"]
               and "_Py_atomic_add_ssize" in b["what"] for b in sites[0]["between"])


@needs_libclang
def test_set_managed_dict_is_ordered_on_hardware_by_its_unlock():
    """3.14.7 _PyObject_SetManagedDict: a seq_cst unlink, then Py_END_CRITICAL_SECTION's unlock
    CAS, then the goal (decref_maybe_delay)."""
    sites = [s for s in sites_of("3.14.7") if s["function"] == "_PyObject_SetManagedDict"
             and s["unlink"]]
    assert [s["verdict"] for s in sites] == ["ordered-hardware"], sites
    kinds = [b["kind"] for b in sites[0]["between"] if not b["conditional"]]
    assert kinds[:2] == ["seq_cst-store", "lock"], sites[0]["between"]


@needs_libclang
@pytest.mark.parametrize("version", ["3.13.5", "3.14.7"])
def test_planted_reorder_in_dictresize_is_flagged(version, tmp_path):
    """Move the combined-table retire of dictresize before its set_keys: the copy must be
    flagged retire-before-unlink (and the original site no longer be unordered-every-path)."""
    root = audit.source_tree(tarball(version))
    copy = tmp_path / "tree"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("Lib", "Doc", "Tools", "PC*"))
    path = copy / "Objects" / "dictobject.c"
    text = path.read_text()
    start = text.index("\ndictresize(")
    end = text.index("\n}\n", start)
    body = text[start:end]
    unlink = "        set_keys(mp, newkeys);\n\n        if (oldkeys != Py_EMPTY_KEYS) {"
    assert body.count(unlink) == 1, "the combined-table unlink moved in this release"
    planted = body.replace(unlink, "        if (oldkeys != Py_EMPTY_KEYS) {")
    retire_end = planted.index("free_keys_object(oldkeys, IS_DICT_SHARED(mp));")
    close = planted.index("        }\n", retire_end) + len("        }\n")
    planted = planted[:close] + "        set_keys(mp, newkeys);\n" + planted[close:]
    path.write_text(text[:start] + planted + text[end:])
    sites = [s for s in audit.audit_source(copy) if s["function"] == "dictresize"
             and s["retirer"] == "free_keys_object"]
    assert [s["verdict"] for s in sites] == ["retire-before-unlink"], sites


@needs_libclang
@pytest.mark.parametrize("version", ["3.13.15"])
def test_planted_reorder_of_an_ordered_site_is_flagged(version, tmp_path):
    """clear_lock_held's combined-table branch is ordered on hardware (set_keys, then
    dictkeys_decref whose DECREF_KEYS is a seq_cst RMW); swapping the two statements must be
    flagged."""
    assert [s["verdict"] for s in sites_of(version) if s["function"] == "clear_lock_held"
            and s["retirer"] == "dictkeys_decref"] == ["ordered-hardware"]
    root = audit.source_tree(tarball(version))
    copy = tmp_path / "tree"
    shutil.copytree(root, copy)
    path = copy / "Objects" / "dictobject.c"
    text = path.read_text()
    safe = ("        set_keys(mp, Py_EMPTY_KEYS);\n"
            "        assert(oldkeys->dk_refcnt == 1);\n"
            "        dictkeys_decref(interp, oldkeys, IS_DICT_SHARED(mp));\n")
    assert text.count(safe) == 1, "clear_lock_held changed in this release"
    path.write_text(text.replace(safe, "        dictkeys_decref(interp, oldkeys, "
                                 "IS_DICT_SHARED(mp));\n        set_keys(mp, Py_EMPTY_KEYS);\n"))
    sites = [s for s in audit.audit_source(copy) if s["function"] == "clear_lock_held"
             and s["retirer"] == "dictkeys_decref"]
    assert [s["verdict"] for s in sites] == ["retire-before-unlink"], sites


@needs_libclang
def test_planted_fence_in_list_resize_orders_it(tmp_path):
    """The fix the findings propose, planted: a seq_cst fence after list_resize's unlink makes
    the site ordered (the audit sees the fence through _Py_atomic_fence_seq_cst's body)."""
    root = audit.source_tree(tarball("3.14.7"))
    copy = tmp_path / "tree"
    shutil.copytree(root, copy)
    path = copy / "Objects" / "listobject.c"
    text = path.read_text()
    unlink = "_Py_atomic_store_ptr_release(&self->ob_item, &array->ob_item);\n"
    assert text.count(unlink) == 1
    path.write_text(text.replace(unlink, unlink + "    _Py_atomic_fence_seq_cst();\n"))
    sites = [s for s in audit.audit_source(copy) if s["function"] == "list_resize"]
    assert [s["verdict"] for s in sites] == ["ordered"], sites
    assert any("_Py_atomic_fence_seq_cst" in b["what"] and not b["conditional"]
               for b in sites[0]["between"])
