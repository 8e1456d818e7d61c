"""The CLI-level corpus of malformed input: each case is what a user types (argv) plus the files it names.

A case: ``(id, argv, files, named)``. ``files`` maps a file name under the case's ``in/`` folder to its
text (``BASE`` + a patch, or raw YAML); ``argv`` may use ``{in}`` (that folder), ``{cwd}`` (the case's
empty working directory) and ``{store}`` (an empty folder for MLflow). ``named``: strings the one error
line must contain: the key (or flag), the bad value, and a word of what was expected.
"""

from __future__ import annotations

import copy

import yaml

BASE = {
    "name": "bad",
    "workload": {"workload": "scenes", "tasks": ["seg", "normal"], "image_size": 32, "train_size": 32,
                 "test_size": 16, "width": 8, "steps": 6, "batch_size": 8, "method": "snip",
                 "num_threads": 1},
    "parameters": {"sparsity": {"distribution": "uniform", "low": 0.5, "high": 0.9},
                   "lr": {"distribution": "log_uniform", "low": 1.0e-3, "high": 1.0e-2}},
    "objectives": ["compression", "delta_m"],
    "budgets": {"seg.miou": "-5%"},
    "sampler": {"type": "tpe", "seed": 0},
    "trials": 2, "concurrency": 1, "resources": {"cpu": 1}, "baseline": True, "max_retries": 0,
}


