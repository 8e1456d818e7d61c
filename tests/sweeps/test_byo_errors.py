"""A workload or an architecture of the user's own that cannot work is one line at the edge: the key, the
value and what was expected, exit code 2, before any trial starts (``--dry-run`` and a real run alike),
nothing trained, no MLflow store and no results folder written."""

from __future__ import annotations

import pytest

from byo_modules import DATA, NET, byo_space, write_user_files
from sweep_helpers import run_cli

MYNET = {"factory": "mynet:build", "args": {"width": 4}}

CASES = [
    # (id, workload, arch, the line starts with, it also names)
    ("bad-import-path", None, {"factory": "nosuchmod:build"},
     "workload.arch.factory: 'nosuchmod:build' cannot be imported", ["no module named 'nosuchmod'", "expected"]),
    ("no-such-function", None, "mynet:nobuild",
     "workload.arch.factory: 'mynet:nobuild'", ["has no 'nobuild'", "expected a function"]),
    ("not-an-import-path", None, "mynet.build",
     "workload.arch: 'mynet.build' is not a known arch", ["expected one of small", "module:function"]),
    ("factory-raises", None, {"factory": "mynet:build", "args": {"fail": True}},
     "workload.arch: factory 'mynet:build' raised RuntimeError: out of memory on purpose",
     ["expected it to return a model"]),
    ("output-lacks-a-task", None, {"factory": "mynet:build", "args": {"outputs": ["a"]}},
     "workload.arch: the model of 'mynet:build' returns no output for task 'b'", ["expected a tensor for every task"]),
    ("output-has-a-task-the-data-lacks", None, {"factory": "mynet:build", "args": {"outputs": ["a", "b", "c"]}},
     "workload.arch: the model of 'mynet:build' returns task 'c', which the data lacks",
     ["expected only tasks of the workload"]),
    ("unknown-task-kind", {"factory": "mydata:build", "args": {"kind_b": "bogus"}}, MYNET,
     "workload.workload: factory 'mydata:build' raised ValueError: unknown task kind 'bogus'",
     ["expected one of segmentation"]),
    ("unknown-metric-direction", {"factory": "mydata:build", "args": {"hits_direction": "up"}}, MYNET,
     "workload.workload: factory 'mydata:build' raised ValueError: custom_task: metric 'hits' direction 'up'",
     ["expected max or min"]),
    ("output-has-a-task-the-space-leaves-out", None, {"factory": "mynet:build", "args": {"outputs": ["a", "b"]}},
     "workload.arch: the model of 'mynet:build' returns task 'b', which the space leaves out",
     ["workload.tasks: a", "expected exactly those tasks"]),
    ("nothing-prunable", None, {"factory": "mynet:build", "args": {"exclude_all": True}},
     "workload.arch: the model of 'mynet:build' has no prunable layer", ["expected at least one layer"]),
    ("cutoff-with-own-arch", None, MYNET, "trial config cutoff: 2 applies to the built-in archs",
     ["expected null with a factory arch"]),
]


def _check_one_line(done, folder, starts: str, names: list[str]) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: " + starts), lines[0]
    for text in names:
        assert text in lines[0], (text, lines[0])
    assert "Traceback" not in done.stdout + done.stderr
    written = {p.name for p in folder.iterdir()} - {"mydata.py", "mynet.py", "space.yaml", "__pycache__"}
    assert written == set(), written            # no mlflow.db, no mlartifacts, no disparse_results


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_bad_own_workload_or_arch_is_one_line_at_dry_run(tmp_path, case):
    name, workload, arch, starts, names = case
    write_user_files(tmp_path)
    space = byo_space(tmp_path, workload=workload, arch=arch)
    if name in ("cutoff-with-own-arch", "output-has-a-task-the-space-leaves-out"):
        import yaml
        data = yaml.safe_load(space.read_text())
        data["workload"].update({"cutoff": 2} if name == "cutoff-with-own-arch" else {"tasks": ["a"]})
        space.write_text(yaml.safe_dump(data, sort_keys=False))

    done = run_cli(["--space", space.name, "--dry-run"], cwd=tmp_path, timeout=120)

    _check_one_line(done, tmp_path, starts, names)


