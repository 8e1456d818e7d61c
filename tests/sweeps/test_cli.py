"""tune.py as a user runs it: bad input is one line ``error: ...``, exit 2, no traceback, nothing written;
``--dry-run`` prints the plan and writes nothing."""

from __future__ import annotations

import io
import re

import pytest

from sweeps.cli import main

from sweep_helpers import run_cli, write_space


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def cwd(tmp_path):
    folder = tmp_path / "cwd"
    write_space(folder, name="tiny")
    (folder / "unknown_key.yaml").write_text("name: x\ntrails: 4\n")
    return folder


# run as a user would (a subprocess): flags, conflicts, YAML, overrides, addresses, stores, queries
BAD = [
    (["--trials", "0"], "--trials"),
    (["--resume", "--dry-run"], "--resume and --dry-run"),
    (["--space", "unknown_key.yaml"], "trails"),
    (["--space", "tiny.yaml", "--set", "trials=abc"], "trials"),
    (["--space", "tiny.yaml", "--ray-address", "127.0.0.1:1"], "127.0.0.1:1"),
    (["--space", "tiny.yaml", "--tracking-uri", "file:///tmp/mlruns"], "file:///tmp/mlruns"),
    (["best", "--budget", "seg.miou=-2%"], "mlflow.db"),
]

# the same checks in this process (fast): the cwd is the test folder
BAD_IN_PROCESS = [
    (["--trials", "many"], "--trials"),
    (["--bogus"], "--bogus"),
    (["--space", "no_such_space.yaml"], "no_such_space"),
    (["--space", "tiny.yaml", "--set", "nonsense"], "nonsense"),
    (["--space", "tiny.yaml", "--ray-address", "not an address"], "--ray-address"),
    (["--resume"], "--resume"),
    (["--space", "tiny.yaml", "--results-dir", "tiny.yaml"], "--results-dir"),
    (["best", "--budget"], "--budget"),
    (["pareto", "--tracking-uri", "sqlite:///nowhere/mlflow.db"], "nowhere"),
    (["report", "--sweep"], "--sweep"),
    (["run", "--concurrency", "-1"], "--concurrency: -1 is too small"),
]


@pytest.mark.parametrize("args,named", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cwd, args, named):
    before = _listing(cwd)
    done = run_cli(args, cwd=cwd)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert named in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert _listing(cwd) == before


@pytest.mark.parametrize("args,named", BAD_IN_PROCESS, ids=[" ".join(a) for a, _ in BAD_IN_PROCESS])
def test_bad_input_in_process(cwd, monkeypatch, args, named):
    monkeypatch.chdir(cwd)
    before = _listing(cwd)
    out, err = io.StringIO(), io.StringIO()
    assert main(args, out=out, err=err) == 2, out.getvalue() + err.getvalue()
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], lines
    assert _listing(cwd) == before


def test_dry_run_prints_the_plan_and_writes_nothing(cwd):
    before = _listing(cwd)
    done = run_cli(["--space", "tiny.yaml", "--trials", "6", "--set", "concurrency=1", "--dry-run"],
                   cwd=cwd)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in ("sweep 'tiny'", "method", "sparsity", "compression (maximize)",
                     "seg.miou=-50%", "trials: 6, concurrency: 1", "local on 127.0.0.1",
                     f"sqlite:///{cwd}/mlflow.db", str(cwd / "disparse_results" / "tiny"),
                     "nothing written"):
        assert expected in out
    assert _listing(cwd) == before


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_help_lists_commands_and_flags(capsys):
    top = _help(["--help"], capsys)
    commands = top.split("positional arguments:")[1].split("options:")[0]
    for command in ("run", "best", "pareto", "report"):          # each listed with its one-line summary
        assert re.search(rf"^\s+{command}\s+\S", commands, re.M), (command, top)
    run = _help(["run", "--help"], capsys)
    for flag in ("--space", "--set", "--trials", "--seed", "--resume", "--dry-run", "--tracking-uri",
                 "--results-dir"):
        assert re.search(rf"^\s+{flag}\b", run, re.M), (flag, run)       # described, not only in usage
    best = _help(["best", "--help"], capsys)
    assert re.search(r"^\s+--budget METRIC=LIMIT", best, re.M), best
    assert _help(["--space", "x", "--help"], capsys) == run        # no command: the run command's help


# empty, blank or multi-line text flags would silently mean the default (or name odd MLflow experiments)
EMPTY = [(cmd + [flag, value], flag)
         for flag in ("--space", "--tracking-uri", "--results-dir", "--experiment", "--ray-address")
         for value in ("", "   ", "a\nb")
         for cmd in (["--dry-run"],)] + [
    (["best", "--budget", "seg.miou=-2%", "--experiment", ""], "--experiment"),
    (["pareto", "--tracking-uri", " "], "--tracking-uri"),
    (["report", "--experiment", "x\ny"], "--experiment"),
]


@pytest.mark.parametrize("args,flag", EMPTY, ids=[repr(a) for a, _ in EMPTY])
def test_empty_or_multi_line_flag_values_are_one_line(cwd, monkeypatch, args, flag):
    monkeypatch.chdir(cwd)
    before = _listing(cwd)
    out, err = io.StringIO(), io.StringIO()
    assert main(args, out=out, err=err) == 2, out.getvalue()
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}: "), err.getvalue()
    value = args[args.index(flag) + 1]
    assert "expected" in lines[0] and (repr(value) in lines[0] if value.strip() else "empty" in lines[0])
    assert _listing(cwd) == before


def test_empty_text_options_are_refused_by_the_plan_too(tmp_path):
    from sweeps.run import RunOptions, make_plan
    from sweeps.errors import UserInputError

    for field, flag in (("space", "--space"), ("tracking_uri", "--tracking-uri"),
                        ("results_dir", "--results-dir"), ("experiment", "--experiment")):
        with pytest.raises(UserInputError, match=f"^{flag}: "):
            make_plan(RunOptions(**{field: " "}))


def test_printed_commands_start_the_way_this_one_was_started(tmp_path, monkeypatch):
    from sweeps.cli import _self_command

    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    monkeypatch.setattr("sys.argv", ["tune.py", "--trials", "2"])
    assert _self_command() == "python tune.py"
    monkeypatch.chdir(tmp_path)                          # started as python repo/tune.py from elsewhere
    monkeypatch.setattr("sys.argv", [str(repo / "tune.py")])
    assert _self_command() == f"python {repo / 'tune.py'}"
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/disparse-tune", "best"])
    assert _self_command() == "disparse-tune"
