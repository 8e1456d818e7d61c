"""``python tune.py`` with no ``--space`` runs the demo (search_spaces/dynamic.yaml), as the README's
"Set up" says; checked with ``--dry-run`` from an empty working directory (nothing may be written)."""

from __future__ import annotations

from sweep_helpers import REPO_ROOT, run_cli


def test_no_space_means_the_dynamic_demo_and_a_dry_run_writes_nothing(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = run_cli(["--dry-run"], cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (f"sweep 'dynamic-demo' (new) from space 'dynamic-demo' "
                        f"({REPO_ROOT / 'search_spaces' / 'dynamic.yaml'})"), done.stdout
    assert f"results: {cwd.resolve() / 'disparse_results' / 'dynamic-demo'} " in done.stdout
    assert lines[-1] == "dry run: nothing started, nothing written"
    assert list(cwd.iterdir()) == []                                   # no store, no results folder
    named = run_cli(["run", "--space", "dynamic", "--dry-run"], cwd=cwd)
    assert named.returncode == 0 and named.stdout == done.stdout       # the same plan as naming it
