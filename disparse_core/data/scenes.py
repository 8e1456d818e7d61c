"""``scenes``: procedurally ray-cast 3-D scenes with per-pixel semantic class, depth and normals.

Each image is a pinhole view (60 degree horizontal field of view, camera pitched down 8-25 degrees)
of a floor plane, a back wall of finite height and 2-5 objects (spheres, yaw-rotated boxes, capped
vertical cylinders) resting on the floor. Per pixel, the nearest hit along the ray gives

- ``seg``: class 0 floor, 1 wall, 2 sphere, 3 box, 4 cylinder, 255 (ignore) where the ray hits nothing;
- ``depth``: Euclidean ray distance (0 where nothing is hit);
- ``normal``: the surface normal in the camera frame (x right, y down, z forward; zero vector where
  nothing is hit), facing the camera.

The image is a class-specific albedo (colour drawn from a per-class range, plus a class-specific
texture: floor checkers, wall stripes, box grid, cylinder bands, sphere speckle) times Lambertian
shading under a random light, with mild distance fog and Gaussian noise, so every task is learnable
from pixels: the tasks share edges and shading but need different high-level features.

Every image is generated from its own generator ``default_rng([seed, split, index])``, so a data set
is deterministic and a larger ``train_size`` extends a smaller one. Arrays are cached as ``.npz``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from ._generated import cached_arrays, default_cache_dir, resolve_sizes  # noqa: F401 (re-exported)
from .workload import EpochDataset, TaskInfo, Workload, task_info

__all__ = ["generate_scenes", "load_scenes", "build_scenes", "scenes_tasks", "SCENE_CLASSES",
           "GENERATOR_VERSION", "IMAGE_MEAN", "IMAGE_STD", "default_cache_dir"]

GENERATOR_VERSION = 1
SCENE_CLASSES = ("floor", "wall", "sphere", "box", "cylinder")
IGNORE = 255
IMAGE_MEAN = (0.43, 0.39, 0.35)      # measured on generated images (per RGB channel, 0..1)
IMAGE_STD = (0.125, 0.11, 0.14)
DEFAULTS = {"image_size": 64, "train_size": 1024, "test_size": 256}
ALLOWED_SIZES = (32, 48, 64, 96, 128)

# albedo ranges per class (RGB low, RGB high); ranges overlap a little on purpose
_COLOURS = {
    0: ((0.45, 0.35, 0.25), (0.75, 0.6, 0.45)),   # floor: wood / sand
    1: ((0.55, 0.55, 0.5), (0.9, 0.9, 0.85)),      # wall: light grey / cream
    2: ((0.6, 0.1, 0.1), (0.95, 0.45, 0.35)),      # sphere: reds
    3: ((0.15, 0.45, 0.15), (0.5, 0.85, 0.4)),     # box: greens
    4: ((0.1, 0.2, 0.55), (0.4, 0.5, 0.95)),       # cylinder: blues
}


def scenes_tasks() -> dict[str, TaskInfo]:
    return {
        "seg": task_info("segmentation", num_classes=len(SCENE_CLASSES), ignore_index=IGNORE),
        "depth": task_info("depth"),
        "normal": task_info("normals"),
    }


# ---------------------------------------------------------------------------------------------
# ray casting


class _Frame:
    """Per-pixel buffers of one image: nearest distance, class, normal (world), albedo."""

    def __init__(self, n: int):
        self.t = np.full(n, np.inf)
        self.cls = np.full(n, IGNORE, np.uint8)
        self.normal = np.zeros((n, 3))
        self.albedo = np.zeros((n, 3))

    def update(self, t, normal_fn, albedo_fn, cls: int) -> None:
        """Take the pixels where ``t`` (inf = miss) is nearer than what is there."""
        win = t < self.t
        if not win.any():
            return
        idx = np.nonzero(win)[0]
        self.t[idx] = t[idx]
        self.cls[idx] = cls
        self.normal[idx] = normal_fn(idx)
        self.albedo[idx] = albedo_fn(idx)


def _colour(rng, cls: int) -> np.ndarray:
    lo, hi = _COLOURS[cls]
    return rng.uniform(lo, hi)


def _plane_hits(d_axis, offset):
    """Distance along the ray from the origin to the plane ``axis = offset`` (inf if behind)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = offset / d_axis
    return np.where(t > 1e-6, t, np.inf)


