"""Seeded joint augmentation of an image and its dense targets (random scale, flip, crop with pad).

A sample is ``{"image": float (C,H,W), task: target}`` with dense targets ``(H,W)`` (segmentation,
long) or ``(K,H,W)`` (float). Each key has a kind that decides interpolation, padding and flipping:
``image`` bilinear, pad 0 (the normalised mean); ``segmentation`` nearest, pad ``ignore_index``;
``depth``/``regression`` nearest, pad 0 (invalid); ``normals`` nearest, pad 0 (invalid), x negated
on a horizontal flip. All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["random_scale", "random_hflip", "random_crop", "augment"]


def _resize(x: torch.Tensor, size: tuple[int, int], kind: str) -> torch.Tensor:
    if kind == "segmentation":
        y = F.interpolate(x[None, None].float(), size=size, mode="nearest")
        return y[0, 0].to(x.dtype)
    mode = "bilinear" if kind == "image" else "nearest"
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(x[None].float(), size=size, mode=mode, **kw)[0]


def random_scale(sample: dict, kinds: dict, rng: np.random.Generator, low=0.5, high=1.5) -> dict:
    h, w = sample["image"].shape[-2:]
    s = rng.uniform(low, high)
    size = (max(1, int(h * s)), max(1, int(w * s)))
    return {k: _resize(v, size, kinds[k]) for k, v in sample.items()}


def random_hflip(sample: dict, kinds: dict, rng: np.random.Generator) -> dict:
    if rng.random() < 0.5:
        return sample
    out = {}
    for k, v in sample.items():
        v = torch.flip(v, dims=[-1])
        if kinds[k] == "normals":
            v = v.clone()
            v[0] = -v[0]
        out[k] = v
    return out


def random_crop(sample: dict, kinds: dict, pads: dict, rng: np.random.Generator,
                size: tuple[int, int]) -> dict:
    """Pad (centred) up to ``size`` where smaller, then crop ``size`` at a random position."""
    ch, cw = size
    h, w = sample["image"].shape[-2:]
    ph, pw = max(ch, h), max(cw, w)
    top, left = (ph - h) // 2, (pw - w) // 2
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    out = {}
    for k, v in sample.items():
        if (ph, pw) != (h, w):
            canvas = torch.full((*v.shape[:-2], ph, pw), pads[k], dtype=v.dtype)
            canvas[..., top:top + h, left:left + w] = v
            v = canvas
        out[k] = v[..., y0:y0 + ch, x0:x0 + cw].contiguous()
    return out


def augment(sample: dict, kinds: dict, pads: dict, rng: np.random.Generator,
            crop: tuple[int, int] | None, scale=(0.5, 1.5), flip: bool = True) -> dict:
    """The reference training augmentation: random scale, horizontal flip, random crop."""
    if scale is not None:
        sample = random_scale(sample, kinds, rng, *scale)
    if flip:
        sample = random_hflip(sample, kinds, rng)
    if crop is not None:
        sample = random_crop(sample, kinds, pads, rng, crop)
    return sample
