"""Security properties a user relies on, checked on the source (AST, so comments and strings never count):

* YAML is parsed with a SafeLoader only (no ``yaml.load`` with an unsafe Loader, no ``unsafe_load`` or
  ``full_load``), so a search space cannot run code (test_bad_input.py shows ``!!python/object`` refused);
* every ``torch.load`` passes ``weights_only=True`` (a checkpoint cannot run code);
* no shell: no ``os.system``/``os.popen``, no ``shell=True``, no ``subprocess`` call built from a string;
* the local Ray and the MLflow UI we print are bound to 127.0.0.1.

The socket-level check (every listening socket of a running sweep is on loopback) is in
test_driver_kill.py; Ray's node IP of every trial result is checked in test_trial_faults.py.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from rel_helpers import REPO_ROOT

SOURCE_DIRS = ("disparse_core", "sweeps", "scripts", "bench", "tests")
SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _python_files():
    files = [REPO_ROOT / "tune.py"]
    for d in SOURCE_DIRS:
        files += sorted((REPO_ROOT / d).rglob("*.py"))
    return [f for f in files if f.is_file()]


def _trees():
    return [(f, ast.parse(f.read_text(encoding="utf-8"), filename=str(f))) for f in _python_files()]


def _name(node) -> str:
    """``yaml.load`` for Attribute(Name(yaml), load); ``load`` for Name(load)."""
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _calls(tree):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _where(path: Path, node) -> str:
    return f"{path.relative_to(REPO_ROOT)}:{node.lineno}"


def _safe_loader_classes(trees) -> set[str]:
    """Classes defined in the project that derive (directly or through each other) from a SafeLoader."""
    safe = set(SAFE_LOADERS)
    bases = {}
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = {_name(b).split(".")[-1] for b in node.bases}
    grew = True
    while grew:
        new = {c for c, b in bases.items() if b & safe and c not in safe}
        safe |= new
        grew = bool(new)
    return safe


def test_sources_were_found():
    files = _python_files()
    assert len(files) > 20 and any(f.name == "yaml.py" and f.parent.name == "space" for f in files)


def test_yaml_is_parsed_with_a_safe_loader_only():
    trees = _trees()
    safe = _safe_loader_classes(trees)
    bad = []
    for path, tree in trees:
        for call in _calls(tree):
            name = _name(call.func)
            if name in ("yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all", "yaml.full_load_all"):
                bad.append(f"{_where(path, call)} {name}")
            elif name in ("yaml.load", "yaml.load_all"):
                loader = [k.value for k in call.keywords if k.arg == "Loader"] or call.args[1:2]
                loader_name = _name(loader[0]).split(".")[-1] if loader else ""
                if loader_name not in safe:
                    bad.append(f"{_where(path, call)} {name}(Loader={loader_name or 'missing'})")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("FullLoader", "UnsafeLoader", "Loader") \
                    and _name(node.value) == "yaml":
                bad.append(f"{_where(path, node)} yaml.{node.attr}")
    assert not bad, "unsafe YAML loading: " + "; ".join(bad)


def test_torch_load_is_weights_only_everywhere():
    found, bad = 0, []
    for path, tree in _trees():
        for call in _calls(tree):
            if _name(call.func) == "torch.load":
                found += 1
                ok = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                         for k in call.keywords)
                if not ok:
                    bad.append(_where(path, call))
    assert found >= 1, "no torch.load found: is the checkpoint code still in disparse_core?"
    assert not bad, "torch.load without weights_only=True: " + ", ".join(bad)


def test_no_shell():
    bad = []
    for path, tree in _trees():
        for call in _calls(tree):
            name = _name(call.func)
            if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
                        "os.execl", "os.execlp", "os.spawnl", "os.spawnlp"):
                bad.append(f"{_where(path, call)} {name}")
            if name.startswith("subprocess.") or name in ("Popen", "run", "check_output", "check_call"):
                for k in call.keywords:
                    if k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False):
                        bad.append(f"{_where(path, call)} {name}(shell=...)")
                if name.startswith("subprocess.") and call.args and isinstance(call.args[0], (ast.Constant,
                                                                                               ast.JoinedStr)):
                    bad.append(f"{_where(path, call)} {name} with a command string")
    assert not bad, "shell use: " + "; ".join(bad)


def test_local_ray_is_kept_on_loopback(monkeypatch):
    from sweeps import ray as sweeps_ray

    assert sweeps_ray.LOOPBACK_ENV["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert sweeps_ray.LOOPBACK_ENV["RAY_USAGE_STATS_ENABLED"] == "0"
    # the tests' conftest sets these too, so look at what set_loopback_env does in an environment without
    # them (test_driver_kill.py starts a real sweep that way and checks its listening sockets)
    for name in sweeps_ray.LOOPBACK_ENV:
        monkeypatch.delenv(name, raising=False)
    sweeps_ray.set_loopback_env()
    assert {name: os.environ.get(name) for name in sweeps_ray.LOOPBACK_ENV} == sweeps_ray.LOOPBACK_ENV
    # the package sets the environment before it imports the first of its modules that import Ray
    package = (REPO_ROOT / "sweeps" / "ray" / "__init__.py").read_text()
    assert package.index("set_loopback_env()\n") < package.index("\nfrom .backend import")
    source = (REPO_ROOT / "sweeps" / "ray" / "backend.py").read_text()
    tree = ast.parse(source)
    for call in _calls(tree):
        if _name(call.func) == "ray.init":
            for k in call.keywords:        # never asks for a public interface
                if k.arg in ("_node_ip_address", "dashboard_host"):
                    assert isinstance(k.value, ast.Constant) and k.value.value == "127.0.0.1", ast.dump(k)


def test_printed_mlflow_ui_command_binds_loopback():
    from sweeps.run import mlflow_ui_command

    command = mlflow_ui_command("sqlite:////tmp/x/mlflow.db")
    assert "--host 127.0.0.1" in command and "0.0.0.0" not in command


@pytest.mark.parametrize("doc", ["README.md", "docs/mlflow-ui.md", "docs/cluster.md", "docs/getting-started.md"])
def test_docs_never_tell_users_to_listen_on_all_interfaces(doc):
    path = REPO_ROOT / doc
    assert path.exists(), f"{doc} is missing"
    text = path.read_text()
    for line in text.splitlines():
        if "mlflow ui" in line or "mlflow server" in line:
            assert "0.0.0.0" not in line, line
