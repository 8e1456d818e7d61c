"""A workload and an architecture of the user's own in the core: factory specs, custom tasks with their
own metrics and directions, layers kept dense, and a whole trial on them (docs/extending.md)."""

from __future__ import annotations

import math
import sys
import uuid

import pytest
import torch
from torch import nn

from disparse_core import run_trial
from disparse_core.config import TrialConfig, resolved_config
from disparse_core.data import TaskInfo, Workload, build_workload, custom_task, workload_tasks
from disparse_core.factories import check_factory, user_code_paths
from disparse_core.masks import exclude_from_pruning, prunable_weights
from disparse_core.metric_keys import higher_is_better, metric_range
from disparse_core.metrics import evaluate
from disparse_core.models import build_model, count_prunable_params, fully_shared_prunable
from toy_models import single_thread  # noqa: F401  (one torch thread for this module)

DATA = '''
import torch
from torch.utils.data import Dataset
from disparse_core.data import Workload, custom_task, task_info


class Pairs(Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, 8, 8, generator=g)
        self.a = (self.x.mean(dim=(1, 2, 3)) > 0).long()
        self.b = self.x.mean(dim=(1, 2, 3)).unsqueeze(-1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], {"a": self.a[i], "b": self.b[i]}


def close(outputs, targets):
    return float(((outputs - targets).abs() < 0.25).float().mean())


def build(n=16, seed=0):
    tasks = {"a": task_info("classification", num_classes=2),
             "b": custom_task(loss=lambda out, y: (out - y).abs().mean(), metrics={"close": (close, "max", 0, 1)})}
    return Workload(name="pairs", tasks=tasks, in_channels=3, train=Pairs(n, seed), test=Pairs(8, seed + 1))
'''

NET = '''
from torch import nn
from disparse_core.masks import exclude_from_pruning


class Net(nn.Module):
    def __init__(self, tasks, width):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        exclude_from_pruning(self.stem)
        self.trunk = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.heads = nn.ModuleDict({t: nn.Linear(width, c) for t, c in tasks.items()})

    def forward(self, x):
        h = self.trunk(self.stem(x)).mean(dim=(2, 3))
        return {t: head(h) for t, head in self.heads.items()}


def build(task_channels, width=4):
    return Net(task_channels, width)
'''


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """``(data module, net module)`` names of the two files written into a folder on sys.path."""
    tag = uuid.uuid4().hex[:8]
    data, net = f"byo_data_{tag}", f"byo_net_{tag}"
    (tmp_path / f"{data}.py").write_text(DATA)
    (tmp_path / f"{net}.py").write_text(NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    return data, net


def test_a_factory_spec_is_normalised_and_a_bad_one_is_one_line():
    names = ("scenes", "digits")
    assert check_factory("workload", "scenes", names, "workload") == "scenes"
    assert check_factory("workload", "mydata:build", names, "workload") == {"factory": "mydata:build", "args": {}}
    spec = {"factory": "pkg.data:make", "args": {"root": "/d"}}
    assert check_factory("workload", spec, names, "workload") == spec
    for value, message in [("scenez", "'scenez' is not a known workload (did you mean 'scenes'?); expected one of "
                                      "scenes, digits, or a factory 'module:function'"),
                           ({"factory": "my data:build"}, "workload.factory: 'my data:build' is not an import path"),
                           ({"factory": "m:f", "arg": {}}, "workload.arg: unknown key; expected factory and args"),
                           ({"factory": "m:f", "args": [1]}, "workload.args: [1] is not a mapping"),
                           (3, "workload: 3 is not a workload name or factory")]:
        with pytest.raises(ValueError) as err:
            check_factory("workload", value, names, "workload")
        assert str(err.value).startswith(message) or message in str(err.value), str(err.value)
        assert "\n" not in str(err.value)


def test_a_module_in_the_working_directory_is_found_and_named_as_user_code(tmp_path, monkeypatch):
    name = f"byo_cwd_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    spec = {"factory": f"{name}:build", "args": {"width": 2}}
    model = build_model(spec, {"a": 2})
    assert isinstance(model, nn.Module) and set(model(torch.zeros(1, 3, 4, 4))) == {"a"}
    assert user_code_paths(spec) == [(tmp_path / f"{name}.py").resolve()]
    assert user_code_paths({"factory": "json:loads"}) == []     # installed: nothing to ship


def test_a_custom_task_has_its_loss_metrics_and_direction(user_modules):
    data, _ = user_modules
    infos = workload_tasks({"factory": f"{data}:build", "args": {}})
    assert list(infos) == ["a", "b"] and infos["b"].kind == "custom" and infos["b"].metrics == ("close",)
    assert higher_is_better("b.close") and metric_range("b.close") == (0.0, 1.0)
    with pytest.raises(ValueError, match="metric 'acc' with direction 'min'.*already known as higher"):
        custom_task(loss=lambda o, y: o.sum(), metrics={"acc": (lambda o, y: 0.0, "min")})
    with pytest.raises(ValueError, match="direction 'up' is not a direction; expected max or min"):
        custom_task(loss=lambda o, y: o.sum(), metrics={"hits": (lambda o, y: 0.0, "up")})


def test_a_custom_metric_is_computed_once_over_the_whole_test_set():
    """A median over the whole set is not the mean of the batches' medians."""
    info = custom_task(loss=lambda o, y: o.sum(), metrics={"med_err": (lambda o, y: float((o - y).abs().median()), "min")})
    targets = torch.tensor([0.0, 0.0, 0.0, 10.0, 10.0, 10.0]).unsqueeze(-1)
    batches = [(torch.zeros(3, 1), {"t": targets[:3]}), (torch.zeros(3, 1), {"t": targets[3:]})]

    class Zero(nn.Module):
        def forward(self, x):
            return {"t": x}

    result = evaluate(Zero(), batches, {"t": info})
    assert result == {"t.med_err": 0.0}      # median of 0,0,0,10,10,10 (lower middle); batch medians: 0 and 10


def test_excluded_layers_are_neither_prunable_nor_counted_nor_pruned(user_modules):
    _, net = user_modules
    model = build_model({"factory": f"{net}:build", "args": {"width": 4}}, {"a": 2})
    names = list(prunable_weights(model))
    assert "stem.weight" not in names and names == ["trunk.1.weight", "heads.a.weight"]
    assert count_prunable_params(model) == 4 * 4 * 9 + 4 * 2
    extra = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.Conv2d(1, 1, 1)))
    exclude_from_pruning(extra)
    assert prunable_weights(extra) == {}
    with pytest.raises(ValueError, match="not an nn.Module"):
        exclude_from_pruning("stem")