def space(**changes) -> str:
    """BASE with dotted-path changes (``workload__steps=1.5`` sets workload.steps; None deletes)."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        keys = dotted.split("__")
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if value is None:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return yaml.safe_dump(data, sort_keys=False)


S = "{in}/space.yaml"        # most cases: one space file
RUN = ["--space", S, "--tracking-uri", "sqlite:///{store}/mlflow.db", "--dry-run"]
# --dry-run never trains: any case that is NOT rejected prints the plan and exits 0 (the test then fails
# on the exit code rather than starting a sweep)

CASES = [
    # --- YAML syntax --------------------------------------------------------------------------------
    ("yaml-unclosed-list", RUN, {"space.yaml": "name: x\nworkload: [scenes\n"}, ["invalid YAML", "line"]),
    ("yaml-tab-indent", RUN, {"space.yaml": "name: x\nworkload:\n\tsteps: 6\n"}, ["invalid YAML"]),
    ("yaml-duplicate-key", RUN, {"space.yaml": space() + "trials: 3\n"}, ["trials", "duplicate"]),
    ("yaml-not-a-mapping", RUN, {"space.yaml": "- a\n- b\n"}, ["mapping"]),
    ("yaml-empty-file", RUN, {"space.yaml": ""}, ["mapping"]),
    ("yaml-python-tag", RUN, {"space.yaml": space() + "x: !!python/object/apply:os.system ['touch {cwd}/PWNED']\n"},
     ["python/object/apply"]),
    # --- unknown keys -------------------------------------------------------------------------------
    ("unknown-top-key", RUN, {"space.yaml": space(n_trials=4)}, ["n_trials", "trials"]),
    ("unknown-workload-key", RUN, {"space.yaml": space(workload__stepz=10)}, ["workload.stepz", "steps"]),
    ("unknown-param-key", RUN, {"space.yaml": space(parameters__sparsity={"distribution": "uniform", "min": 0.5,
                                                                          "high": 0.9})},
     ["parameters.sparsity.min", "low"]),
    ("unknown-sampler-option", RUN, {"space.yaml": space(sampler={"type": "random", "population_size": 8})},
     ["sampler.population_size", "random"]),
    # --- wrong types --------------------------------------------------------------------------------
    ("type-trials-text", RUN, {"space.yaml": space(trials="many")}, ["trials", "'many'", "integer"]),
    ("type-steps-float", RUN, {"space.yaml": space(workload__steps=1.5)}, ["workload.steps", "1.5", "integer"]),
    ("type-tasks-string", RUN, {"space.yaml": space(workload__tasks="seg")}, ["workload.tasks", "seg", "list"]),
    ("type-baseline-number", RUN, {"space.yaml": space(baseline=3)}, ["baseline", "3", "true or false"]),
    ("type-resources-list", RUN, {"space.yaml": space(resources=[1, 0])}, ["resources", "mapping"]),
    # --- ranges -------------------------------------------------------------------------------------
    ("low-above-high", RUN, {"space.yaml": space(parameters__sparsity={"distribution": "uniform", "low": 0.9,
                                                                       "high": 0.5})},
     ["parameters.sparsity", "0.9", "0.5"]),
    ("log-low-zero", RUN, {"space.yaml": space(parameters__lr={"distribution": "log_uniform", "low": 0,
                                                               "high": 0.01})},
     ["parameters.lr", "0", "> 0"]),
    ("log-low-negative", RUN, {"space.yaml": space(parameters__lr={"distribution": "log_uniform", "low": -1.0e-3,
                                                                   "high": 0.01})},
     ["parameters.lr", "-0.001", "> 0"]),
    ("sparsity-one", RUN, {"space.yaml": space(parameters__sparsity={"distribution": "uniform", "low": 0.5,
                                                                     "high": 1.0})},
     ["parameters.sparsity.high", "1.0", "[0, 1)"]),
    ("sparsity-negative", RUN, {"space.yaml": space(parameters__sparsity=None, workload__sparsity=-0.1)},
     ["workload.sparsity", "-0.1", "[0, 1)"]),
    ("cutoff-beyond-backbone", RUN, {"space.yaml": space(parameters__cutoff={"distribution": "int_uniform",
                                                                             "low": 4, "high": 12})},
     ["parameters.cutoff.high", "12", "8"]),
    ("cutoff-fixed-beyond", RUN, {"space.yaml": space(workload__cutoff=9)}, ["workload.cutoff", "9", "8"]),
    ("trials-zero", RUN, {"space.yaml": space(trials=0)}, ["trials", "0", ">= 1"]),
    ("image-size-unsupported", RUN, {"space.yaml": space(workload__image_size=16)},
     ["image_size", "16", "32"]),
    ("batch-larger-than-data", RUN, {"space.yaml": space(workload__batch_size=64)},
     ["batch_size", "64", "32"]),
    ("cpu-beyond-machine", RUN, {"space.yaml": space(resources={"cpu": 4096})}, ["resources.cpu", "4096"]),
    # --- objectives and budgets ---------------------------------------------------------------------
    ("objective-unknown-metric", RUN, {"space.yaml": space(objectives=["compression", "seg.iou"])},
     ["seg.iou", "miou"]),
    ("budget-unknown-task", RUN, {"space.yaml": space(budgets={"depthx.abs_err": "+5%"})},
     ["depthx.abs_err"]),
    ("budget-inactive-task", RUN, {"space.yaml": space(budgets={"depth.abs_err": "+5%"})},
     ["depth.abs_err", "seg", "normal"]),
    ("budget-unknown-metric", RUN, {"space.yaml": space(budgets={"seg.iou": "-2%"})}, ["seg.iou", "miou"]),
    ("budget-garbage-value", RUN, {"space.yaml": space(budgets={"seg.miou": "abc%"})}, ["seg.miou", "abc%"]),
    ("budget-wrong-sign", RUN, {"space.yaml": space(budgets={"seg.miou": "+2%"})},
     ["seg.miou", "+2%", "-2%"]),
    ("budget-relative-without-baseline", RUN, {"space.yaml": space(baseline=False, objectives=["compression",
                                                                                                "seg.miou"])},
     ["seg.miou", "-5%", "baseline"]),
    ("best-budget-no-operator", ["best", "--budget", "seg.miou", "--tracking-uri",
                                 "sqlite:///{store}/mlflow.db"], {}, ["seg.miou", "expected"]),
    ("best-budget-no-metric", ["best", "--budget", "=5%", "--tracking-uri", "sqlite:///{store}/mlflow.db"], {},
     ["=5%", "expected"]),
    ("best-budget-wrong-sign", ["best", "--budget", "normal.mean=-5%", "--tracking-uri",
                                "sqlite:///{store}/mlflow.db"], {}, ["normal.mean=-5%", "+5%"]),
    ("budget-out-of-range", RUN, {"space.yaml": space(budgets={"seg.miou": ">=1.5"})},
     ["seg.miou", "1.5", "[0, 1]", "<= 1"]),
    ("best-budget-percent-as-fraction", ["best", "--budget", "seg.miou>=75", "--tracking-uri",
                                         "sqlite:///{store}/mlflow.db"], {}, ["seg.miou>=75", "not percent"]),
    ("best-budget-percent-twice", ["best", "--budget", "seg.miou=-2%%", "--tracking-uri",
                                   "sqlite:///{store}/mlflow.db"], {}, ["seg.miou=-2%%"]),
    # --- unknown workload / method / sampler --------------------------------------------------------
    ("unknown-workload", RUN, {"space.yaml": space(workload__workload="imagenet")},
     ["workload.workload", "imagenet", "scenes"]),
    ("unknown-method", RUN, {"space.yaml": space(workload__method="disparse_magic")},
     ["workload.method", "disparse_magic", "disparse_dynamic"]),
    ("unknown-method-in-values", RUN, {"space.yaml": space(workload__method=None,
                                                             parameters__method={"values": ["snip", "rigl2"]})},
     ["parameters.method", "rigl2", "rigl"]),
    ("unknown-sampler", RUN, {"space.yaml": space(sampler={"type": "cmaes"})}, ["sampler.type", "cmaes", "tpe"]),
    ("unknown-criterion-for-method", RUN, {"space.yaml": space(workload__criterion="taylor")},
     ["criterion", "taylor", "snip"]),
    # --- data ---------------------------------------------------------------------------------------
    ("data-root-missing", RUN, {"space.yaml": space(workload__workload="nyuv2", workload__data_root="/no/such/nyuv2",
                                                    workload__image_size=None, workload__train_size=None,
                                                    workload__test_size=None)},
     ["data_root", "/no/such/nyuv2", "folder"]),
    ("data-root-empty-folder", RUN, {"space.yaml": space(workload__workload="nyuv2", workload__data_root="{in}/empty",
                                                         workload__image_size=None, workload__train_size=None,
                                                         workload__test_size=None),
                                     "empty/.keep": ""},
     ["data_root", "empty"]),
    ("data-root-unset-env", RUN, {"space.yaml": space(workload__workload="nyuv2",
                                                      workload__data_root="${DISPARSE_NO_SUCH_VAR}",
                                                      workload__image_size=None, workload__train_size=None,
                                                      workload__test_size=None)},
     ["data_root", "DISPARSE_NO_SUCH_VAR"]),
    ("space-file-missing", ["--space", "{in}/nope.yaml", "--dry-run"], {}, ["space", "nope.yaml"]),
    ("space-is-a-folder", ["--space", "{in}", "--dry-run"], {"x.txt": ""}, ["space"]),
    # --- flags --------------------------------------------------------------------------------------
    ("flag-resume-and-dry-run", ["--resume", "--dry-run"], {}, ["--resume", "--dry-run"]),
    ("flag-unknown", ["--space", S, "--trails", "3"], {"space.yaml": space()}, ["--trails"]),
    ("flag-best-with-resume", ["best", "--budget", "seg.miou=-2%", "--resume"], {}, ["--resume"]),
    ("flag-unknown-command", ["bestt", "--budget", "seg.miou=-2%"], {}, ["bestt"]),
    ("flag-trials-negative", RUN + ["--trials", "-3"], {"space.yaml": space()}, ["--trials", "-3", ">= 1"]),
    ("flag-trials-float", RUN + ["--trials", "2.5"], {"space.yaml": space()}, ["--trials", "2.5", "integer"]),
    ("flag-concurrency-text", RUN + ["--concurrency", "two"], {"space.yaml": space()},
     ["--concurrency", "two", "integer"]),
    ("flag-seed-negative", RUN + ["--seed", "-1"], {"space.yaml": space()}, ["--seed", "-1", "[0, 4294967295]"]),
    ("flag-set-no-equals", RUN + ["--set", "trials"], {"space.yaml": space()}, ["--set", "trials", "KEY=VALUE"]),
    ("flag-set-bad-value", RUN + ["--set", "parameters.sparsity.low=2"], {"space.yaml": space()},
     ["parameters.sparsity.low", "2"]),
    ("flag-set-unknown-key", RUN + ["--set", "workload.stepz=3"], {"space.yaml": space()},
     ["workload.stepz", "steps"]),
    ("flag-ray-address-no-port", RUN + ["--ray-address", "localhost"], {"space.yaml": space()},
     ["--ray-address", "localhost", "HOST:PORT"]),
    ("flag-ray-address-port-range", RUN + ["--ray-address", "127.0.0.1:99999"], {"space.yaml": space()},
     ["--ray-address", "99999", "HOST:PORT"]),
    ("flag-tracking-uri-scheme", ["--space", S, "--tracking-uri", "mysql://db/x", "--dry-run"],
     {"space.yaml": space()}, ["mysql://db/x", "sqlite"]),
    ("flag-tracking-uri-memory", ["--space", S, "--tracking-uri", "sqlite:///:memory:", "--dry-run"],
     {"space.yaml": space()}, ["sqlite:///:memory:", "sqlite:///"]),
    ("flag-results-dir-is-file", RUN + ["--results-dir", "{in}/space.yaml"], {"space.yaml": space()},
     ["--results-dir", "space.yaml", "folder"]),
    ("flag-results-dir-under-file", RUN + ["--results-dir", "{in}/space.yaml/results"], {"space.yaml": space()},
     ["--results-dir", "space.yaml"]),
    ("flag-tracking-uri-under-file", ["--space", S, "--tracking-uri", "sqlite:///{in}/space.yaml/mlflow.db",
                                      "--dry-run"], {"space.yaml": space()}, ["space.yaml/mlflow.db", "writable"]),
    ("flag-resume-no-state", ["--resume", "--results-dir", "{in}"], {"x.txt": ""}, ["--resume", "sweep.json"]),
    ("query-store-missing", ["pareto", "--tracking-uri", "sqlite:///{store}/none.db"], {},
     ["none.db", "expected"]),
    ("query-report-no-sweep-id", ["report", "--sweep"], {}, ["--sweep"]),
    # --- values that used to crash with a traceback, or pass the dry run and fail in the sweep -------------
    ("int-too-big-for-float", RUN + ["--set", "trials=1" + "0" * 400], {"space.yaml": space()},
     ["trials", "shortened", "out of range", ">= 1"]),
    ("int-too-big-in-range", RUN, {"space.yaml": space(parameters__sparsity={"distribution": "uniform", "low": 0.5,
                                                                             "high": 10 ** 400})},
     ["parameters.sparsity.high", "shortened", "[0, 1)"]),
    ("yaml-list-as-key", RUN, {"space.yaml": "name: x\nworkload:\n  ? [a, b]\n  : 2\n"},
     ["line 3", "[a, b]", "mapping key", "strings"]),
    ("set-mapping-key-list", RUN + ["--set", "workload={[a]: 1}"], {"space.yaml": space()},
     ["workload={[a]: 1}", "mapping key", "strings"]),
    ("preset-list", RUN + ["--set", "workload.preset=[a]"], {"space.yaml": space()},
     ["workload.preset", "[a]", "one of"]),
    ("task-not-a-string", RUN, {"space.yaml": space(workload__tasks=[["seg"]])},
     ["workload.tasks[0]", "[seg]", "string"]),
    ("step-nan", RUN + ["--set", "parameters.sparsity.step=.nan"], {"space.yaml": space()},
     ["parameters.sparsity.step", "nan", "finite number > 0"]),
    ("flag-seed-beyond-numpy", RUN + ["--seed", "4294967296"], {"space.yaml": space()},
     ["--seed", "4294967296", "[0, 4294967295]"]),
    ("set-null-misspelt-workload-key", RUN + ["--set", "workload.stepz=null"], {"space.yaml": space()},
     ["workload.stepz=null", "nothing to remove", "steps"]),
    ("set-null-misspelt-nested-key", RUN + ["--set", "workload.dynamic.grwo=null"], {"space.yaml": space()},
     ["workload.dynamic.grwo", "nothing to remove"]),
    ("set-null-unknown-parameter", RUN + ["--set", "parameters.sparsty=null"], {"space.yaml": space()},
     ["parameters.sparsty", "nothing to remove", "sparsity"]),
    ("set-null-unknown-budget", RUN + ["--set", "budgets.seg.mio=null"], {"space.yaml": space()},
     ["budgets.seg.mio", "nothing to remove", "seg.miou"]),
    ("workload-seed-beyond-numpy", RUN, {"space.yaml": space(workload__seed=2 ** 32)},
     ["workload.seed", "4294967296", "4294967295"]),
    ("name-path-separator", RUN, {"space.yaml": space(name="../escape")},
     ["name", "'../escape'", "folder name"]),
    ("name-newline", RUN, {"space.yaml": space(name="a\nb")}, ["name", "'a\\nb'", "folder name"]),
    ("relative-budget-baseline-metrics-lack-it", RUN,
     {"space.yaml": space(baseline=False, objectives=["compression"],
                          workload__baseline_metrics={"normal.mean": 20})},
     ["budgets.seg.miou", "-5%", "baseline_metrics with seg.miou"]),
    ("device-trailing-newline", RUN, {"space.yaml": space(workload__device="cpu\n")},
     ["workload.device", "'cpu\\n'", "cuda:N"]),
    ("device-cuda-without-gpu", RUN, {"space.yaml": space(workload__device="cuda")},
     ["workload.device", "'cuda'", "resources.gpu > 0"]),
    ("cpu-finer-than-ray", RUN, {"space.yaml": space(resources={"cpu": 1.0e-9})},
     ["resources.cpu", "1e-09", "at least 0.0001"]),
]