def _render(rng: np.random.Generator, size: int):
    fov = np.deg2rad(60.0)
    f = 0.5 * size / np.tan(fov / 2)
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    cam = np.stack([(u + 0.5 - size / 2) / f, (v + 0.5 - size / 2) / f, np.ones_like(u)], -1)
    cam = cam.reshape(-1, 3)
    cam /= np.linalg.norm(cam, axis=1, keepdims=True)
    pitch = np.deg2rad(rng.uniform(8, 25))
    c, s = np.cos(pitch), np.sin(pitch)
    rot = np.array([[1, 0, 0], [0, c, s], [0, -s, c]])       # camera -> world (y down, pitched down)
    d = cam @ rot.T
    n = d.shape[0]
    frame = _Frame(n)

    height = rng.uniform(1.2, 1.8)                              # floor is the plane y = height
    wall_z = rng.uniform(6.0, 9.0)
    wall_top = height - rng.uniform(2.2, 4.0)

    # floor: checkers on (x, z)
    t = _plane_hits(d[:, 1], height)
    col_a, col_b = _colour(rng, 0), _colour(rng, 0)
    period = rng.uniform(0.6, 1.2)

    def floor_albedo(idx):
        p = d[idx] * t[idx, None]
        check = (np.floor(p[:, 0] / period) + np.floor(p[:, 2] / period)) % 2
        return np.where(check[:, None] > 0, col_a, 0.8 * col_b)

    frame.update(t, lambda idx: np.tile([0.0, -1.0, 0.0], (len(idx), 1)), floor_albedo, 0)

    # back wall with finite height: horizontal stripes
    t = _plane_hits(d[:, 2], wall_z)
    y = d[:, 1] * np.where(np.isfinite(t), t, 0)
    t = np.where(y >= wall_top, t, np.inf)
    wall_col = _colour(rng, 1)
    stripe = rng.uniform(0.3, 0.6)

    def wall_albedo(idx, t=t):
        yy = d[idx, 1] * t[idx]
        band = (np.floor(yy / stripe) % 2)[:, None]
        return wall_col * (1.0 - 0.25 * band)

    frame.update(t, lambda idx: np.tile([0.0, 0.0, -1.0], (len(idx), 1)), wall_albedo, 1)

    for _ in range(rng.integers(2, 6)):
        kind = int(rng.integers(2, 5))
        z = rng.uniform(2.5, wall_z - 1.0)
        x = rng.uniform(-0.45, 0.45) * z
        {2: _sphere, 3: _box, 4: _cylinder}[kind](rng, frame, d, x, z, height)

    # camera-frame normals facing the camera
    normal_world = frame.normal
    facing = np.sum(normal_world * d, axis=1) > 0
    normal_world[facing] *= -1
    normal_cam = normal_world @ rot                              # world -> camera: R^T n

    light = np.array([rng.uniform(-1, 1), rng.uniform(-1.6, -0.6), rng.uniform(-1.0, 0.3)])
    light /= np.linalg.norm(light)
    lambert = np.clip(normal_world @ light, 0, None)
    hit = frame.cls != IGNORE
    depth = np.where(hit, frame.t, 0.0)
    fog = np.exp(-0.04 * depth)[:, None]
    shade = frame.albedo * (0.3 + 0.7 * lambert[:, None]) * fog + (1 - fog) * 0.6
    sky = np.array([0.55, 0.7, 0.9]) * (0.8 + 0.2 * (v.reshape(-1) / size))[:, None]
    image = np.where(hit[:, None], shade, sky)
    image = image + rng.normal(0, 0.03, image.shape)
    image = np.clip(image, 0, 1)

    return (np.round(image * 255).astype(np.uint8).reshape(size, size, 3),
            frame.cls.reshape(size, size),
            depth.astype(np.float32).reshape(size, size),
            np.where(hit[:, None], normal_cam, 0).astype(np.float32).reshape(size, size, 3))


