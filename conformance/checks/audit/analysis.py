"""The caller audit's analysis: the retiring functions derived from the call graph, the retire
sites, the unlink each follows, what lies between, and the verdict."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .frontend import (
    GOAL_APIS,
    QSBR_IMPL,
    SKIP_DIRS,
    _args,
    _binop,
    _Code,
    _cond_child,
    _conditional,
    _exclusive,
    _Fn,
    _Node,
    _strip,
)
from .source import PYCONFIG, SCAN_DIRS, AuditError, _builtin_include, _cache_dir, _cindex

VERDICTS = ("retire-before-unlink", "unordered-every-path", "unordered-some-paths",
            "ordered-hardware", "ordered", "no-local-unlink")
#: The verdicts that the command line's exit status flags.
FLAGGED = ("retire-before-unlink", "unordered-every-path", "unordered-some-paths")
#: What orders on some paths only (or depends on the data): a site with one of these between
#: and nothing unconditional is unordered on some paths.
SOME_PATHS = ("fence", "full-barrier", "maybe-barrier", "decref", "lock")

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
        returns = [n for n in fn.nodes if n.cursor.kind == self.ck.RETURN_STMT
                   and lo <= n.start and n.end <= end.start]
        for node in fn.nodes:
            if node.start < lo or node.end > end.start or node.cursor.kind not in (
                    self.ck.CALL_EXPR, self.ck.UNEXPOSED_EXPR):
                continue
            if start is not None and node.start < start.end and node.cursor == start.cursor:
                continue
            if _exclusive(node, end, self.ck):
                continue  # another branch than the one that reaches ``end``
            if any(r.start >= node.end and not _conditional(r, (node,), self.ck)
                   and _conditional(r, (end,), self.ck) for r in returns):
                continue  # a path that returns before ``end`` (free_delayed's stop-the-world)
            got = self.code.classify(node.cursor)
            if got is None:
                continue
            items.append({"kind": got[0], "what": got[1], "function": fn.name,
                          "file": fn.rel, "line": node.cursor.location.line,
                          "conditional": _conditional(node, anchors, self.ck)})
        return items

    @staticmethod
    def verdict(items: list[dict[str, Any]], goal_kind: str, goal_summary: str, goal: str,
                unlink_line: int) -> tuple[str, str]:
        """The verdict on an unlink followed by the retire, from what lies between (``items``,
        the unlink itself first when it is a barrier or a seq_cst store) and the goal."""
        def where(found: list[dict[str, Any]]) -> str:
            return "; ".join(f"{i['what']} ({i['file']}:{i['line']})" for i in found[:3])

        always = [i for i in items if not i["conditional"]]
        fences = [i for i in always if i["kind"] == "fence"]
        if fences:
            return "ordered", "ordered (C11 and hardware) by " + where(fences)
        if goal_kind == "advancing":
            return "ordered", f"the goal {goal} is advancing (a seq_cst RMW of wr_seq)"
        if goal_summary == "fence":
            return "ordered", f"the goal function {goal} makes a seq_cst fence before its load"
        rmws = [i for i in always if i["kind"] == "full-barrier"
                or (i["kind"] == "lock" and "its code" in i["what"])]
        sc_unlink = bool(items) and items[0]["kind"] == "seq_cst-store" and \
            items[0]["what"].startswith("the unlink itself")
        locks = [i for i in always if i["kind"] == "lock"] if sc_unlink else []
        if rmws:
            return "ordered-hardware", (
                "ordered on hardware, not under C11: by " + where(rmws) + ", a read-modify-"
                "write of another location (a full barrier on x86-64, ARMv8, POWER and "
                "RISC-V), which C11 does not make a fence between the unlink and the goal's "
                "acquire load")
        if locks:
            return "ordered-hardware", (
                "ordered on hardware, not under C11: the unlink is a seq_cst store (XCHG on "
                "x86-64) and the unlock's compare-exchange in " + where(locks) + " lies "
                "between it and the goal; a nested critical section that did not take the "
                "lock skips that CAS, and then only x86-64's XCHG orders (an ARMv8 STLR "
                "followed by an RCpc LDAPR, or POWER's sync;std followed by ld, do not)")
        some = [i for i in items if i["kind"] in SOME_PATHS]
        opaque = [i["what"] for i in always if i["kind"] == "opaque"]
        tail = ("; not inspected: " + ", ".join(opaque[:4])) if opaque else ""
        if any(i["kind"] == "seq_cst-store" for i in always):
            tail += ("; a seq_cst store lies between (see between): ordered in practice on "
                     "x86-64 (XCHG), not by C11 nor on ARM64 with RCpc (LDAPR) acquire loads")
        if some:
            return "unordered-some-paths", (
                f"unlink at line {unlink_line}, then the {goal_kind} goal {goal}: ordered only "
                "on the paths (or for the data) where " + where(some) + tail)
        return "unordered-every-path", (
            f"unlink at line {unlink_line}, then the {goal_kind} goal {goal}: nothing that "
            "could order them on any path" + tail)

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
        rank = {"none": 0, "maybe": 1, "unknown": 1, "always": 2, "fence": 2}
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
        goal_kind = {"always": "advancing", "maybe": "non-advancing", "fence": "non-advancing",
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
            if own is not None and own[0] in ("fence", "full-barrier", "seq_cst-store"):
                items.insert(0, {"kind": own[0], "what": "the unlink itself: " + own[1],
                                 "function": fn.name, "file": fn.rel,
                                 "line": info["unlink_line"], "conditional": False})
            items += chain_items
            info["between"] = items
            info["verdict"], info["note"] = self.verdict(items, goal_kind, goal_summary,
                                                         goal_call.spelling, info["unlink_line"])
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


