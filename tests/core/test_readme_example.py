"""The README's "core library without the sweep" example, run exactly as printed there."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_core_example_runs_and_prints_what_its_comments_say(tmp_path):
    text = (REPO_ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index("## The core library without the sweep"):], re.S)[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    static, dynamic = done.stdout.splitlines()
    achieved, iou = static.split(" ", 1)
    assert float(achieved) == pytest.approx(0.9, abs=1e-4)
    iou = ast.literal_eval(iou)
    assert iou and all(name.startswith("shared.") and 0.0 <= v <= 1.0 for name, v in iou.items())
    density, steps = dynamic.split(" ", 1)
    assert float(density) == pytest.approx(0.1, abs=1e-4)
    assert ast.literal_eval(steps) == [10, 20]
    assert not list(tmp_path.iterdir())          # writes nothing
