"""ERK layer densities, exact-count random masks, and the schedules (pure functions)."""

import math

import pytest
import torch

from disparse_core.erk import erk_densities, mask_counts, random_masks, uniform_densities
from disparse_core.schedules import cubic_sparsity, drop_fraction, is_update_step, update_steps

SHAPES = {
    "conv1": (16, 3, 3, 3),
    "conv2": (32, 16, 3, 3),
    "conv3": (64, 32, 3, 3),
    "fc": (10, 64),
    "tiny": (2, 2),
}


def _sizes(shapes):
    return {n: math.prod(s) for n, s in shapes.items()}


def _total_density(densities, shapes):
    sizes = _sizes(shapes)
    return sum(densities[n] * sizes[n] for n in shapes) / sum(sizes.values())


@pytest.mark.parametrize("density", [0.05, 0.1, 0.3, 0.7])
@pytest.mark.parametrize("power", [1.0, 0.9, 0.5])
def test_erk_total_matches_target(density, power):
    d = erk_densities(SHAPES, density, power=power)
    assert _total_density(d, SHAPES) == pytest.approx(density, rel=1e-9)
    assert all(0.0 <= v <= 1.0 for v in d.values())


def test_erk_is_proportional_to_raw_score_and_caps_small_layers():
    d = erk_densities(SHAPES, 0.1, power=1.0)
    assert d["tiny"] == 1.0  # (2+2)/4 = 1 -> would exceed 1, made dense
    free = [n for n, v in d.items() if v < 1.0]
    assert len(free) >= 3
    ratios = {n: d[n] / (sum(SHAPES[n]) / math.prod(SHAPES[n])) for n in free}
    first = next(iter(ratios.values()))
    assert all(r == pytest.approx(first) for r in ratios.values())
    # the smaller the layer (per fan-in + fan-out), the denser
    assert d["conv1"] > d["conv2"] > d["conv3"]


def test_erk_forced_dense_counts_toward_total():
    d = erk_densities(SHAPES, 0.1, power=0.9, dense={"conv1"})
    assert d["conv1"] == 1.0
    assert _total_density(d, SHAPES) == pytest.approx(0.1)
    without = erk_densities(SHAPES, 0.1, power=0.9)
    assert d["conv3"] < without["conv3"]  # the others pay for the dense layer


def test_erk_errors_and_uniform():
    with pytest.raises(ValueError, match="density"):
        erk_densities(SHAPES, 0.0)
    with pytest.raises(ValueError, match="forced dense"):
        erk_densities(SHAPES, 0.01, dense={"conv3"})
    with pytest.raises(ValueError, match="not in shapes"):
        erk_densities(SHAPES, 0.1, dense={"nope"})
    u = uniform_densities({"a": (10, 10), "b": (20, 5, 3)}, 0.25)
    assert u == pytest.approx({"a": 0.25, "b": 0.25})
    assert erk_densities(SHAPES, 1.0) == {n: 1.0 for n in SHAPES}


def test_random_masks_have_exact_counts_and_total():
    d = erk_densities(SHAPES, 0.1, power=0.9, dense={"conv1"})
    masks = random_masks(SHAPES, d, torch.Generator().manual_seed(0))
    counts = mask_counts(SHAPES, d)
    sizes = _sizes(SHAPES)
    for n, m in masks.items():
        assert m.dtype == torch.bool and tuple(m.shape) == SHAPES[n]
        assert int(m.sum()) == counts[n]
        assert abs(counts[n] - d[n] * sizes[n]) < 1.0
    assert sum(counts.values()) == round(0.1 * sum(sizes.values()))
    assert bool(masks["conv1"].all())


def test_random_masks_are_seeded():
    d = erk_densities(SHAPES, 0.2)
    a = random_masks(SHAPES, d, torch.Generator().manual_seed(1))
    b = random_masks(SHAPES, d, torch.Generator().manual_seed(1))
    c = random_masks(SHAPES, d, torch.Generator().manual_seed(2))
    assert all(torch.equal(a[n], b[n]) for n in SHAPES)
    assert not torch.equal(a["conv3"], c["conv3"])


def test_drop_fraction_decays():
    kw = dict(alpha0=0.5, t_end=100)
    assert drop_fraction(0, **kw) == pytest.approx(0.5)
    assert drop_fraction(50, **kw) == pytest.approx(0.25)
    assert drop_fraction(25, **kw) == pytest.approx(0.25 * (1 + math.cos(math.pi / 4)))
    assert drop_fraction(100, **kw) == 0.0 and drop_fraction(150, **kw) == 0.0
    assert drop_fraction(50, decay="linear", **kw) == pytest.approx(0.25)
    assert drop_fraction(99, decay="constant", **kw) == 0.5
    assert drop_fraction(100, decay="constant", **kw) == 0.0
    with pytest.raises(ValueError, match="decay"):
        drop_fraction(0, decay="exp", **kw)


def test_cubic_sparsity_endpoints_and_shape():
    kw = dict(initial=0.0, final=0.9, start=100, n=10, interval=20)
    assert cubic_sparsity(0, **kw) == 0.0
    assert cubic_sparsity(100, **kw) == 0.0
    assert cubic_sparsity(300, **kw) == pytest.approx(0.9)
    assert cubic_sparsity(10_000, **kw) == pytest.approx(0.9)
    assert cubic_sparsity(200, **kw) == pytest.approx(0.9 + (0.0 - 0.9) * 0.5 ** 3)
    values = [cubic_sparsity(t, **kw) for t in range(100, 301, 20)]
    assert values == sorted(values)
    with pytest.raises(ValueError, match="final"):
        cubic_sparsity(0, initial=0.0, final=1.0, start=0, n=1, interval=1)


def test_update_steps():
    assert update_steps(delta_t=50, t_end=200) == [50, 100, 150]
    assert [s for s in range(300) if is_update_step(s, delta_t=50, t_end=200)] == [50, 100, 150]
