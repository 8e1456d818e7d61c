"""Erdős–Rényi-Kernel (ERK) layer densities and random masks at given densities.

ERK gives small layers (few weights per fan-in + fan-out) a higher density than large ones:
the density of layer ``l`` is proportional to ``(Σ dims / Π dims) ** power``, scaled so that the
parameter-weighted total equals the target density. A layer whose density would exceed 1 is made
dense and the others are re-scaled (repeated until no layer exceeds 1). Layers named in ``dense``
are dense from the start and count toward the total (the DiSparse reference keeps the first conv
dense). ``power=1`` is ERK as in RigL; the DiSparse reference uses ``power=0.9``.

Example::

    shapes = {n: tuple(p.shape) for n, p in prunable_weights(model).items()}
    densities = erk_densities(shapes, density=0.1, power=0.9, dense={next(iter(shapes))})
    masks = random_masks(shapes, densities, torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch

__all__ = ["erk_densities", "uniform_densities", "random_masks", "random_masks_with_counts", "mask_counts"]


def _numel(shape: Iterable[int]) -> int:
    return math.prod(int(d) for d in shape)


def _check_density(density: float) -> None:
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got density={density!r}")


def erk_densities(shapes: Mapping[str, tuple[int, ...]], density: float, power: float = 1.0,
                  dense: frozenset[str] | set[str] = frozenset()) -> dict[str, float]:
    """Per-layer densities whose parameter-weighted mean is ``density`` (ERK distribution).

    ``shapes``: ``{name: weight shape}``. ``dense``: names forced to density 1 (they count toward
    the total). Raises ``ValueError`` when the forced-dense layers alone exceed the budget.
    """
    _check_density(density)
    if power < 0:
        raise ValueError(f"power must be >= 0, got power={power!r}")
    unknown = sorted(set(dense) - set(shapes))
    if unknown:
        raise ValueError(f"dense names not in shapes: {unknown[:3]}")
    sizes = {n: _numel(s) for n, s in shapes.items()}
    if any(v == 0 for v in sizes.values()):
        raise ValueError("every shape must have at least one element")
    total = sum(sizes.values())
    budget = density * total
    dense_set = set(dense)
    raw = {n: (sum(int(d) for d in s) / sizes[n]) ** power for n, s in shapes.items()}
    while True:
        dense_count = sum(sizes[n] for n in dense_set)
        if dense_count > budget * (1 + 1e-12):
            forced = sorted(set(dense), key=lambda n: -sizes[n])
            raise ValueError(f"layers forced dense ({', '.join(forced[:3])}{', ...' if len(forced) > 3 else ''}) "
                             f"hold {dense_count} weights, more than the {budget:.0f} allowed at "
                             f"density={density:.4g}; expected a lower sparsity or fewer dense layers "
                             f"(DynamicSparsifier: dense_first=False)")
        free = [n for n in shapes if n not in dense_set]
        if not free:
            break
        # eps * Σ raw_l n_l = budget - dense_count
        eps = (budget - dense_count) / sum(raw[n] * sizes[n] for n in free)
        over = [n for n in free if eps * raw[n] > 1.0]
        if not over:
            break
        # Make the layer with the highest raw density dense, then re-scale the rest.
        dense_set.add(max(over, key=lambda n: raw[n]))
    return {n: 1.0 if n in dense_set else eps * raw[n] for n in shapes}


def uniform_densities(shapes: Mapping[str, tuple[int, ...]], density: float,
                      dense: frozenset[str] | set[str] = frozenset()) -> dict[str, float]:
    """The same density for every layer (``power=0`` ERK), honouring forced-dense names."""
    return erk_densities(shapes, density, power=0.0, dense=dense)


def mask_counts(shapes: Mapping[str, tuple[int, ...]], densities: Mapping[str, float]) -> dict[str, int]:
    """Kept weights per layer: ``densities[n] * numel`` rounded so that the total is
    ``round(Σ densities[n] * numel)`` exactly (largest-remainder rounding, deterministic)."""
    sizes = {n: _numel(s) for n, s in shapes.items()}
    for n, d in densities.items():
        if not 0.0 <= d <= 1.0:
            raise ValueError(f"density of {n!r} must be in [0, 1], got {d!r}")
    missing = sorted(set(shapes) - set(densities))
    if missing:
        raise ValueError(f"no density given for {missing[:3]}")
    exact = {n: densities[n] * sizes[n] for n in shapes}
    counts = {n: min(sizes[n], math.floor(v + 1e-9)) for n, v in exact.items()}
    short = round(sum(exact.values())) - sum(counts.values())
    order = sorted(shapes, key=lambda n: (-(exact[n] - counts[n]), n))
    for n in order:
        if short <= 0:
            break
        if counts[n] < sizes[n]:
            counts[n] += 1
            short -= 1
    return counts


def random_masks(shapes: Mapping[str, tuple[int, ...]], densities: Mapping[str, float],
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random boolean masks with exactly ``mask_counts(shapes, densities)[n]`` true entries each
    (a uniform random subset, not Bernoulli draws), so the total hits the target."""
    return random_masks_with_counts(shapes, mask_counts(shapes, densities), generator)


def random_masks_with_counts(shapes: Mapping[str, tuple[int, ...]], counts: Mapping[str, int],
                             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random boolean masks with exactly ``counts[n]`` true entries each (layers in ``shapes`` order)."""
    out = {}
    for n, shape in shapes.items():
        size = _numel(shape)
        mask = torch.zeros(size, dtype=torch.bool)
        mask[torch.randperm(size, generator=generator)[:counts[n]]] = True
        out[n] = mask.view(tuple(shape))
    return out
