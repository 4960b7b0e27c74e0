"""The architecture table (conformance/checks/codegen.py): the classifier on literal
disassembly, and a run on a release tarball with x86-64's and aarch64's gcc.

The literal snippets are objdump output as the compilers emit it (the run's own output for
x86-64, aarch64, ppc64le and riscv64 gcc and clang-16 with +rcpc); each memory model's verdict
on them is the architecture manual's, so a wrong rule in ``codegen.ordered`` fails here.
"""

from __future__ import annotations

import json

import pytest
from requires import requires, tarball

from conformance.checks import codegen

STORE, LOAD, FENCE = "_Py_atomic_store_ptr_release", codegen.LOAD_FNS[0], codegen.FENCE_FN


def dump(*blocks: tuple[str, list[str]], name: str = "codegen_nonadvancing") -> str:
    """objdump -dl text of one function made of (source function, instructions) blocks."""
    lines, address = [f"0000000000000000 <{name}>:"], 0
    for source, insns in blocks:
        lines += [f"{source}():", "/x/pyatomic.h:1"]
        for insn in insns:
            lines.append(f" {address:x}:\t{insn}")
            address += 4
    return "\n".join(lines) + "\n"


def verdict(arch: str, text: str, load_fn: str = LOAD) -> tuple[bool | None, str]:
    functions = codegen.parse_objdump(text)
    ok, pair, _, why = codegen.classify(arch, functions, "codegen_nonadvancing", load_fn)
    assert pair is not None, why
    return ok, why


RET = {"x86-64": "ret", "aarch64": "ret", "ppc64le": "blr", "riscv64": "ret"}
CASES = [
    # x86-TSO: a plain store then a plain load is not ordered; a locked insn or mfence orders
    ("x86-64", ["mov    %rdx,(%rsi)"], [], ["mov    0x8(%rdi),%rax", "mov    (%rax),%rax"],
     False),
    ("x86-64", ["mov    %rdx,(%rsi)"], ["mfence"], ["mov    (%rax),%rax"], True),
    ("x86-64", ["mov    %rdx,(%rsi)"], ["lock orq $0x0,(%rsp)"], ["mov    (%rax),%rax"], True),
    ("x86-64", ["xchg   %rdx,(%rsi)"], [], ["mov    (%rax),%rax"], True),
    ("x86-64", ["mov    %rdx,(%rsi)"], ["sfence"], ["mov    (%rax),%rax"], False),
    # ARMv8: STLR then LDAR is ordered (RCsc); STLR then LDAPR is not (RCpc); DMB ISH orders
    ("aarch64", ["stlr\tx2, [x1]"], [], ["ldr\tx0, [x0, #8]", "ldar\tx0, [x0]"], True),
    ("aarch64", ["stlr\tx2, [x1]"], [], ["ldapr\tx8, [x8]"], False),
    ("aarch64", ["stlr\tx2, [x1]"], ["dmb\tish"], ["ldapr\tx8, [x8]"], True),
    ("aarch64", ["stlr\tx2, [x1]"], ["dmb\tishst"], ["ldapr\tx8, [x8]"], False),
    ("aarch64", ["str\tx2, [x1]"], [], ["ldar\tx0, [x0]"], False),
    # POWER: lwsync does not order a store before a later load; sync does
    ("ppc64le", ["lwsync", "std     r5,0(r4)"], [],
     ["ld      r3,0(r9)", "cmpw    r3,r3", "isync"], False),
    ("ppc64le", ["std     r5,0(r4)"], ["lwsync"], ["ld      r3,0(r9)"], False),
    ("ppc64le", ["std     r5,0(r4)"], ["hwsync"], ["ld      r3,0(r9)"], True),
    # RVWMO: fence rw,rw (or w,r) orders; fence.tso and a trailing fence r,rw do not
    ("riscv64", ["fence\trw,w", "sd\ta2,0(a1)"], [], ["ld\ta0,0(a5)", "fence\tr,rw"], False),
    ("riscv64", ["amoswap.d\tzero,a2,(a1)"], ["fence\trw,rw"], ["ld\ta0,0(a5)"], True),
    ("riscv64", ["amoswap.d\tzero,a2,(a1)"], ["fence"], ["ld\ta0,0(a5)"], True),
    ("riscv64", ["amoswap.d\tzero,a2,(a1)"], ["fence.tso"], ["ld\ta0,0(a5)"], False),
    ("riscv64", ["sd\ta2,0(a1)"], [], ["amoadd.d.aqrl\ta0,zero,(a5)"], True),
]


@pytest.mark.parametrize("arch,store,fence,load,expected", CASES)
def test_the_memory_models_on_literal_disassembly(arch, store, fence, load, expected):
    blocks = [(STORE, store)] + ([(FENCE, fence)] if fence else []) + [(LOAD, load)]
    blocks.append(("codegen_nonadvancing", [RET[arch]]))
    ok, why = verdict(arch, dump(*blocks))
    assert ok is expected, why


