"""disparse_core is a plain PyTorch library: no module may import the sweep machinery."""

import ast
from pathlib import Path

import disparse_core

FORBIDDEN = {"ray", "optuna", "mlflow", "yaml"}
ROOT = Path(disparse_core.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", ""))
              in ("import_module", "__import__") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def test_core_never_imports_ray_optuna_mlflow_or_yaml():
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) >= 3  # masks, ownership, __init__ at least: the walk found the package
    offenders = {str(f.relative_to(ROOT)): sorted(_imported_roots(f) & FORBIDDEN) for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}


def test_the_checker_sees_every_import_form(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import ray.tune\nfrom optuna import samplers\n"
                      "def f():\n    import mlflow\n    return importlib.import_module('yaml')\n")
    assert _imported_roots(sample) >= FORBIDDEN
