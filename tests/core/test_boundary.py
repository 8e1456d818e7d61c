"""disparse_core is a plain PyTorch library: no module may import the sweep machinery."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_importing_every_core_module_loads_none_of_them():
    """At run time too (an import hidden behind a helper the AST walk cannot follow would show here)."""
    import subprocess
    import sys

    code = ("import pkgutil, sys, importlib, disparse_core\n"
            "names = [m.name for m in pkgutil.walk_packages(disparse_core.__path__, 'disparse_core.')]\n"
            "for name in names: importlib.import_module(name)\n"
            f"print(len(names), sorted(set({sorted(FORBIDDEN)!r}) & {{m.split('.')[0] for m in sys.modules}}))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT.parent, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    count, loaded = done.stdout.split(" ", 1)
    assert int(count) >= 10 and loaded.strip() == "[]", done.stdout


TORCH_FREE = ("disparse_core.metric_keys", "disparse_core.config")


def _import_without_torch(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where ``import torch`` fails (``sys.modules['torch'] = None``)."""
    return subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None\n" + code],
                          cwd=ROOT.parent, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", TORCH_FREE)
def test_the_schema_and_metric_keys_import_without_torch(module):
    done = _import_without_torch(f"import importlib; importlib.import_module({module!r}); print('ok')")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_module_that_needs_torch_fails_there():
    """The check can fail: the same interpreter refuses a module that imports torch."""
    done = _import_without_torch("import disparse_core.masks")
    assert done.returncode != 0 and "torch" in done.stderr


def test_the_lazy_package_gives_the_names_the_eager_one_gave():
    """``disparse_core.sparsify`` stays the function even after its module is imported by name, and
    submodules are reachable as attributes of ``import disparse_core``."""
    code = ("import types, disparse_core, disparse_core.sparsify\n"
            "from disparse_core import sparsify, METHODS, TrialConfig, higher_is_better\n"
            "assert not isinstance(sparsify, types.ModuleType) and disparse_core.sparsify is sparsify\n"
            "assert 'disparse_static' in METHODS and TrialConfig().method == 'dense' and higher_is_better('a.miou')\n"
            "assert disparse_core.metrics.delta_m is disparse_core.delta_m\n"
            "assert set(disparse_core.__all__) <= set(dir(disparse_core))\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