def _sphere(rng, frame: _Frame, d, x, z, height):
    r = rng.uniform(0.3, 0.8)
    centre = np.array([x, height - r, z])
    b = d @ centre
    disc = b * b - (centre @ centre - r * r)
    with np.errstate(invalid="ignore"):
        t = b - np.sqrt(disc)
    t = np.where((disc > 0) & (t > 1e-6), t, np.inf)
    col = _colour(rng, 2)
    speckle = rng.uniform(4, 8)

    def normal(idx):
        return (d[idx] * t[idx, None] - centre) / r

    def albedo(idx):
        nn_ = normal(idx)
        spots = (np.sin(speckle * nn_[:, 0] * 3.1) * np.sin(speckle * nn_[:, 1] * 3.1) > 0.6)
        return col * (1.0 - 0.3 * spots[:, None])

    frame.update(t, normal, albedo, 2)


def _box(rng, frame: _Frame, d, x, z, height):
    half = rng.uniform(0.25, 0.7, 3)
    centre = np.array([x, height - half[1], z])
    yaw = rng.uniform(0, np.pi / 2)
    cy, sy = np.cos(yaw), np.sin(yaw)
    rot = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])     # box -> world
    o = rot.T @ (-centre)
    dl = d @ rot                                               # world -> box: R^T d
    dl = np.where(np.abs(dl) < 1e-12, 1e-12, dl)
    t1 = (-half - o) / dl
    t2 = (half - o) / dl
    tnear = np.minimum(t1, t2)
    tmin = tnear.max(axis=1)
    tmax = np.maximum(t1, t2).min(axis=1)
    t = np.where((tmax >= tmin) & (tmin > 1e-6), tmin, np.inf)
    axis = tnear.argmax(axis=1)
    col = _colour(rng, 3)
    grid = rng.uniform(0.15, 0.3)

    def normal(idx):
        nl = np.zeros((len(idx), 3))
        nl[np.arange(len(idx)), axis[idx]] = -np.sign(dl[idx, axis[idx]])
        return nl @ rot.T

    def albedo(idx):
        pl = o + dl[idx] * t[idx, None]
        lines = np.abs((pl / grid) - np.round(pl / grid)) < 0.12
        on = lines.sum(axis=1) >= 2                            # grid lines on each face
        return col * (1.0 - 0.35 * on[:, None])

    frame.update(t, normal, albedo, 3)


def _cylinder(rng, frame: _Frame, d, x, z, height):
    r = rng.uniform(0.2, 0.5)
    top = height - rng.uniform(0.5, 1.8)
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = d[:, 0] * x + d[:, 2] * z
    disc = b * b - a * (x * x + z * z - r * r)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (b - np.sqrt(disc)) / a
    y_side = d[:, 1] * np.nan_to_num(t_side)
    side = (disc > 0) & (t_side > 1e-6) & (y_side >= top) & (y_side <= height)
    t_side = np.where(side, t_side, np.inf)
    t_cap = _plane_hits(d[:, 1], top)
    px, pz = d[:, 0] * np.nan_to_num(t_cap, posinf=0), d[:, 2] * np.nan_to_num(t_cap, posinf=0)
    t_cap = np.where((px - x) ** 2 + (pz - z) ** 2 <= r * r, t_cap, np.inf)
    t = np.minimum(t_side, t_cap)
    cap = t_cap < t_side
    col = _colour(rng, 4)
    bands = rng.uniform(0.12, 0.25)

    def normal(idx):
        p = d[idx] * t[idx, None]
        n_side = np.stack([(p[:, 0] - x) / r, np.zeros(len(idx)), (p[:, 2] - z) / r], 1)
        return np.where(cap[idx, None], np.array([0.0, -1.0, 0.0]), n_side)

    def albedo(idx):
        yy = d[idx, 1] * t[idx]
        ring = (np.floor((yy - top) / bands) % 2)[:, None]
        return col * (1.0 - 0.3 * ring * (~cap[idx, None]))

    frame.update(t, normal, albedo, 4)


