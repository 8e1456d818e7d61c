"""Real multitask data sets in the DiSparse reference layouts (paths in the json relative to root).

- ``nyuv2``: ``root/nyu_v2_3task.json`` = ``{"train": [[img, seg, normal, depth], ...], "test": [...]}``;
  img an RGB png (the reference reads it as BGR with OpenCV; we read RGB with PIL and normalise with
  RGB statistics, the same thing), seg a grayscale png (40 classes, 255 ignore), normal a 3-channel
  png (``0..255 -> -1..1``, renormalised; black or near-zero pixels invalid), depth a float ``.npy``
  (non-positive or non-finite = invalid). Tasks seg, normal (default) and depth. Train crop 321x321.
- ``cityscapes``: ``root/cityscape.json`` with groups ``[img, depth, label2, label7, label19]``, all
  ``.npy``: img RGB ``(H,W,3)`` in ``0..1``, labels with ``-1`` ignore (mapped to 255). Tasks seg
  (``label19``, 19 classes) and depth. Train crop 224x224.
- ``taskonomy``: ``root/taskonomy.json`` with groups ``[img, seg, normal, depth, keypoint, edge]``,
  all png, resized to 256x256 first (nearest) like the reference; seg labels ``1..17 -> 0..16``, 0
  unlabelled (255); normal as for nyuv2, invalid where depth is; depth 16-bit (``>= 64500`` invalid),
  given in metres (``/ 512``); keypoint and edge 16-bit, rescaled to ``0..1`` by the reference ranges
  (``0.005``, ``0.08``). ``root/semseg_prior_factor.npy`` (17+ class weights) becomes the seg task's
  ``class_weights``. Train crop 256x256.

Training items get the reference augmentation (random scale 0.5-1.5, horizontal flip with the
normals' x negated, random crop with padding), seeded by ``(seed, epoch, index)``; test items are full
size and untouched. A missing root, json or listed file raises ``ValueError`` naming the path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .transforms import augment
from .workload import EpochDataset, Workload, task_info

__all__ = ["build_nyuv2", "build_cityscapes", "build_taskonomy", "LAYOUTS", "IMAGE_MEAN", "IMAGE_STD"]

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
IGNORE = 255
CHECK_FIRST = 2000          # groups whose files are checked up front (the rest when loaded)

LAYOUTS = {
    "nyuv2": 'root/nyu_v2_3task.json = {"train": [[img.png, seg.png, normal.png, depth.npy], ...], '
             '"test": [...]}, paths relative to root',
    "cityscapes": 'root/cityscape.json = {"train": [[img.npy, depth.npy, label2.npy, label7.npy, '
                  'label19.npy], ...], "test": [...]}, paths relative to root',
    "taskonomy": 'root/taskonomy.json = {"train": [[img.png, seg.png, normal.png, depth.png, '
                 'keypoint.png, edge.png], ...], "test": [...]} and root/semseg_prior_factor.npy, '
                 'paths relative to root',
}
_INDEX = {"nyuv2": ("nyu_v2_3task.json", 4), "cityscapes": ("cityscape.json", 5),
          "taskonomy": ("taskonomy.json", 6)}


def _bad(name: str, what: str) -> ValueError:
    return ValueError(f"{name}: {what} (expected layout: {LAYOUTS[name]})")


def _load_index(name: str, data_root) -> tuple[Path, dict[str, list[list[str]]]]:
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise _bad(name, f"data_root {root} is not a directory")
    json_name, fields = _INDEX[name]
    path = root / json_name
    if not path.is_file():
        raise _bad(name, f"index file {path} not found")
    try:
        index = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(name, f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(index, dict):
        raise _bad(name, f"{path} must hold an object with 'train' and 'test' lists")
    for split in ("train", "test"):
        groups = index.get(split)
        if not isinstance(groups, list) or not groups:
            raise _bad(name, f"{path} has no non-empty '{split}' list")
        for g in groups:
            if not (isinstance(g, list) and len(g) == fields and all(isinstance(p, str) for p in g)):
                raise _bad(name, f"{path}: every '{split}' entry must be a list of {fields} paths, "
                                 f"got {str(g)[:80]}")
    return root, index


def _check_files(name: str, root: Path, groups: list[list[str]], used: tuple[int, ...]) -> None:
    for g in groups[:CHECK_FIRST]:
        for k in used:
            if not (root / g[k]).is_file():
                raise _bad(name, f"file {root / g[k]} listed in the index not found")


def _subset(name: str, groups: list, n, key: str) -> list:
    if n is None:
        return groups
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{key} must be a positive integer, got {n!r}")
    return groups[:n]


def _read_png(name: str, path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise ValueError(f"{name}: reading png files needs Pillow (pip install pillow)") from None
    if not path.is_file():
        raise _bad(name, f"file {path} not found")
    with Image.open(path) as im:
        return np.array(im)


def _read_npy(name: str, path: Path) -> np.ndarray:
    if not path.is_file():
        raise _bad(name, f"file {path} not found")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise _bad(name, f"cannot read {path}: {str(e).splitlines()[0]}") from None


def _image_tensor(rgb01: np.ndarray) -> torch.Tensor:
    arr = np.asarray(rgb01, np.float32)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    arr = (arr[:, :, :3] - np.asarray(IMAGE_MEAN, np.float32)) / np.asarray(IMAGE_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _depth_tensor(depth: np.ndarray) -> torch.Tensor:
    d = np.asarray(depth, np.float32)
    d = d.reshape(d.shape[:2]) if d.ndim == 3 else d
    d = np.where(np.isfinite(d) & (d > 0), d, 0).astype(np.float32)
    return torch.from_numpy(d)[None]


def _normal_tensor(png: np.ndarray, valid: np.ndarray | None = None) -> torch.Tensor:
    raw = np.asarray(png)[:, :, :3]
    n = raw.astype(np.float32) / 255.0 * 2.0 - 1.0
    norm = np.linalg.norm(n, axis=2, keepdims=True)
    ok = (norm[..., 0] > 0.1) & raw.any(axis=2)
    if valid is not None:
        ok &= valid
    n = np.where(ok[..., None], n / np.maximum(norm, 1e-6), 0).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(n.transpose(2, 0, 1)))


def _seg_tensor(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    lab = np.asarray(labels)
    lab = lab.reshape(lab.shape[:2]) if lab.ndim == 3 else lab
    lab = lab.astype(np.int64)
    lab = np.where((lab >= 0) & (lab < num_classes), lab, IGNORE)
    return torch.from_numpy(lab)


class FolderDataset(EpochDataset):
    """Items read by ``reader(root, group, tasks) -> {"image": ..., task: target}``; train items
    augmented."""

    def __init__(self, name, root, groups, reader, kinds, tasks, *, train, crop, seed):
        self.name, self.root, self.groups, self.reader = name, root, groups, reader
        self.kinds = {"image": "image", **kinds}
        self.pads = {k: (IGNORE if kind == "segmentation" else 0) for k, kind in self.kinds.items()}
        self.tasks, self.train, self.crop, self.augment_seed = list(tasks), train, crop, seed

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i):
        sample = self.reader(self.root, self.groups[i], self.tasks)
        if self.train:
            kinds = {k: self.kinds[k] for k in sample}
            pads = {k: self.pads[k] for k in sample}
            sample = augment(sample, kinds, pads, self.item_rng(i), crop=self.crop)
        image = sample.pop("image")
        return image, sample


def _build(name, tasks_info, reader, used_fields, *, data_root, image_size, default_crop,
           train_size, test_size, seed, tasks, extra_info=None) -> Workload:
    root, index = _load_index(name, data_root)
    crop = default_crop if image_size is None else image_size
    if isinstance(crop, int) and not isinstance(crop, bool):
        crop = (crop, crop)
    if not (isinstance(crop, (tuple, list)) and len(crop) == 2 and all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in crop)):
        raise ValueError(f"image_size for {name} must be a positive int or (h, w), got {image_size!r}")
    tasks = list(tasks_info) if tasks is None else list(tasks)
    train = _subset(name, index["train"], train_size, "train_size")
    test = _subset(name, index["test"], test_size, "test_size")
    _check_files(name, root, train, used_fields)
    _check_files(name, root, test, used_fields)
    kinds = {t: info.kind for t, info in tasks_info.items()}
    info = {"root": str(root), **(extra_info or {})}
    return Workload(
        name=name, tasks={t: tasks_info[t] for t in tasks}, in_channels=3,
        train=FolderDataset(name, root, train, reader, kinds, tasks, train=True, crop=tuple(crop), seed=seed),
        test=FolderDataset(name, root, test, reader, kinds, tasks, train=False, crop=None, seed=seed),
        image_size=tuple(crop), info=info)


# --- NYUv2 ------------------------------------------------------------------------------------

def _nyuv2_reader(root: Path, group: list[str], tasks) -> dict:
    img, seg, normal, depth = (root / p for p in group)
    out = {"image": _image_tensor(_read_png("nyuv2", img).astype(np.float32) / 255.0)}
    if "seg" in tasks:
        out["seg"] = _seg_tensor(_read_png("nyuv2", seg), 40)
    if "normal" in tasks:
        out["normal"] = _normal_tensor(_read_png("nyuv2", normal))
    if "depth" in tasks:
        out["depth"] = _depth_tensor(_read_npy("nyuv2", depth))
    return out


def build_nyuv2(*, data_root, image_size=None, train_size=None, test_size=None, seed=0,
                cache_dir=None, tasks=None) -> Workload:
    info = {"seg": task_info("segmentation", num_classes=40, ignore_index=IGNORE),
            "normal": task_info("normals"), "depth": task_info("depth")}
    tasks = tasks or ["seg", "normal"]
    fields = {"seg": 1, "normal": 2, "depth": 3}
    used = (0, *sorted(fields[t] for t in tasks))
    return _build("nyuv2", info, _nyuv2_reader, used, data_root=data_root, image_size=image_size,
                  default_crop=321, train_size=train_size, test_size=test_size, seed=seed,
                  tasks=tasks)


# --- Cityscapes -------------------------------------------------------------------------------

def _cityscapes_reader(root: Path, group: list[str], tasks) -> dict:
    img, depth, _label2, _label7, label19 = (root / p for p in group)
    out = {"image": _image_tensor(_read_npy("cityscapes", img))}
    if "seg" in tasks:
        out["seg"] = _seg_tensor(_read_npy("cityscapes", label19), 19)
    if "depth" in tasks:
        out["depth"] = _depth_tensor(_read_npy("cityscapes", depth))
    return out


def build_cityscapes(*, data_root, image_size=None, train_size=None, test_size=None, seed=0,
                     cache_dir=None, tasks=None) -> Workload:
    info = {"seg": task_info("segmentation", num_classes=19, ignore_index=IGNORE),
            "depth": task_info("depth")}
    tasks = tasks or ["seg", "depth"]
    used = (0, *sorted({"seg": 4, "depth": 1}[t] for t in tasks))
    return _build("cityscapes", info, _cityscapes_reader, used, data_root=data_root,
                  image_size=image_size, default_crop=224, train_size=train_size,
                  test_size=test_size, seed=seed, tasks=tasks)


# --- Taskonomy --------------------------------------------------------------------------------

TASKONOMY_SIZE = (256, 256)


def _resize_nearest(arr: np.ndarray, size=TASKONOMY_SIZE) -> np.ndarray:
    h, w = arr.shape[:2]
    if (h, w) == tuple(size):
        return arr
    rows = (np.arange(size[0]) * h // size[0])
    cols = (np.arange(size[1]) * w // size[1])
    return arr[rows][:, cols]


def _taskonomy_reader(root: Path, group: list[str], tasks) -> dict:
    img, seg, normal, depth, keypoint, edge = (root / p for p in group)

    def read(p):
        return _resize_nearest(_read_png("taskonomy", p))

    def channel(p):
        a = read(p).astype(np.float32)
        return a[..., 0] if a.ndim == 3 else a

    def unit(p, top):
        return torch.from_numpy(np.clip(channel(p) / 65536.0 / top, 0, 1).astype(np.float32))[None]

    out = {"image": _image_tensor(read(img).astype(np.float32) / 255.0)}
    raw_depth = channel(depth)
    valid = raw_depth < 64500
    if "seg" in tasks:
        labels = channel(seg).astype(np.int64)
        out["seg"] = _seg_tensor(np.where(labels > 0, labels - 1, IGNORE), 17)
    if "normal" in tasks:
        out["normal"] = _normal_tensor(read(normal), valid)
    if "depth" in tasks:
        out["depth"] = _depth_tensor(np.where(valid, raw_depth / 512.0, 0))
    if "keypoint" in tasks:
        out["keypoint"] = unit(keypoint, 0.005)
    if "edge" in tasks:
        out["edge"] = unit(edge, 0.08)
    return out


def build_taskonomy(*, data_root, image_size=None, train_size=None, test_size=None, seed=0,
                    cache_dir=None, tasks=None) -> Workload:
    root, _ = _load_index("taskonomy", data_root)
    prior = root / "semseg_prior_factor.npy"
    if not prior.is_file():
        raise _bad("taskonomy", f"class weight file {prior} not found")
    weights = np.asarray(_read_npy("taskonomy", prior), np.float64).reshape(-1)
    if weights.size < 17:
        raise _bad("taskonomy", f"{prior} must hold at least 17 class weights, got {weights.size}")
    info = {"seg": task_info("segmentation", num_classes=17, ignore_index=IGNORE,
                             class_weights=weights[:17]),
            "normal": task_info("normals"), "depth": task_info("depth"),
            "keypoint": task_info("regression"), "edge": task_info("regression")}
    tasks = tasks or list(info)
    fields = {"seg": 1, "normal": 2, "depth": 3, "keypoint": 4, "edge": 5}
    used = tuple(sorted({0, 3, *(fields[t] for t in tasks)}))
    return _build("taskonomy", info, _taskonomy_reader, used, data_root=data_root,
                  image_size=image_size, default_crop=256, train_size=train_size,
                  test_size=test_size, seed=seed, tasks=tasks)
