"""Test-only fault injection for the reliability tests (never installed, never imported by the project).

The reliability tests put this folder on ``PYTHONPATH`` of a ``tune.py`` subprocess and set
``DISPARSE_TEST_FAULTS`` to a JSON file::

    {"markers": "/abs/folder", "by_seed": {"101": "raise", "102": "sigkill_once", "103": "sigkill_always"}}

Python imports ``sitecustomize`` at start-up in every process of the sweep (the driver and every Ray
worker inherit the environment), so the hook reaches the process that runs the trial. When
``disparse_core.trial`` is imported, ``run_trial`` is wrapped: a trial config whose ``seed`` is listed
appends one line to ``<markers>/seed<N>.attempts`` (one line per attempt) and then

* ``raise``: raises ``RuntimeError("injected fault ...")``;
* ``sigkill_once``: kills its own process with SIGKILL on the first attempt only, then trains normally;
* ``sigkill_midway``: on the first attempt, kills its process at its second report (the first one has
  reached the driver), then trains normally;
* ``sigkill_always``: kills its own process with SIGKILL on every attempt;
* ``count``: only counts the attempt;
* ``sigkill_after_checkpoint``: on the first attempt, kills its process at the first report after a
  checkpoint file exists in the config's ``checkpoint_dir``, then trains normally.

Each attempt also appends the step of its first report to ``<markers>/seed<N>.first_steps`` (a resumed
attempt starts past step 1).

Any other seed (and the dense baseline) runs untouched. Without ``DISPARSE_TEST_FAULTS`` this file does
nothing.
"""

import importlib.abc
import json
import os
import signal
import sys
import time

_SPEC_FILE = os.environ.get("DISPARSE_TEST_FAULTS")
_TARGET = "disparse_core.trial"


def _wrap(module):
    with open(_SPEC_FILE, encoding="utf-8") as fh:
        spec = json.load(fh)
    markers, by_seed = spec["markers"], {str(k): v for k, v in spec["by_seed"].items()}
    original = module.run_trial

    def run_trial(config, report=None):
        seed = str(dict(config).get("seed")) if hasattr(config, "keys") else None
        action = by_seed.get(seed)
        if action:
            path = os.path.join(markers, f"seed{seed}.attempts")
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()}\n")
            with open(path, encoding="utf-8") as fh:
                attempt = sum(1 for _ in fh)
            if action == "raise":
                raise RuntimeError(f"injected fault: trial with seed {seed} raised (attempt {attempt})")
            if action == "sigkill_always" or (action == "sigkill_once" and attempt == 1):
                os.kill(os.getpid(), signal.SIGKILL)
            report = _watched(report, config, os.path.join(markers, f"seed{seed}.first_steps"),
                              kill=action == "sigkill_after_checkpoint" and attempt == 1,
                              kill_second=action == "sigkill_midway" and attempt == 1)
        return original(config, report)

    module.run_trial = run_trial


def _watched(report, config, steps_file, kill, kill_second=False):
    seen = []
    calls = []
    checkpoint = os.path.join(str(config.get("checkpoint_dir") or ""), "checkpoint.pt")

    def watched(metrics):
        calls.append(metrics.get("step"))
        if kill_second and len(calls) == 2:
            time.sleep(1.0)                      # the first report is logged by the driver meanwhile
            os.kill(os.getpid(), signal.SIGKILL)
        if not seen:
            seen.append(metrics.get("step"))
            with open(steps_file, "a", encoding="utf-8") as fh:
                fh.write(f"{metrics.get('step')}\n")
        if kill and config.get("checkpoint_dir") and os.path.exists(checkpoint):
            os.kill(os.getpid(), signal.SIGKILL)
        if report is not None:
            report(metrics)
    return watched


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _wrap(module)

        spec.loader.exec_module = exec_and_patch
        return spec


if _SPEC_FILE:
    sys.meta_path.insert(0, _PatchOnImport())
