"""The direction of the arrows: front ends parse and render, checks use drivers and the model,
drivers use the model, and nothing under test (the bridge) imports the suite.  Read from the
import statements of every module (ast), so a new import in the wrong direction fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: layer -> the layers of conformance it must never import
FORBIDDEN = {
    "model": {"checks", "drivers", "frontends", "bench"},
    "drivers": {"checks", "frontends", "bench"},
    "checks": {"frontends", "bench"},
    "bench": {"frontends"},
}


def _imports(path: Path, package: str) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_one_above_it(layer):
    wrong = []
    for path in _modules(f"conformance/{layer}"):
        for name in _imports(path, f"conformance.{layer}"):
            parts = name.split(".")
            if parts[0] == "conformance" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_code_under_test_imports_nothing_of_the_suite():
    wrong = [f"{path.relative_to(ROOT)} imports {name}"
             for path in _modules("cython_bridge")
             for name in _imports(path, "cython_bridge") if name.split(".")[0] == "conformance"]
    for pyx in [*(ROOT / "cython_bridge").glob("*.pyx"), *(ROOT / "cython_bridge").glob("*.pxi")]:
        text = pyx.read_text(encoding="utf-8")
        wrong += [f"{pyx.name}: {line.strip()}" for line in text.splitlines()
                  if line.lstrip().startswith(("import conformance", "from conformance"))]
    assert not wrong, "\n".join(wrong)


def test_the_port_carries_no_mutant_switches():
    port = [*(ROOT / "reference_c" / "src").glob("*.c"),
            *(ROOT / "reference_c" / "include").glob("*.h")]
    assert port
    assert not [p.name for p in port if "QSBR_MUTANT" in p.read_text(encoding="utf-8")]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@pytest.mark.parametrize("pair", [("conformance.checks.runner", "conformance.checks.concurrent"),
                                  ("conformance.drivers.target",
                                   "conformance.drivers.isolation")])
def test_no_import_circle(pair):
    """Neither module of the pair imports the other back, at import time or in a function."""
    first, second = pair
    paths = {_module_name(p): p for p in _modules("conformance")}

    def imports(name: str) -> set[str]:
        package = name if paths[name].name == "__init__.py" else name.rsplit(".", 1)[0]
        return {n for n in _imports(paths[name], package) if n.split(".")[0] == "conformance"}

    one_way = any(n == second or n.startswith(second + ".") for n in imports(first))
    other_way = any(n == first or n.startswith(first + ".") for n in imports(second))
    assert not (one_way and other_way), f"{first} and {second} import each other"


def test_checks_start_no_front_end_as_a_child_process():
    """checks -> frontends through a subprocess: ``python -m conformance.frontends...`` or
    ``python -m conformance torture`` (the command line) from a check."""
    wrong = []
    for path in _modules("conformance/checks"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value.startswith("conformance.frontends"):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.Call) and node.args and all(
                    isinstance(a, ast.Constant) for a in node.args[:1]) \
                    and getattr(node.args[0], "value", None) == "conformance":
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: runs the command "
                             f"line ({ast.unparse(node)[:60]})")
    assert not wrong, "\n".join(wrong)
