"""The package's shape: no import cycle, wings that the shared modules never import, no private imports across modules,
one error base class, light imports where torch is not needed, and ruff clean at 120 characters a line."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "pivotrl_nb"
WINGS = ("pivotrl_nb.pivotrl", "pivotrl_nb.ewm")


def _notebooks(pattern: str = "**/*.ipynb") -> list[tuple[Path, list[dict]]]:
    "The notebooks under nbs/ matching `pattern`, each with its cells."
    return [(nb, json.loads(nb.read_text())["cells"]) for nb in sorted((ROOT / "nbs").glob(pattern))]


def _modules() -> dict[str, ast.Module]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        if p.name == "_modidx.py" or "__pycache__" in p.parts: continue
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(p.read_text(), filename=str(p))
    return out


def _imported(mod: str, node: ast.ImportFrom | ast.Import, is_pkg: bool) -> list[tuple[str, list[str]]]:
    "(absolute module, names) pairs of an import statement, relative imports resolved."
    if isinstance(node, ast.Import): return [(a.name, []) for a in node.names]
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    if node.level: base = base[:len(base) - node.level + 1]
    target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
    return [(target, [a.name for a in node.names])]


MODS = _modules()
IS_PKG = {m: (PKG.parent / m.replace(".", "/") / "__init__.py").exists() for m in MODS}


def _edges(top_level_only: bool = True):
    for mod, tree in MODS.items():
        nodes = tree.body if top_level_only else ast.walk(tree)
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, names in _imported(mod, node, IS_PKG[mod]):
                    if target and target.startswith("pivotrl_nb"): yield mod, target, names, node


def test_no_import_cycle():
    graph = {m: set() for m in MODS}
    for mod, target, names, _ in _edges():
        for t in [target] + [f"{target}.{n}" for n in names]:
            if t in MODS and t != mod: graph[mod].add(t)
    state, stack = {}, []

    def visit(m):
        state[m] = "open"; stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open": pytest.fail("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state: visit(n)
        state[m] = "done"; stack.pop()
    for m in sorted(graph):
        if m not in state: visit(m)


def test_no_deferred_package_imports():
    "Imports of the package's own modules sit at module level (a deferred one would hide a cycle)."
    top = {id(n) for t in MODS.values() for n in t.body}
    late = [f"{m}: line {node.lineno} imports {t}" for m, t, _, node in _edges(top_level_only=False) if id(node) not in top]
    assert not late, late


def test_shared_modules_import_neither_wing():
    bad = [f"{m} imports {t}" for m, t, _, _ in _edges()
           if not m.startswith(WINGS) and t.startswith(WINGS)]
    assert not bad, bad


def test_ewm_and_pivotrl_wings_do_not_import_each_other():
    bad = [f"{m} imports {t}" for m, t, _, _ in _edges()
           for a, b in (WINGS, WINGS[::-1]) if m.startswith(a) and t.startswith(b)]
    assert not bad, bad


def test_no_private_names_across_modules():
    bad = [f"{m} imports {t}.{n}" for m, t, names, _ in _edges() for n in names if n.startswith("_") and t != m]
    assert not bad, bad


def test_every_error_class_derives_from_the_package_base():
    code = ("import importlib, inspect, sys\n"
            "from pivotrl_nb.core import PivotRLNBError\n"
            f"for m in {sorted(MODS)!r}:\n"
            "    if m.endswith('ewm.vllm'): continue\n"       # needs vLLM to define its processor class
            "    mod = importlib.import_module(m)\n"
            "    for n, c in vars(mod).items():\n"
            "        if inspect.isclass(c) and issubclass(c, Exception) and c.__module__ == m "
            "and not issubclass(c, PivotRLNBError): print(f'{m}.{n}')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [], f"error classes not derived from PivotRLNBError: {r.stdout.split()}"


@pytest.mark.parametrize("module", ["pivotrl_nb.core", "pivotrl_nb.data", "pivotrl_nb.stats", "pivotrl_nb.sandbox",
                                    "pivotrl_nb.reproduce", "pivotrl_nb.pivotrl.rewards", "pivotrl_nb.pivotrl.theory",
                                    "pivotrl_nb.ewm.evalues"])
def test_light_modules_do_not_import_torch_or_transformers(module):
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"importing {module} loads {r.stdout.strip()}"


def test_ruff_clean():
    "pyflakes' checks (unused imports, undefined names, redefinitions) on the exported package."
    ruff = Path(sys.executable).parent / "ruff"
    r = subprocess.run([ruff, "check", "--no-cache", "--select", "E9,F", "--ignore", "F403,F405", "--exclude",
                        "_modidx.py", "pivotrl_nb"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_star_imports_supply_every_name_they_are_trusted_for():
    "The only star import is core's (nbdev style); every name ruff cannot resolve must be one core exports."
    import json
    import pivotrl_nb.core as core
    ruff = Path(sys.executable).parent / "ruff"
    r = subprocess.run([ruff, "check", "--no-cache", "--select", "F403,F405", "--exclude", "_modidx.py", "pivotrl_nb",
                        "--output-format", "json"], capture_output=True, text=True, cwd=ROOT)
    found = json.loads(r.stdout)
    stars = {e["filename"] for e in found if e["code"] == "F403"}
    assert all("from ..core import *" in line or "from .core import *" in line or "from ...core import *" in line
               for f in stars for line in Path(f).read_text().splitlines() if line.endswith("import *")), stars
    unknown = sorted({(Path(e["filename"]).name, e["message"].split("`")[1]) for e in found if e["code"] == "F405"
                      if e["message"].split("`")[1] not in core.__all__})
    assert not unknown, f"names that are neither defined nor exported by core: {unknown}"


def test_lines_at_most_120_characters():
    "Exported modules and notebook code cells (nbdev's generated `__all__` line and markdown tables excepted)."
    long = [f"{p.relative_to(ROOT)}:{i}" for p in PKG.rglob("*.py") if p.name != "_modidx.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if len(line) > 120 and not line.startswith("__all__")]
    for nb, cells in _notebooks():
        for k, c in enumerate(cells):
            long += [f"{nb.relative_to(ROOT)} cell {k}" for line in "".join(c["source"]).splitlines()
                     if len(line) > 120 and not line.lstrip().startswith("|")]
    assert not long, f"{len(long)} lines over 120 characters: {long[:20]}"


def test_test_only_imports_are_hidden():
    "fastcore.test's imports sit in `#| hide` cells of the library notebooks, so a reader sees the demonstrations only."
    shown = [f"{nb.name} cell {k}" for nb, cells in _notebooks("*.ipynb") for k, c in enumerate(cells)
             if c["cell_type"] == "code" and "from fastcore.test import" in "".join(c["source"])
             and not "".join(c["source"]).startswith("#| hide")]
    assert not shown, f"test-only imports shown in {shown}"


def test_notebook_cell_ids_are_unique():
    "Each notebook's cell ids differ: nbdev names exported cells by id, and nbformat requires them unique."
    from collections import Counter
    repeated = {}
    for nb, cells in _notebooks():
        if ids := [i for i, n in Counter(c.get("id") for c in cells).items() if n > 1]:
            repeated[str(nb.relative_to(ROOT))] = ids
    assert not repeated, f"repeated cell ids: {repeated}"
