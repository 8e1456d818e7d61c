"""Binary weight masks attached with ``torch.nn.utils.parametrize``.

Every prunable tensor (the ``weight`` of each ``Conv2d`` and ``Linear``, unless
:func:`exclude_from_pruning` keeps its layer dense) is known by its *canonical
name*: the module path plus ``.weight``. The name stays the same once a mask is attached, although
parametrize stores the raw tensor at ``<module>.parametrizations.weight.original``.

The mask multiplies the weight in ``forward``; masked positions of the raw tensor are also set to zero
when a mask is attached or changed, so a regrown weight starts from zero and folding is exact.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "MaskParametrization",
    "prunable_modules",
    "exclude_from_pruning",
    "prunable_weights",
    "count_prunable",
    "attach_masks",
    "get_masks",
    "set_masks",
    "remove_masks",
    "fold_masks",
    "sparsity_report",
    "record_effective_weights",
    "weights_redrawn",
]

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)


class MaskParametrization(nn.Module):
    """``weight -> weight * mask``; the mask is a buffer, so it moves and saves with the model."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))
        self.recorded: torch.Tensor | None = None
        self._recording = False
        self._cast: tuple | None = None  # (mask tensor, its _version, dtype, mask in that dtype)

    def _mask_as(self, dtype: torch.dtype) -> torch.Tensor:
        """The mask in ``dtype``, cast once and reused until the mask changes (in-place edits bump
        ``_version``; ``.to(device)`` replaces the buffer), instead of a cast every forward."""
        c = self._cast
        if c is None or c[0] is not self.mask or c[1] != self.mask._version or c[2] != dtype:
            c = self._cast = (self.mask, self.mask._version, dtype, self.mask.to(dtype))
        return c[3]

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        out = weight * self._mask_as(weight.dtype)
        if self._recording:
            # one zero leaf shared by every use of the layer in this forward: its gradient is the
            # sum over all uses (a layer applied twice), not only the last one
            if self.recorded is None:
                self.recorded = torch.zeros_like(out, requires_grad=True)
            out = out + self.recorded
        return out


def exclude_from_pruning(*modules: nn.Module) -> None:
    """Keep these Conv2d/Linear layers (and those inside them) dense: they are no longer prunable weights,
    so no method scores, masks or counts them (e.g. a first conv or an input embedding). Call it before
    the model is sparsified, in the model's ``__init__`` or its factory."""
    for module in modules:
        if not isinstance(module, nn.Module):
            raise ValueError(f"exclude_from_pruning: {module!r} is not an nn.Module")
        for m in module.modules():
            m.disparse_prunable = False


def prunable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """``{canonical weight name: module}`` for every Conv2d/Linear not excluded by
    :func:`exclude_from_pruning`, in module order."""
    return {f"{path}.weight" if path else "weight": m
            for path, m in model.named_modules()
            if isinstance(m, PRUNABLE_TYPES) and getattr(m, "disparse_prunable", True)}


def _raw_weight(module: nn.Module) -> nn.Parameter:
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def mask_param(module: nn.Module) -> MaskParametrization | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations.weight:
        if isinstance(p, MaskParametrization):
            return p
    return None


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """``{canonical name: raw parameter}`` — the tensor the optimizer updates."""
    return {name: _raw_weight(m) for name, m in prunable_modules(model).items()}


def count_prunable(model: nn.Module) -> int:
    """Number of prunable weights (masked or not)."""
    return sum(p.numel() for p in prunable_weights(model).values())


def _check_names(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, nn.Module]:
    modules = prunable_modules(model)
    unknown = sorted(set(masks) - set(modules))
    if unknown:
        raise ValueError(f"mask names not prunable in this model: {unknown[:3]} (expected canonical "
                         f"names such as {next(iter(modules), '<none>')!r})")
    for name, mask in masks.items():
        shape = tuple(_raw_weight(modules[name]).shape)
        if tuple(mask.shape) != shape:
            raise ValueError(f"mask {name!r} has shape {tuple(mask.shape)}, expected {shape}")
    return modules


@torch.no_grad()
def attach_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Attach (or replace) masks; tensors not named keep whatever they had. Zeroes masked weights."""
    modules = _check_names(model, masks)
    for name, mask in masks.items():
        module = modules[name]
        raw = _raw_weight(module)
        mask = mask.to(device=raw.device, dtype=torch.bool)
        existing = mask_param(module)
        if existing is None:
            parametrize.register_parametrization(module, "weight", MaskParametrization(mask))
            raw = _raw_weight(module)
        else:
            existing.mask.copy_(mask)
        raw.mul_(mask.to(raw.dtype))


set_masks = attach_masks


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Current masks; a tensor without a mask reports an all-true mask."""
    out = {}
    for name, module in prunable_modules(model).items():
        mp = mask_param(module)
        out[name] = mp.mask.clone() if mp is not None else torch.ones_like(
            _raw_weight(module), dtype=torch.bool)
    return out


