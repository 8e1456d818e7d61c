"""Tiny data trees in the reference layouts (DISPARSE.md section 9), for the real-data loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def _normal_png(rng, h, w) -> np.ndarray:
    n = rng.normal(size=(h, w, 3))
    n[..., 2] = -np.abs(n[..., 2]) - 0.5
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    png = np.round((n + 1) / 2 * 255).astype(np.uint8)
    png[0, 0] = 0                                   # one invalid (black) pixel
    return png


def make_nyuv2(root: Path, n_train=3, n_test=2, h=24, w=32) -> Path:
    rng = np.random.default_rng(0)
    groups = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            stem = f"{split}/{i:03d}"
            (root / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"{stem}_img.png")
            seg = rng.integers(0, 40, (h, w), dtype=np.uint8)
            seg[:2] = 255
            Image.fromarray(seg).save(root / f"{stem}_seg.png")
            Image.fromarray(_normal_png(rng, h, w)).save(root / f"{stem}_normal.png")
            depth = rng.uniform(0.5, 10, (h, w)).astype(np.float32)
            depth[-1] = 0
            np.save(root / f"{stem}_depth.npy", depth)
            groups[split].append([f"{stem}_img.png", f"{stem}_seg.png", f"{stem}_normal.png",
                                  f"{stem}_depth.npy"])
    (root / "nyu_v2_3task.json").write_text(json.dumps(groups))
    return root


def make_cityscapes(root: Path, n_train=3, n_test=2, h=16, w=32) -> Path:
    rng = np.random.default_rng(1)
    groups = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            stem = f"{split}/{i:03d}"
            (root / split).mkdir(parents=True, exist_ok=True)
            np.save(root / f"{stem}_img.npy", rng.uniform(0, 1, (h, w, 3)).astype(np.float32))
            np.save(root / f"{stem}_depth.npy", rng.uniform(0, 1, (h, w, 1)).astype(np.float32))
            names = [f"{stem}_img.npy", f"{stem}_depth.npy"]
            for k in (2, 7, 19):
                lab = rng.integers(-1, k, (h, w)).astype(np.float32)
                np.save(root / f"{stem}_label{k}.npy", lab)
                names.append(f"{stem}_label{k}.npy")
            groups[split].append(names)
    (root / "cityscape.json").write_text(json.dumps(groups))
    return root


def make_taskonomy(root: Path, n_train=2, n_test=1, size=32) -> Path:
    rng = np.random.default_rng(2)
    groups = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            d = root / split / f"{i:03d}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / "rgb.png")
            Image.fromarray(rng.integers(0, 18, (size, size), dtype=np.uint8)).save(d / "seg.png")
            Image.fromarray(_normal_png(rng, size, size)).save(d / "normal.png")
            depth = rng.integers(100, 60000, (size, size)).astype(np.uint16)
            depth[0] = 65535                                            # invalid row
            Image.fromarray(depth).save(d / "depth.png")
            Image.fromarray(rng.integers(0, 400, (size, size)).astype(np.uint16)).save(d / "keypoint.png")
            Image.fromarray(rng.integers(0, 6000, (size, size)).astype(np.uint16)).save(d / "edge.png")
            rel = f"{split}/{i:03d}"
            groups[split].append([f"{rel}/{k}.png" for k in
                                  ("rgb", "seg", "normal", "depth", "keypoint", "edge")])
    (root / "taskonomy.json").write_text(json.dumps(groups))
    np.save(root / "semseg_prior_factor.npy", np.linspace(0.5, 2.0, 18))
    return root
