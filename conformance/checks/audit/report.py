"""The caller audit's result, its text rendering and its command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .analysis import FLAGGED, VERDICTS, _Auditor
from .source import AuditError, _cindex, source_tree


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
            s["verdict"] not in ("retire-before-unlink", "no-local-unlink")
            or not b["conditional"])]
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
                    "is flagged retire-before-unlink or unordered-*, 1 when one is, 2 when the "
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
    flagged = [s for s in result.sites if s["verdict"] in FLAGGED]
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
