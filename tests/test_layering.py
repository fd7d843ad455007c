"""The package's layering, enforced: imports go downward only, there are no cycles, and imports
inside the package sit at module level (so a layering mistake fails at import, not at run time).

The tiers are in TIERS, lowest first: a module may import its own tier and those below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nextgpt_mini"

TIERS = [
    ("base", ["constants", "config", "profiles", "utils", "files", "hub", "cache", "checkpoints"]),
    ("inputs", ["processing", "data"]),
    ("parts", ["models", "prompts", "losses", "encode"]),
    ("inference", ["generation"]),
    ("training", ["training", "scaling"]),
    ("tiny", ["tiny"]),
    ("evaluation", ["evaluation"]),
    ("course", ["course", "ui", "web"]),
    ("cli", ["cli"]),
]
# The only upward imports, both lazy: the system's generate() runs the generation loop, and the
# decoder loader builds the tiny profile's pipelines (shipped in tiny/) when the profile names them.
ALLOWED_UPWARD = {("nextgpt_mini.models.nextgpt", "nextgpt_mini.generation"),
                  ("nextgpt_mini.models.decoders", "nextgpt_mini.tiny.decoders")}
# Modules whose package imports may stay inside functions: the CLI (start-up time) and the package
# root (`from nextgpt_mini import NextGPT` without importing torch-heavy modules first).
LAZY_ALLOWED = {"nextgpt_mini.cli", "nextgpt_mini"}  # and the cli package's modules


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def tier_of(module: str) -> int:
    if module == "nextgpt_mini":
        return len(TIERS)  # the root re-exports from below
    first = module.split(".")[1]
    for k, (_, names) in enumerate(TIERS):
        if first in names:
            return k
    raise AssertionError(f"{module}: not in any tier of tests/test_layering.py: place it")


def imports(root: Path = PACKAGE) -> list[tuple[str, str, int, bool]]:
    """(importer, imported module, line, inside a function?) for every import within the package."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    out = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_pkg = path.name == "__init__.py"
        for node, in_function in _walk(tree, False):
            for target in _targets(node, name, is_pkg, modules):
                if target != name:
                    out.append((name, target, node.lineno, in_function))
    return out


def _walk(node, in_function):
    for child in ast.iter_child_nodes(node):
        inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        yield from _walk(child, inner)


def _targets(node, importer: str, is_pkg: bool, modules: dict) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = importer.split(".") if is_pkg else importer.split(".")[:-1]
        if node.level:
            base = base[: len(base) - node.level + 1]
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
    out = []
    for n in names:
        if n.split(".")[0] != "nextgpt_mini":
            continue
        while n not in modules and "." in n:
            n = n.rsplit(".", 1)[0]
        out.append(n)
    return out


def cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(found: list[tuple[str, str, int, bool]]) -> list[str]:
    bad = []
    for a, b, line, lazy in found:
        if (a, b) in ALLOWED_UPWARD:
            if not lazy:
                bad.append(f"{a}:{line} imports {b} at module level (allowed only inside the function that needs it)")
            continue
        if a != "nextgpt_mini" and tier_of(b) > tier_of(a):
            bad.append(f"{a}:{line} imports {b}: upward ({TIERS[tier_of(a)][0]} -> {TIERS[tier_of(b)][0]})")
        elif lazy and a not in LAZY_ALLOWED and not a.startswith("nextgpt_mini.cli."):
            bad.append(f"{a}:{line} imports {b} inside a function: package imports go at module level")
    edges = [(a, b) for a, b, _, _ in found if (a, b) not in ALLOWED_UPWARD]
    bad += [f"import cycle: {' <-> '.join(c)}" for c in cycles(edges)]
    return bad


def test_imports_go_downward_without_cycles_and_at_module_level():
    bad = violations(imports())
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("case", ["cycle", "upward", "lazy"])
def test_the_layering_test_fails_on_a_reintroduced_mistake(tmp_path, case):
    """A copy of the package with one mistake planted: the check must name it."""
    import shutil

    root = tmp_path / "nextgpt_mini"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("assets", "__pycache__", "*.ipynb"))
    planted = {
        "cycle": ("losses.py", "from nextgpt_mini.models import nextgpt  # planted\n", "import cycle"),
        "upward": ("models/projectors.py", "from nextgpt_mini.training import trainer  # planted\n", "upward (parts -> training)"),
        "lazy": ("prompts.py", "def planted():\n    from nextgpt_mini import utils\n", "inside a function"),
    }[case]
    path = root / planted[0]
    path.write_text(path.read_text() + "\n" + planted[1])
    bad = violations(imports(root))
    assert any(planted[2] in b for b in bad), bad




def test_every_module_says_its_chapter_and_stays_short():
    """Each module's docstring opens with the chapter(s) it belongs to; no module is over 400 lines."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path, PACKAGE)
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not doc.startswith("Chapter"):
            bad.append(f"{name}: docstring should open with 'Chapter NN:' (it opens {doc[:40]!r})")
        if len(text.splitlines()) > 400:
            bad.append(f"{name}: {len(text.splitlines())} lines (over 400)")
    assert not bad, "\n".join(bad)
