"""A wheel (``pip install disparse-tune``, not the checkout) carries the built-in search spaces.

Builds the project's wheel with the installed setuptools from a copy of the sources (no build outputs), unpacks it into a folder with pip
``--target`` and loads the default space from a working directory that has no ``search_spaces/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILT_IN = sorted(p.name for p in (REPO_ROOT / "search_spaces").glob("*.yaml"))


def _source_copy(dest: Path) -> Path:
    """The project's sources copied to ``dest`` without build outputs: a build there cannot reuse the
    checkout's leftover ``build/`` or ``*.egg-info`` (nor write into the checkout)."""
    import shutil

    skip = shutil.ignore_patterns("build", "dist", "*.egg-info", ".git", "__pycache__", ".pytest_cache",
                                  "disparse_results", "mlartifacts", "mlruns", "*.db", ".whl")
    shutil.copytree(REPO_ROOT, dest, ignore=skip, dirs_exist_ok=True)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = _source_copy(tmp_path_factory.mktemp("source"))
    assert not (source / "build").exists()
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
