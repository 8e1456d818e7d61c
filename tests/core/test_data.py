import json

import numpy as np
import pytest
import torch

from disparse_core.data import WORKLOADS, build_workload, workload_tasks
from disparse_core.data import scenes as scenes_mod
from disparse_core.data.scenes import SCENE_CLASSES, generate_scenes, load_scenes
from disparse_core.data.transforms import random_hflip
from workload_fixtures import make_cityscapes, make_nyuv2, make_taskonomy


# --- registry -------------------------------------------------------------------------------

def test_workload_tasks_follow_the_contract():
    scenes = workload_tasks("scenes")
    assert list(scenes) == ["seg", "depth", "normal"]
    assert scenes["seg"].metrics == ("miou", "pixel_acc") and scenes["seg"].primary == "miou"
    assert scenes["depth"].metrics == ("abs_err", "rel_err", "delta1", "delta2", "delta3")
    assert scenes["normal"].metrics == ("mean", "median", "within_11", "within_22", "within_30")
    assert scenes["normal"]["primary"] == "mean"
    digits = workload_tasks("digits")
    assert {t: i.metrics for t, i in digits.items()} == {"left": ("acc",), "right": ("acc",)}
    assert list(workload_tasks("nyuv2")) == ["seg", "normal"]
    assert list(workload_tasks("nyuv2", ["seg", "depth"])) == ["seg", "depth"]
    assert workload_tasks("cityscapes")["seg"].num_classes == 19
    assert len(workload_tasks("taskonomy")) == 5
    assert set(WORKLOADS) == {"scenes", "digits", "cues", "nyuv2", "cityscapes", "taskonomy"}


def test_unknown_names_are_one_line_value_errors():
    with pytest.raises(ValueError, match="unknown workload 'mnist'.*scenes.*digits"):
        workload_tasks("mnist")
    with pytest.raises(ValueError, match="unknown workload"):
        build_workload("mnist")
    with pytest.raises(ValueError, match="unknown task 'edges'.*seg"):
        workload_tasks("scenes", ["edges"])
    with pytest.raises(ValueError, match="needs data_root"):
        build_workload("nyuv2")
    with pytest.raises(ValueError, match="image_size"):
        build_workload("scenes", image_size=50)


# --- scenes ---------------------------------------------------------------------------------

def test_scenes_are_deterministic_by_seed_and_extend_by_index():
    a = generate_scenes(6, 32, seed=1, progress=False)
    b = generate_scenes(6, 32, seed=1, progress=False)
    c = generate_scenes(6, 32, seed=2, progress=False)
    head = generate_scenes(3, 32, seed=1, progress=False)
    test_split = generate_scenes(3, 32, seed=1, split=1, progress=False)
    for k in a:
        assert np.array_equal(a[k], b[k])
        assert np.array_equal(a[k][:3], head[k])
    assert not np.array_equal(a["image"], c["image"])
    assert not np.array_equal(a["image"][:3], test_split["image"])


def test_scene_labels_are_consistent():
    size = 48
    arrays = generate_scenes(24, size, seed=0, progress=False)
    seg, depth, normal = arrays["seg"], arrays["depth"], arrays["normal"]
    assert arrays["image"].dtype == np.uint8 and arrays["image"].shape == (24, size, size, 3)
    assert set(np.unique(seg)) <= {*range(len(SCENE_CLASSES)), 255}
    assert set(np.unique(seg)) >= set(range(len(SCENE_CLASSES)))      # every class appears
    hit = seg != 255
    assert 0.5 < hit.mean() < 1.0
    assert (depth[hit] > 0).all() and (depth[~hit] == 0).all()
    norms = np.linalg.norm(normal, axis=-1)
    assert np.allclose(norms[hit], 1, atol=1e-4) and (norms[~hit] == 0).all()
    # normals face the camera: n . ray < 0 for every visible pixel (camera frame rays)
    f = 0.5 * size / np.tan(np.deg2rad(30))
    v, u = np.mgrid[0:size, 0:size]
    rays = np.stack([(u + 0.5 - size / 2) / f, (v + 0.5 - size / 2) / f, np.ones((size, size))], -1)
    facing = np.einsum("nhwc,hwc->nhw", normal, rays)
    assert (facing[hit] < 1e-6).all()
    # the floor is below the horizon and the wall/ sky above: floor pixels sit lower in the image
    rows = np.arange(size)[None, :, None]
    floor_rows = np.broadcast_to(rows, seg.shape)[seg == 0].mean()
    wall_rows = np.broadcast_to(rows, seg.shape)[seg == 1].mean()
    assert floor_rows > wall_rows


