import numpy as np
import pytest
import torch

from disparse_core.data import build_workload, workload_loss_weights, workload_tasks
from disparse_core.data import registry
from disparse_core.data.cues import (LOSS_WEIGHTS, MAX_DOTS, ORIENTATIONS, SHAPE_CLASSES, generate_cues,
                                     load_cues)


def _small(**kw):
    return build_workload("cues", train_size=6, test_size=4, cache_dir=False, **kw)


def test_cues_are_deterministic_by_seed_and_extend_by_index():
    a = generate_cues(5, 32, seed=1)
    b = generate_cues(5, 32, seed=1)
    c = generate_cues(5, 32, seed=2)
    longer = generate_cues(8, 32, seed=1)
    test_split = generate_cues(5, 32, seed=1, split=1)
    for key in a:
        assert np.array_equal(a[key], b[key])
        assert np.array_equal(a[key], longer[key][:5])
    assert not np.array_equal(a["image"], c["image"])
    assert not np.array_equal(a["image"], test_split["image"])


def test_items_have_the_shapes_dtypes_and_ranges_of_their_tasks():
    w = _small()
    assert list(w.tasks) == ["seg", "depth", "count", "orient"]
    assert w.task_channels == {"seg": len(SHAPE_CLASSES), "depth": 1, "count": MAX_DOTS + 1,
                               "orient": len(ORIENTATIONS)}
    assert w.in_channels == 3 and w.image_size == (32, 32)
    image, targets = w.train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert targets["seg"].shape == (32, 32) and targets["seg"].dtype == torch.long
    assert targets["depth"].shape == (1, 32, 32) and targets["depth"].dtype == torch.float32
    assert targets["count"].shape == () and targets["count"].dtype == torch.long
    assert targets["orient"].shape == () and targets["orient"].dtype == torch.long
    arrays = generate_cues(40, 32, seed=0)
    assert set(np.unique(arrays["seg"])) <= set(range(len(SHAPE_CLASSES)))
    assert arrays["depth"].min() >= 1.0 and arrays["depth"].max() <= 4.0
    assert set(np.unique(arrays["count"])) <= set(range(MAX_DOTS + 1))
    assert set(np.unique(arrays["orient"])) <= set(range(len(ORIENTATIONS)))
    images, batch = next(iter(w.train_loader(3)))
    assert images.shape == (3, 3, 32, 32) and batch["count"].shape == (3,)


def test_a_larger_image_size_scales_every_task():
    w = build_workload("cues", image_size=48, train_size=2, test_size=2, cache_dir=False)
    image, targets = w.test[1]
    assert image.shape == (3, 48, 48) and targets["depth"].shape == (1, 48, 48)


def test_a_larger_train_size_keeps_the_items_of_a_smaller_one(tmp_path):
    small = build_workload("cues", train_size=3, test_size=2, cache_dir=tmp_path)
    large = build_workload("cues", train_size=7, test_size=2, cache_dir=tmp_path)
    for i in range(3):
        assert torch.equal(small.train[i][0], large.train[i][0])
        assert torch.equal(small.train[i][1]["seg"], large.train[i][1]["seg"])
        assert small.train[i][1]["count"] == large.train[i][1]["count"]


def test_the_cache_returns_what_was_generated(tmp_path):
    fresh = load_cues(3, 32, seed=4, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("cues-v*.npz"))) == 1
    cached = load_cues(3, 32, seed=4, cache_dir=tmp_path)
    for key in fresh:
        assert np.array_equal(fresh[key], cached[key])


def test_the_registry_describes_cues_without_building_data(monkeypatch):
    def no_build(**kw):
        raise AssertionError("data built")

    monkeypatch.setattr(registry, "_build_cues", no_build)
    tasks = workload_tasks("cues")
    assert list(tasks) == ["seg", "depth", "count", "orient"]
    assert tasks["count"].metrics == ("acc",) and tasks["seg"].num_classes == len(SHAPE_CLASSES) == 3
    assert list(workload_tasks("cues", ["orient", "seg"])) == ["orient", "seg"]
    weights = workload_loss_weights("cues")
    assert weights == LOSS_WEIGHTS and set(weights) == set(tasks)
    assert workload_loss_weights("cues", ["orient"]) == {"orient": LOSS_WEIGHTS["orient"]}
    assert workload_loss_weights("scenes") == {}


def test_the_reference_weights_are_unequal_and_travel_with_a_task_subset():
    assert max(LOSS_WEIGHTS.values()) / min(LOSS_WEIGHTS.values()) > 1
    w = _small()
    assert w.loss_weights == LOSS_WEIGHTS
    sub = _small(tasks=["count", "depth"])
    assert sub.loss_weights == {"count": LOSS_WEIGHTS["count"], "depth": LOSS_WEIGHTS["depth"]}
    assert set(sub.train[0][1]) == {"count", "depth"}


@pytest.mark.parametrize("kwargs, match", [
    ({"image_size": 40}, r"image_size for cues must be one of \(32, 48, 64\), got 40"),
    ({"train_size": 0}, "train_size must be a positive integer, got 0"),
    ({"test_size": 2.5}, "test_size must be a positive integer, got 2.5"),
    ({"tasks": ["normal"]}, "unknown task 'normal' for workload 'cues'"),
])
def test_bad_sizes_and_tasks_are_one_line_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        build_workload("cues", cache_dir=False, **{"train_size": 2, "test_size": 2, **kwargs})
    assert "\n" not in str(info.value)