def test_the_goals_load_is_the_last_read_and_every_path_counts():
    # 3.13.5's deferred advance inlined: qsbr->shared is loaded (under the acquire load's
    # line) before wr_seq; one path advances (lock xadd) and one defers (plain mov): the
    # deferring path is the pair, and it is unordered whatever the other path does.
    text = "\n".join([
        "0000000000000000 <codegen_nonadvancing>:",
        f"{STORE}():", " 0:\tmov    %rdx,(%rsi)",
        "_Py_qsbr_deferred_advance():", " 3:\tmov    0x18(%rdi),%eax",
        " 6:\tcmp    $0x8,%eax", " 9:\tjg     20 <codegen_nonadvancing+0x20>",
        f"{LOAD}():", " b:\tmov    0x8(%rdi),%rax", " f:\tmov    (%rax),%rax",
        "codegen_nonadvancing():", " 12:\tret",
        "_Py_atomic_add_uint64():", " 20:\tmov    0x8(%rdi),%rcx", " 24:\tlock xadd %rax,(%rcx)",
        "codegen_nonadvancing():", " 28:\tret", ""])
    functions = codegen.parse_objdump(text)
    pairs = codegen.find_pairs("x86-64", functions, "codegen_nonadvancing", LOAD)
    assert [p.load.text for p in pairs] == ["mov (%rax),%rax"]
    ok, _, paths, _ = codegen.classify("x86-64", functions, "codegen_nonadvancing", LOAD)
    assert (ok, paths) == (False, 1)
    advancing = codegen.find_pairs("x86-64", functions, "codegen_nonadvancing",
                                   codegen.LOAD_FNS[1])
    assert [p.load.text for p in advancing] == ["lock xadd %rax,(%rcx)"]


def test_a_tail_call_into_the_goal_function_is_followed():
    text = "\n".join([
        "0000000000000000 <_Py_qsbr_shared_next>:",
        f"{LOAD}():", " 0:\tmov    (%rdi),%rax", "_Py_qsbr_shared_next():",
        " 3:\tadd    $0x2,%rax", " 7:\tret",
        "0000000000000010 <codegen_nonadvancing>:",
        f"{STORE}():", " 10:\tmov    %rdx,(%rsi)",
        "codegen_nonadvancing():", " 13:\tmov    0x8(%rdi),%rdi",
        " 17:\tjmp    0 <_Py_qsbr_shared_next>", ""])
    ok, why = verdict("x86-64", text)
    assert ok is False, why


def test_a_release_tarball_on_x86_64_and_aarch64(tmp_path):
    requires("cross_cc", "x86_64-linux-gnu")
    requires("cross_cc", "aarch64-linux-gnu")
    source = tarball("3.14.7")
    out, table = tmp_path / "codegen.json", tmp_path / "codegen.md"
    assert codegen.main([str(source), "--toolchain", "gcc", "--toolchain",
                         "aarch64-linux-gnu-gcc", "--json", str(out), "--markdown",
                         str(table)]) == 0
    data = json.loads(out.read_text())
    rows = {(r["toolchain"], r["goal"], r["fix"]): r for r in data["rows"]}
    assert {r["release"] for r in data["rows"]} == {"3.14.7"}
    assert {r["toolchain"] for r in data["rows"]} == {"gcc", "aarch64-linux-gnu-gcc"}
    assert not [r for r in data["rows"] if r["error"]], data["rows"]

    unfixed = rows[("gcc", "_Py_qsbr_shared_next", None)]
    assert unfixed["ordered"] is False and unfixed["load"].startswith("mov ")
    assert not any("lock" in b or "mfence" in b for b in unfixed["between"])
    fenced = rows[("gcc", "_Py_qsbr_shared_next", "stale-goal-fence")]
    assert fenced["ordered"] is True
    assert fenced["fence"] and all(f.startswith(("mfence", "lock ")) for f in fenced["fence"])
    advancing = rows[("gcc", "_Py_qsbr_advance", None)]
    assert advancing["ordered"] is True and advancing["load"].startswith("lock xadd")

    # GCC 12 emits LDAR for the acquire load whatever -march says: ordered after the STLR
    arm = rows[("aarch64-linux-gnu-gcc", "_Py_qsbr_shared_next", None)]
    assert arm["store"].startswith("stlr") and arm["load"].startswith(("ldar ", "ldapr "))
    assert arm["ordered"] is arm["load"].startswith("ldar ")
    arm_fenced = rows[("aarch64-linux-gnu-gcc", "_Py_qsbr_shared_next", "stale-goal-fence")]
    assert arm_fenced["fence"] == ["dmb ish"] and arm_fenced["ordered"] is True

    text = table.read_text()
    assert "**NOT ordered**" in text and data["versions"]["x86_64-linux-gnu-gcc"] in text