@torch.no_grad()
def remove_masks(model: nn.Module, fold: bool = True) -> None:
    """Remove every mask. ``fold=True`` keeps the masked (zeroed) values as plain weights."""
    for module in prunable_modules(model).values():
        if parametrize.is_parametrized(module, "weight"):
            # a deepcopy shares torch's injected Parametrized* class with the original, and removing
            # the parametrization deletes the property from that class: give this module its own
            cls = module.__class__
            module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=fold)


def fold_masks(model: nn.Module) -> nn.Module:
    """Fold masks into plain weights (zeros stay zeros); returns the model for chaining."""
    remove_masks(model, fold=True)
    return model


@torch.no_grad()
def sparsity_report(model: nn.Module) -> dict:
    """Global and per-layer sparsity of the *effective* prunable weights.

    Returns ``{"total": int, "nonzero": int, "density": float, "sparsity": float,
    "layers": {name: {"total", "nonzero", "sparsity"}}}``. A weight counts as nonzero when its mask
    keeps it and its value is not exactly zero.
    """
    layers, total, nonzero = {}, 0, 0
    for name, module in prunable_modules(model).items():
        raw = _raw_weight(module)
        mp = mask_param(module)
        alive = raw != 0
        if mp is not None:
            alive &= mp.mask
        n, nz = raw.numel(), int(alive.sum())
        layers[name] = {"total": n, "nonzero": nz, "sparsity": 1.0 - nz / n}
        total += n
        nonzero += nz
    density = nonzero / total if total else 0.0
    return {"total": total, "nonzero": nonzero, "density": density, "sparsity": 1.0 - density,
            "layers": layers}


@contextmanager
def record_effective_weights(model: nn.Module) -> Iterator[Callable[[], dict[str, torch.Tensor]]]:
    """Within the block, each forward records a gradient probe for every prunable layer.

    Yields a function that returns ``{canonical name: probe}`` for the latest forward. Differentiating a
    loss with respect to a probe gives the *dense* gradient with respect to the layer's effective weight
    (``raw * mask``), masked positions included and summed over every use of the layer in the forward
    (a layer applied twice) — what SNIP and the dynamic grow step need — without touching ``.grad``.
    A masked layer's probe is a zero tensor added to its effective weight (for values, read the weights
    themselves); an unmasked layer's is its weight parameter.
    """
    modules = prunable_modules(model)
    masked = {n: mp for n, m in modules.items() if (mp := mask_param(m)) is not None}
    for mp in masked.values():
        mp._recording = True

    def current() -> dict[str, torch.Tensor]:
        out = {}
        for name, module in modules.items():
            mp = masked.get(name)
            if mp is None:
                out[name] = module.weight
            elif mp.recorded is not None:
                out[name] = mp.recorded
        return out

    try:
        yield current
    finally:
        for mp in masked.values():
            mp._recording = False
            mp.recorded = None


@contextmanager
def weights_tracked(model: nn.Module) -> Iterator[None]:
    """Within the block, frozen prunable weights (``requires_grad=False``) are tracked by autograd,
    so that ownership and scores see them; their flag is put back afterwards."""
    frozen = [p for p in prunable_weights(model).values() if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)


@contextmanager
def buffers_kept(model: nn.Module) -> Iterator[None]:
    """Run forwards that are not training (scoring, ownership) and put every buffer back afterwards:
    BatchNorm's running statistics and batch counters stay what training made them. Buffers are
    matched by name; one registered inside the block (a mask attached there) is left as it is."""
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name in saved and saved[name].shape == buffer.shape:
                    buffer.copy_(saved[name])


@contextmanager
def weights_redrawn(model: nn.Module, seed: int) -> Iterator[None]:
    """Within the block, every prunable weight is re-drawn Xavier-normal (``std = sqrt(2 / (fan_in +
    fan_out))``, drawn on the CPU from ``torch.Generator().manual_seed(seed)`` in layer order, then
    masked); afterwards the model's own weights are put back bit for bit. Scoring inside the block
    scores a fresh draw of the same architecture, as the DiSparse reference does for its static
    variant (``score_on: reinit``); the masks, biases and norm layers are not touched."""
    weights = prunable_weights(model)
    saved = {n: p.detach().clone() for n, p in weights.items()}
    masks = get_masks(model)
    generator = torch.Generator().manual_seed(int(seed))
    try:
        with torch.no_grad():
            for name, p in weights.items():
                fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(p)
                std = (2.0 / float(fan_in + fan_out)) ** 0.5
                draw = torch.randn(tuple(p.shape), generator=generator) * std
                p.copy_((draw * masks[name].to(draw.dtype)).to(p.device, p.dtype))
        yield
    finally:
        with torch.no_grad():
            for name, p in prunable_weights(model).items():
                p.copy_(saved[name])