def test_a_bad_own_model_stops_a_real_run_before_anything_is_written(tmp_path):
    write_user_files(tmp_path)
    space = byo_space(tmp_path, arch={"factory": "mynet:build", "args": {"outputs": ["b"]}})

    done = run_cli(["--space", space.name], cwd=tmp_path, timeout=120)

    _check_one_line(done, tmp_path, "workload.arch: the model of 'mynet:build' returns no output for task 'a'", [])


def test_a_module_that_does_not_import_is_one_line(tmp_path):
    write_user_files(tmp_path, net="def build(:\n")
    space = byo_space(tmp_path)

    done = run_cli(["--space", space.name, "--dry-run"], cwd=tmp_path, timeout=120)

    _check_one_line(done, tmp_path, "workload.arch.factory: importing 'mynet' raised SyntaxError",
                    ["expected a module that imports cleanly"])


def test_good_own_files_pass_the_dry_run_and_write_nothing(tmp_path):
    write_user_files(tmp_path)
    space = byo_space(tmp_path, workload={"factory": "mydata:build", "args": {"hits_direction": "max"}},
                      budgets={"b.hits": ">=0.1"})

    done = run_cli(["--space", space.name, "--dry-run"], cwd=tmp_path, timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "dry run: nothing started, nothing written" in done.stdout
    assert "budgets: b.hits>=0.1" in done.stdout
    assert "user code: mydata.py, mynet.py (copied to every Ray worker" in done.stdout
    assert {p.name for p in tmp_path.iterdir()} - {"__pycache__"} == {"mydata.py", "mynet.py", "space.yaml"}


def test_the_lines_docs_extending_shows_are_the_ones_tested_here():
    """Every ``error:`` line docs/extending.md shows starts as one of the cases above says it does."""
    from sweep_helpers import REPO_ROOT

    shown = [line[len("error: "):] for line in (REPO_ROOT / "docs" / "extending.md").read_text().splitlines()
             if line.startswith("error: ")]
    assert len(shown) >= 7
    for line in shown:
        case = next((c for c in CASES if line.startswith(c[3])), None)
        assert case is not None, line
        assert all(text in line for text in case[4]), (line, case[4])


def test_items_that_are_not_one_input_tensor_and_targets_are_one_line(tmp_path):
    data = DATA.replace('return self.x[i], {"a": self.a[i], "b": self.b[i]}',
                        'return {"image": self.x[i]}, {"a": self.a[i], "b": self.b[i]}')
    write_user_files(tmp_path, data=data)
    space = byo_space(tmp_path)

    done = run_cli(["--space", space.name, "--dry-run"], cwd=tmp_path, timeout=120)

    _check_one_line(done, tmp_path, "workload.workload: 'mydata:build' gives items of (dict, dict)",
                    ["expected (input tensor, {task: target})"])


def test_an_own_arch_among_sampled_values_is_one_line(tmp_path):
    """Only the fixed workload.arch is built, checked and shipped: a sweep does not sample factories."""
    write_user_files(tmp_path)
    space = byo_space(tmp_path, parameters={"arch": {"values": ["small", "mynet:build"]}})
    import yaml
    data = yaml.safe_load(space.read_text())
    del data["workload"]["arch"]
    space.write_text(yaml.safe_dump(data, sort_keys=False))

    done = run_cli(["--space", space.name, "--dry-run"], cwd=tmp_path, timeout=120)

    _check_one_line(done, tmp_path, "parameters.arch.values[1]: 'mynet:build' names a factory of your own",
                    ["expected one of small, deeplab_resnet34 here (fix it as workload.arch)"])


def test_a_helper_module_the_user_s_files_import_is_shipped_too(tmp_path):
    write_user_files(tmp_path, net="from myblocks import Net, build  # noqa: F401\n")
    (tmp_path / "myblocks.py").write_text(NET)
    (tmp_path / "notes.py").write_text("raise SystemExit('never imported')\n")
    space = byo_space(tmp_path)

    done = run_cli(["--space", space.name, "--dry-run"], cwd=tmp_path, timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "user code: mydata.py, mynet.py, myblocks.py (copied" in done.stdout


def test_modules_next_to_the_space_are_found_from_another_folder(tmp_path):
    user = tmp_path / "project"
    write_user_files(user)
    space = byo_space(user)

    done = run_cli(["--space", space, "--dry-run"], cwd=tmp_path, timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "user code: mydata.py, mynet.py (copied" in done.stdout
