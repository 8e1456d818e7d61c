"""Checkpoints that carry their own config, RNG states as plain data, and export of a sparse model.

Everything saved is tensors or plain Python data, so ``torch.load(path, weights_only=True)`` reads it
back (no pickled objects). Writes are atomic (a temporary file, then ``os.replace``), so a trial killed
while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .masks import fold_masks, prunable_weights, sparsity_report

__all__ = [
    "CHECKPOINT_NAME",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "size_report",
    "export_sparse_model",
]

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` (tensors and plain data only) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(dict(state), tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, onto the CPU)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def rng_state() -> dict:
    """Python, NumPy, torch CPU (and CUDA) generator states as tensors and plain data."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(mt), gauss],
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                       float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- export ---------------------------------------------------------------------------------------

def _layer_bytes(shape: tuple[int, ...], nonzero: int, value_bytes: int) -> dict[str, int]:
    """Storage estimates of one weight tensor: dense, CSR (rows = output channels) and bitmask."""
    numel = math.prod(shape)
    rows = shape[0] if shape else 1
    return {"dense_bytes": numel * value_bytes,
            # values + int32 column indices + int32 row pointers
            "csr_bytes": nonzero * (value_bytes + 4) + (rows + 1) * 4,
            # one bit per position + the nonzero values
            "bitmask_bytes": math.ceil(numel / 8) + nonzero * value_bytes}


@torch.no_grad()
def size_report(model: nn.Module) -> dict:
    """Per-layer nonzeros and storage estimates of the prunable weights, plus the other parameters.

    ``bytes.sparse`` takes, per layer, the smallest of dense / CSR / bitmask storage, and adds the
    non-prunable parameters (biases, norms) densely.
    """
    report = sparsity_report(model)
    weights = prunable_weights(model)
    prunable_ids = {id(p) for p in weights.values()}
    layers, totals = {}, {"dense": 0, "csr": 0, "bitmask": 0, "sparse": 0}
    for name, info in report["layers"].items():
        raw = weights[name]
        est = _layer_bytes(tuple(raw.shape), info["nonzero"], raw.element_size())
        layers[name] = {"shape": list(raw.shape), "total": info["total"], "nonzero": info["nonzero"],
                        "sparsity": info["sparsity"], **est}
        totals["dense"] += est["dense_bytes"]
        totals["csr"] += est["csr_bytes"]
        totals["bitmask"] += est["bitmask_bytes"]
        totals["sparse"] += min(est.values())
    others = [p for p in model.parameters() if id(p) not in prunable_ids]
    other_params = sum(p.numel() for p in others)
    other_bytes = sum(p.numel() * p.element_size() for p in others)
    return {"prunable_total": report["total"], "prunable_nonzero": report["nonzero"],
            "sparsity": report["sparsity"], "other_params": other_params,
            "nonzero_params": report["nonzero"] + other_params,
            "bytes": {"dense": totals["dense"] + other_bytes,
                      "sparse": totals["sparse"] + other_bytes,
                      "csr": totals["csr"] + other_bytes,
                      "bitmask": totals["bitmask"] + other_bytes,
                      "other": other_bytes},
            "layers": layers}


def export_sparse_model(model: nn.Module, path: str | os.PathLike,
                        extra: Mapping[str, Any] | None = None) -> dict:
    """Fold the masks into ``model`` (in place: it loses its masks), save its ``state_dict`` at
    ``path`` and a JSON size report next to it (same name, ``.json``). Returns the report.

    The saved state dict has plain ``….weight`` keys (no parametrizations), so it loads into a freshly
    built model of the same architecture. ``extra`` (plain data, e.g. the config) joins the report.
    """
    path = Path(path)
    report = size_report(model)           # before folding: counts mask ∧ value != 0
    fold_masks(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    if extra:
        report = {**report, **dict(extra)}
    path.with_suffix(".json").write_text(json.dumps(report, indent=1, sort_keys=True))
    return report