def test_scenes_cache_hit_returns_identical_arrays(tmp_path, monkeypatch):
    first = load_scenes(5, 32, seed=4, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and f"v{scenes_mod.GENERATOR_VERSION}" in files[0].name

    def fail(*args, **kwargs):
        raise AssertionError("cache miss")

    monkeypatch.setattr(scenes_mod, "generate_scenes", fail)
    second = load_scenes(5, 32, seed=4, cache_dir=tmp_path, progress=False)
    for k in first:
        assert np.array_equal(first[k], second[k]) and first[k].dtype == second[k].dtype
    monkeypatch.setattr(scenes_mod, "GENERATOR_VERSION", scenes_mod.GENERATOR_VERSION + 1)
    with pytest.raises(AssertionError, match="cache miss"):     # a new generator version regenerates
        load_scenes(5, 32, seed=4, cache_dir=tmp_path, progress=False)


def test_scenes_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DISPARSE_CACHE", str(tmp_path / "env"))
    build_workload("scenes", image_size=32, train_size=4, test_size=2)
    assert len(list((tmp_path / "env").glob("*.npz"))) == 2


def test_scenes_workload_items_and_loaders(tmp_path):
    w = build_workload("scenes", image_size=32, train_size=12, test_size=5, cache_dir=tmp_path)
    assert w.in_channels == 3 and w.task_channels == {"seg": 5, "depth": 1, "normal": 3}
    assert w.task_kinds == {"seg": "segmentation", "depth": "depth", "normal": "normals"}
    image, targets = w.train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert targets["seg"].shape == (32, 32) and targets["seg"].dtype == torch.long
    assert targets["depth"].shape == (1, 32, 32) and targets["normal"].shape == (3, 32, 32)
    loader = w.train_loader(4, seed=3)
    assert len(loader) == 3
    epoch0 = [b[1]["seg"] for b in loader]
    epoch1 = [b[1]["seg"] for b in loader]
    again = w.train_loader(4, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(epoch0, [b[1]["seg"] for b in again]))
    assert not all(torch.equal(x, y) for x, y in zip(epoch0, epoch1))
    again.set_epoch(1)
    assert all(torch.equal(x, y) for x, y in zip(epoch1, [b[1]["seg"] for b in again]))
    sizes = [len(b[0]) for b in w.test_loader(2)]
    assert sizes == [2, 2, 1]
    sub = build_workload("scenes", image_size=32, train_size=12, test_size=5, cache_dir=tmp_path,
                         tasks=["normal"])
    assert list(sub.tasks) == ["normal"] and list(sub.train[0][1]) == ["normal"]


# --- digits ---------------------------------------------------------------------------------

def test_digits_pairs_match_their_labels():
    from sklearn.datasets import load_digits
    bunch = load_digits()
    originals = bunch.images.astype(np.float32) / 16.0
    w = build_workload("digits", train_size=40, test_size=20, seed=5)
    assert w.in_channels == 1 and w.task_kinds == {"left": "classification",
                                                   "right": "classification"}
    image, targets = w.train[0]
    assert image.shape == (1, 16, 32) and targets["left"].dtype == torch.long
    from disparse_core.data.digits import MEAN, STD

    def label_of(half):
        match = np.nonzero(np.abs(originals - half).reshape(len(originals), -1).max(1) < 1e-5)[0]
        assert len(match) >= 1
        return {int(bunch.target[m]) for m in match}, set(match.tolist())

    pools = {}
    for split, ds in (("train", w.train), ("test", w.test)):
        pools[split] = set()
        for i in range(len(ds)):
            image, targets = ds[i]
            raw = (image[0].numpy() * STD + MEAN)[::2, ::2]
            for half, task in ((raw[:, :8], "left"), (raw[:, 8:], "right")):
                labels, rows = label_of(half)
                assert int(targets[task]) in labels
                pools[split] |= rows
    assert not pools["train"] & pools["test"]            # no test digit image is seen in training
    again = build_workload("digits", train_size=40, test_size=20, seed=5)
    assert torch.equal(again.train[7][0], w.train[7][0])


# --- real data in the reference layouts -------------------------------------------------------

def _assert_normals(n):
    norms = n.norm(dim=0)
    valid = norms > 0
    assert valid.any()
    assert torch.allclose(norms[valid], torch.ones_like(norms[valid]), atol=1e-5)


def test_nyuv2_fixture_tree(tmp_path):
    make_nyuv2(tmp_path)
    w = build_workload("nyuv2", data_root=tmp_path, image_size=16, seed=1)
    assert list(w.tasks) == ["seg", "normal"] and w.task_channels == {"seg": 40, "normal": 3}
    image, t = w.test[0]
    assert image.shape == (3, 24, 32) and t["seg"].shape == (24, 32) and t["normal"].shape == (3, 24, 32)
    assert (t["seg"][:2] == 255).all() and t["seg"][2:].max() < 40
    _assert_normals(t["normal"])
    assert t["normal"][:, 0, 0].abs().sum() == 0                  # black pixel = invalid
    image, t = w.train[1]
    assert image.shape == (3, 16, 16) and t["seg"].shape == (16, 16)
    assert set(t["seg"].unique().tolist()) <= set(range(40)) | {255}
    again = build_workload("nyuv2", data_root=tmp_path, image_size=16, seed=1)
    assert torch.equal(again.train[1][0], image)                  # seeded augmentation
    three = build_workload("nyuv2", data_root=tmp_path, tasks=["seg", "normal", "depth"])
    depth = three.test[0][1]["depth"]
    assert depth.shape == (1, 24, 32) and (depth[0, -1] == 0).all() and (depth[0, :-1] > 0).all()


def test_cityscapes_fixture_tree(tmp_path):
    make_cityscapes(tmp_path)
    w = build_workload("cityscapes", data_root=tmp_path, image_size=(8, 16), train_size=2)
    assert list(w.tasks) == ["seg", "depth"] and len(w.train) == 2 and len(w.test) == 2
    image, t = w.test[1]
    raw = np.load(tmp_path / "test/001_label19.npy")
    assert torch.equal(t["seg"], torch.from_numpy(np.where(raw < 0, 255, raw).astype(np.int64)))
    assert t["depth"].shape == (1, 16, 32)
    image, t = w.train[0]
    assert image.shape == (3, 8, 16) and t["depth"].shape == (1, 8, 16)


def test_taskonomy_fixture_tree(tmp_path):
    make_taskonomy(tmp_path)
    w = build_workload("taskonomy", data_root=tmp_path, image_size=64)
    assert list(w.tasks) == ["seg", "normal", "depth", "keypoint", "edge"]
    assert len(w.tasks["seg"].class_weights) == 17
    image, t = w.test[0]
    assert image.shape == (3, 256, 256)
    assert set(t["seg"].unique().tolist()) <= set(range(17)) | {255}
    assert (t["depth"][0, :8] == 0).all() and (t["depth"][0, 8:] > 0).all()   # invalid first row
    assert (t["normal"][:, :8].abs().sum() == 0)                               # normals follow depth
    _assert_normals(t["normal"])
    assert 0 <= t["keypoint"].min() and t["edge"].max() <= 1
    image, t = w.train[0]
    assert image.shape == (3, 64, 64) and t["edge"].shape == (1, 64, 64)


@pytest.mark.parametrize("maker,name", [(make_nyuv2, "nyuv2"), (make_cityscapes, "cityscapes"),
                                        (make_taskonomy, "taskonomy")])
def test_bad_paths_name_the_path(tmp_path, maker, name):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=f"{name}: data_root .*nowhere.*expected layout"):
        build_workload(name, data_root=missing)
    root = maker(tmp_path / "root")
    index = next(root.glob("*.json"))
    index.rename(root / "other.json")
    with pytest.raises(ValueError, match=f"index file .*{index.name} not found") as info:
        build_workload(name, data_root=root)
    assert "\n" not in str(info.value)
    (root / "other.json").rename(index)
    victim = root / json.loads(index.read_text())["test"][-1][0]     # the last test image
    victim.unlink()
    with pytest.raises(ValueError, match=f"file .*{victim.name} listed in the index not found"):
        build_workload(name, data_root=root, tasks=list(workload_tasks(name)))
    index.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        build_workload(name, data_root=root)


def test_horizontal_flip_negates_normal_x():
    class Always:
        def random(self):
            return 0.9
    normal = torch.zeros(3, 2, 3)
    normal[0, :, 0], normal[2] = 1.0, -1.0
    image = torch.arange(6.0).view(1, 2, 3)
    out = random_hflip({"image": image, "normal": normal}, {"image": "image", "normal": "normals"},
                       Always())
    assert torch.equal(out["image"], torch.flip(image, dims=[-1]))
    assert (out["normal"][0, :, 2] == -1).all() and (out["normal"][2] == -1).all()
