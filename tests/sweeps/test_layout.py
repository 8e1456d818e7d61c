"""The layout of ``sweeps/`` holds: no import cycle among its modules (imports inside functions count too,
so a cycle cannot hide in one), Ray only in ``sweeps/ray/``, and each subpackage used through its
``__init__`` (an explicit ``__all__``), not through its module files. Read from the source with ``ast``."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = ("ray", "run", "space", "tracking")


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file below ``root`` (the folder of ``package``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = (package, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path, module: str, is_package: bool):
    """``(module named, imported names, node, at module level)`` for every import in the file:
    ``import X`` gives ``(X, (), ...)``, ``from X import a, b`` gives ``(X, ("a", "b"), ...)``, with a
    relative ``X`` resolved against ``module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if is_package else module.rpartition(".")[0]
    top_level = set()
    for stmt in tree.body:  # module level includes `if TYPE_CHECKING:` / `try:` blocks at the top
        top_level |= {id(node) for node in ast.walk(stmt) if not isinstance(stmt, (ast.FunctionDef,
                                                                                  ast.AsyncFunctionDef,
                                                                                  ast.ClassDef))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node, id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, tuple(a.name for a in node.names), node, id(node) in top_level


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Edges ``a → b`` between the modules of ``package``: ``a`` imports ``b`` anywhere in its file.
    ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``."""
    modules = _modules(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names, _, _ in _imports(path, name, path.name == "__init__.py"):
            submodules = {f"{target}.{n}" for n in names} & modules.keys()
            graph[name] |= submodules
            if target in modules and (not names or len(submodules) < len(names)):
                graph[name].add(target)
        graph[name].discard(name)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle_among_the_sweeps_modules():
    graph = import_graph(REPO_ROOT / "sweeps", "sweeps")
    assert "sweeps.run.plan" in graph and "sweeps.tracking.front" in graph   # the graph is the real one
    assert "sweeps.run.study" in graph["sweeps.run.plan"]                  # and has its edges
    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from .b import thing\n")
    (pkg / "sub" / "b.py").write_text("def thing():\n    from .. import a\n    return a\n")
    (pkg / "c.py").write_text("from . import a\n")
    assert import_cycles(import_graph(pkg, "pkg")) == [["pkg.a", "pkg.sub.b"]]


def test_ray_is_imported_only_in_sweeps_ray():
    modules = _modules(REPO_ROOT / "sweeps", "sweeps")
    ray_dir = REPO_ROOT / "sweeps" / "ray"
    bad = []
    for name, path in modules.items():
        if path.is_relative_to(ray_dir):
            continue
        for target, names, node, top in _imports(path, name, path.name == "__init__.py"):
            where = f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
            named = {target} | {f"{target}.{n}" for n in names}
            if any(t == "ray" or t.startswith("ray.") for t in named):
                bad.append(f"{where} imports {target}")                     # the library, at any level
            elif top and any(t == "sweeps.ray" or t.startswith("sweeps.ray.") for t in named):
                bad.append(f"{where} imports sweeps.ray at module level")  # loads Ray on import
    assert not bad, "; ".join(bad)
    assert any(t == "ray" for t, *_ in _imports(ray_dir / "backend.py", "sweeps.ray.backend", False))


def _private_module_imports(path: Path, module: str) -> list[str]:
    """Imports that name a module file ``sweeps.<subpackage>.<module>`` from outside that subpackage
    (``from sweeps.tracking import artifacts`` goes through the package: allowed, e.g. to patch it)."""
    bad = []
    for target, _, node, _ in _imports(path, module, path.name == "__init__.py"):
        parts = target.split(".")
        if len(parts) >= 3 and parts[0] == "sweeps" and parts[1] in SUBPACKAGES \
                and not (module + ".").startswith(f"sweeps.{parts[1]}."):
            bad.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} imports {target}")
    return bad


def test_other_packages_and_tests_use_each_subpackage_through_its_init():
    bad = []
    for name, path in _modules(REPO_ROOT / "sweeps", "sweeps").items():
        bad += _private_module_imports(path, name)
    for folder in ("tests", "bench"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            bad += _private_module_imports(path, f"{folder}.{path.stem}")
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_each_subpackage_names_its_public_face(subpackage):
    package = importlib.import_module(f"sweeps.{subpackage}")
    names = package.__all__
    assert names and len(names) == len(set(names))
    missing = [n for n in names if not hasattr(package, n)]
    assert not missing, f"sweeps.{subpackage}.__all__ names {missing}, which it does not define"


def test_no_private_name_crosses_a_module_boundary():
    """A name with a leading underscore stays in its file: a module never imports another's private name."""
    crossing = []
    for name, path in _modules(REPO_ROOT / "sweeps", "sweeps").items():
        for target, names, node, _ in _imports(path, name, path.name == "__init__.py"):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if target.startswith("sweeps") and private:
                crossing.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} takes {private} from {target}")
    assert crossing == []


@pytest.mark.parametrize("package", ["disparse_core", "sweeps"])
def test_docs_architecture_has_one_line_for_every_module(package):
    """docs/ARCHITECTURE.md's table "<package> modules" has a row for every ``.py`` file of the package."""
    doc = (REPO_ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = doc.split(f"## {package} modules", 1)[1].split("\n#", 1)[0]      # up to the next heading
    rows = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    rows = {f"{r}__init__.py" if r.endswith("/") else r for r in rows}    # `models/`: the package's face
    root = REPO_ROOT / package
    files = {p.relative_to(root).as_posix() for p in root.rglob("*.py")}
    assert sorted(files - rows) == []
    assert sorted(rows - files) == []


def test_no_private_flat_modules_are_left_for_the_subpackages():
    flat = sorted(p.name for p in (REPO_ROOT / "sweeps").glob("*.py")
                  if p.name.startswith(("_runner", "_ray", "_tracking", "_mlflow", "_sweep_tracker", "_mo_asha",
                                        "_signals", "_tables", "_space")) or p.name == "space.py")
    assert flat == []