# ---------------------------------------------------------------------------------------------
# data set, cache


def generate_scenes(count: int, size: int = 64, seed: int = 0, split: int = 0, *, progress: bool = True
                    ) -> dict[str, np.ndarray]:
    """Render ``count`` scenes: ``image uint8 (N,H,W,3)``, ``seg uint8 (N,H,W)``,
    ``depth float32 (N,H,W)``, ``normal float32 (N,H,W,3)``; image ``i`` from
    ``default_rng([seed, split, i])``."""
    out = {"image": np.empty((count, size, size, 3), np.uint8),
           "seg": np.empty((count, size, size), np.uint8),
           "depth": np.empty((count, size, size), np.float32),
           "normal": np.empty((count, size, size, 3), np.float32)}
    start = time.perf_counter()
    last = start
    for i in range(count):
        image, seg, depth, normal = _render(np.random.default_rng([seed, split, i]), size)
        out["image"][i], out["seg"][i], out["depth"][i], out["normal"][i] = image, seg, depth, normal
        now = time.perf_counter()
        if progress and (now - last > 1.0 or (i + 1 == count and now - start > 1.0)):
            print(f"\rdisparse: generating scenes {i + 1}/{count}", end="" if i + 1 < count else "\n",
                  file=sys.stderr, flush=True)
            last = now
    return out


def load_scenes(count: int, size: int = 64, seed: int = 0, split: int = 0, *, cache_dir=None,
                progress: bool = True) -> dict[str, np.ndarray]:
    """``generate_scenes`` through the ``.npz`` cache (``cache_dir=False`` disables it)."""
    keys = ("image", "seg", "depth", "normal")
    return cached_arrays("scenes", GENERATOR_VERSION, count, size, seed, split, keys,
                         lambda: generate_scenes(count, size, seed, split, progress=progress), cache_dir)


class SceneDataset(EpochDataset):
    """``(image float (3,H,W) normalised, {"seg": long (H,W), "depth": (1,H,W), "normal": (3,H,W)})``."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.image = torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2)
        self.seg = torch.from_numpy(arrays["seg"])
        self.depth = torch.from_numpy(arrays["depth"])
        self.normal = torch.from_numpy(arrays["normal"]).permute(0, 3, 1, 2)
        self.mean = torch.tensor(IMAGE_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGE_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return self.image.shape[0]

    def __getitem__(self, i):
        image = (self.image[i].float() / 255.0 - self.mean) / self.std
        return image, {"seg": self.seg[i].long(), "depth": self.depth[i].unsqueeze(0).clone(),
                       "normal": self.normal[i].clone()}


def build_scenes(*, image_size=None, train_size=None, test_size=None, seed=0, cache_dir=None,
                 data_root=None, tasks=None) -> Workload:
    size, n_train, n_test = resolve_sizes("scenes", DEFAULTS, ALLOWED_SIZES, image_size, train_size, test_size)
    train = load_scenes(n_train, size, seed, 0, cache_dir=cache_dir)
    test = load_scenes(n_test, size, seed, 1, cache_dir=cache_dir)
    return Workload(name="scenes", tasks=scenes_tasks(), in_channels=3, train=SceneDataset(train),
                    test=SceneDataset(test), image_size=(size, size),
                    info={"classes": SCENE_CLASSES, "generator_version": GENERATOR_VERSION})
