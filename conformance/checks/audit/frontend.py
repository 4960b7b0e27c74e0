"""The caller audit's clang front end: the parsed functions of a CPython tree (libclang
cursors), what each call does for ordering (``_Code.classify``), what each function stores
through its parameters, and the structure of paths (branches, loops, exits)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

GOAL_APIS = ("_Py_qsbr_deferred_advance", "_Py_qsbr_shared_next", "_Py_qsbr_advance")
QSBR_IMPL = "Python/qsbr.c"
#: Third-party code vendored under Modules/ and Objects/mimalloc (included by obmalloc.c).
SKIP_DIRS = ("Objects/mimalloc", "Modules/_decimal", "Modules/expat", "Modules/_hacl",
             "Modules/_blake2", "Modules/_sha3", "Modules/cjkcodecs", "Modules/_ctypes/darwin",
             "Modules/_ctypes/libffi_osx", "Modules/_xxtestfuzz", "Python/deepfreeze")
LOCK_PREFIXES = ("PyMutex_", "_PyMutex_", "_PyCriticalSection", "PyCriticalSection",
                 "PyThread_acquire_lock", "PyThread_release_lock", "_PyRWMutex_",
                 "_PyRecursiveMutex_", "_PyEval_StopTheWorld", "_PyEval_StartTheWorld")
#: Reference-count decrements: for an object another thread shares, the free-threaded build's
#: decref is a seq_cst CAS loop (_Py_DecRefShared); for an owned or immortal one it is not.
DECREF_NAMES = ("Py_DECREF", "Py_XDECREF", "Py_DecRef", "Py_XDecRef", "_Py_DecRef",
                "_Py_DECREF_SPECIALIZED", "_Py_DecRefShared", "_Py_DecRefSharedDebug")
DECREF = ("a decref: a seq_cst CAS only when the object is shared with another thread; the "
          "ordering depends on the data")
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
        """(kind, description) of a call that matters for ordering, else None.  Kinds:
        ``fence`` (a seq_cst fence, or a call making one on every path), ``full-barrier`` (a
        seq_cst RMW, or a call making an RMW or a fence on every path), ``lock``, ``decref``,
        ``maybe-barrier`` (a barrier on some paths only), ``seq_cst-store``, ``opaque``."""
        builtin = self.builtin(call)
        if builtin is not None:
            name = builtin
            if name.startswith("__sync_synchronize"):
                return ("fence", f"{name} (full fence)")
            if name.startswith("__sync_") and not name.startswith("__sync_lock_release"):
                return ("full-barrier", f"{name} (a full-barrier RMW)")
            words = self.text(call).replace("(", " ").replace(")", " ").replace(",", " ")
            seq_cst = any(t in SEQ_CST for t in words.split())
            if name.startswith(FENCE_BUILTINS) and seq_cst:
                return ("fence", f"{name} (seq_cst fence)")
            if name.startswith(RMW_BUILTINS) and seq_cst:
                return ("full-barrier", f"{name} (seq_cst RMW)")
            if name.startswith(("__atomic_store", "__c11_atomic_store")) and seq_cst:
                return ("seq_cst-store", f"{name} ({SC_STORE})")
            return None
        if call.kind != self.ck.CALL_EXPR:
            return None
        name = call.spelling or ""
        if name.startswith("__builtin"):
            return None
        if name in DECREF_NAMES:
            return ("decref", f"{name} ({DECREF})")
        fn = self.fn_of(call)
        if name.startswith(LOCK_PREFIXES):
            shown = fn is not None and self.summary(fn) in ("always", "fence")
            return ("lock", f"{name} (lock operation; "
                    + ("its code makes a seq_cst RMW on every path)" if shown
                       else "no full barrier shown on every path)"))
        if fn is None:
            ref = call.referenced
            if ref is None or not name:
                return ("opaque", f"indirect call {self.text(call)[:60]}")
            return ("opaque", f"{name} (body not in the parsed sources)")
        summ = self.summary(fn)
        if summ == "fence":
            return ("fence", f"{name} (a seq_cst fence on every path)")
        if summ == "always":
            return ("full-barrier", f"{name} (a seq_cst RMW on every path)")
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
        """'fence': every path through fn makes a seq_cst fence; 'always': every path makes a
        seq_cst fence or RMW (a full barrier on hardware); 'maybe': some path does; 'none'."""
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
            if got is None or got[0] not in ("fence", "full-barrier", "maybe-barrier", "lock",
                                             "decref"):
                continue
            barrier = got[0] in ("fence", "full-barrier") or (
                got[0] == "lock" and "its code" in got[1])
            if barrier and not _conditional(node, (), ck) and not any(
                    r.end <= node.start for r in exits):
                if got[0] == "fence":
                    result = "fence"
                    break
                result = "always"
            elif result != "always" and (barrier or got[0] in ("maybe-barrier", "decref")):
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