def test_a_trial_runs_on_the_user_s_workload_and_arch(user_modules):
    data, net = user_modules
    config = {"workload": {"factory": f"{data}:build", "args": {"n": 16}}, "arch": f"{net}:build",
              "method": "disparse_static", "sparsity": 0.5, "steps": 4, "batch_size": 4, "eval_every": 2,
              "num_threads": 1, "score_batches": 1}
    result = run_trial(config)
    assert {"a.acc", "b.close", "compression", "sparsity"} <= set(result)
    assert 0.0 <= result["b.close"] <= 1.0
    assert math.isclose(result["compression"], result["sparsity"], abs_tol=1e-9)   # no cutoff: own weights
    resolved = resolved_config(config)
    assert resolved["workload"] == {"factory": f"{data}:build", "args": {"n": 16}}
    assert resolved["arch"] == {"factory": f"{net}:build", "args": {}}
    assert resolved["tasks"] == ["a", "b"] and resolved["width"] is None
    assert TrialConfig.from_dict(resolved).arch == resolved["arch"]          # round-trips
    workload = build_workload(resolved["workload"], tasks=["b"])
    assert isinstance(workload, Workload) and list(workload.tasks) == ["b"]
    assert isinstance(workload.tasks["b"], TaskInfo)
    assert fully_shared_prunable(resolved["arch"], {"a": 2, "b": 1}) == 4 * 4 * 9 + 4 * 2 + 4


def test_cutoff_and_width_do_not_apply_to_a_factory_arch(user_modules):
    data, net = user_modules
    base = {"workload": f"{data}:build", "arch": f"{net}:build"}
    with pytest.raises(ValueError, match="cutoff: 2 applies to the built-in archs"):
        TrialConfig.from_dict({**base, "cutoff": 2})
    with pytest.raises(ValueError, match="width: only arch 'small' takes a width"):
        TrialConfig.from_dict({**base, "width": 8})


def test_a_factory_that_returns_the_wrong_thing_is_one_line(user_modules, tmp_path):
    name = f"byo_bad_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def data():\n    return [1, 2]\n\ndef net(**kw):\n    return 'net'\n")
    with pytest.raises(ValueError, match=r"^workload: factory '.*:data' returned list; expected a "
                                         r"disparse_core.data.Workload"):
        build_workload({"factory": f"{name}:data", "args": {}})
    with pytest.raises(ValueError, match=r"^arch: factory '.*:net' returned str; expected a torch.nn.Module"):
        build_model({"factory": f"{name}:net", "args": {}}, {"a": 1})


def test_the_code_fingerprint_records_the_source_and_a_changed_file_is_refused(tmp_path, monkeypatch):
    from disparse_core.factories import code_fingerprint
    name = f"byo_fp_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = check_factory("arch", f"{name}:build", ("small",), "arch")
    build_model(spec, {"a": 2})
    fingerprint = code_fingerprint(spec)
    assert fingerprint.startswith("sha256:") and len(fingerprint) == len("sha256:") + 12
    assert check_factory("arch", {**spec, "code": fingerprint}, ("small",), "arch")["code"] == fingerprint
    build_model({**spec, "code": fingerprint}, {"a": 2})                  # the same source: fine
    path.write_text(NET + "\n# edited\n")
    with pytest.raises(ValueError, match=r"^arch.code: the source of .* is not the one the sweep checked"):
        build_model({**spec, "code": fingerprint}, {"a": 2})
