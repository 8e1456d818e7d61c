"""A wheel (``pip install disparse-tune``, not the checkout) carries the built-in search spaces.

Builds the project's wheel with the installed setuptools from a copy of the tracked files (a stale build/
or *.egg-info of the checkout cannot stand in for the package-data mapping), unpacks it into a folder
with pip ``--target`` and loads the default space from a working directory that has no ``search_spaces/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILT_IN = sorted(p.name for p in (REPO_ROOT / "search_spaces").glob("*.yaml"))


def _tracked_copy(dest: Path) -> Path:
    """The checkout's tracked files (as they are in the working tree) copied to ``dest``: no build/ or
    *.egg-info left by an earlier build, and nothing written into the checkout."""
    listed = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-z"], check=True, capture_output=True,
                            text=True).stdout.split("\0")
    files = [name for name in listed if name and (REPO_ROOT / name).is_file()]
    assert "pyproject.toml" in files and any(n.startswith("search_spaces/") for n in files), files[:20]
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, dest / name)
    assert not (dest / "build").exists() and not list(dest.glob("*.egg-info"))
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = _tracked_copy(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(source)], check=True, capture_output=True, text=True)
    (whl,) = out.glob("disparse_tune-*.whl")
    return whl


def test_the_wheel_ships_every_built_in_space(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(Path(n).name for n in names if n.startswith("sweeps/search_spaces/"))
    assert BUILT_IN and shipped == BUILT_IN
    assert any(n.startswith("disparse_core/models/") for n in names)
    assert any(n.startswith("disparse_core/data/") for n in names)


def test_the_wheel_ships_every_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-z", "disparse_core", "sweeps"], check=True,
                             capture_output=True, text=True).stdout.split("\0")
    packages = sorted(name.rpartition("/")[0] for name in tracked if name.endswith("/__init__.py"))
    assert {"sweeps/ray", "sweeps/run", "sweeps/space", "sweeps/tracking"} <= set(packages)
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert not missing, f"packages left out of the wheel (pyproject.toml [tool.setuptools] packages): {missing}"


def test_an_installed_wheel_finds_the_default_space(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, text=True)
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    code = ("import sweeps.space as s; sp = s.load_space(); "
            "print(s.__file__); print(sp.path); print(','.join(s.list_spaces()))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert Path(out[0]).is_relative_to(target)                    # the installed copy, not the checkout
    assert Path(out[1]) == target / "sweeps" / "search_spaces" / "dynamic.yaml"
    assert out[2].split(",") == [Path(n).stem for n in BUILT_IN]
