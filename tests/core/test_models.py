import pytest
import torch
from torch import nn

from disparse_core.masks import prunable_weights
from disparse_core.models import (ARCHS, build_model, count_params, count_prunable_params,
                                  fully_shared_prunable, num_blocks)
from disparse_core.ownership import task_ownership

SCENES = {"seg": 5, "depth": 1, "normal": 3}
NYU = {"seg": 40, "normal": 3}


def _owner_of_branch(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] in ("branches", "heads") else None


def _check_ownership(model, x, tasks):
    owners = task_ownership(model, x)
    assert owners, "no prunable tensor found"
    for name, got in owners.items():
        block = model.block_index(name)
        if block is not None and block < model.cutoff:
            assert name.startswith("shared."), name
            assert got == frozenset(tasks), (name, got)
        else:
            task = _owner_of_branch(name)
            assert task in tasks, name
            assert got == frozenset({task}), (name, got)


@pytest.mark.parametrize("cutoff", range(0, 9))
def test_small_every_cutoff_runs_and_splits_ownership(cutoff):
    model = build_model("small", SCENES, cutoff=cutoff, width=8, seed=0)
    assert model.num_blocks == num_blocks("small") == 8
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert list(out) == list(SCENES)
    for task, ch in SCENES.items():
        assert out[task].shape == (2, ch, 32, 32)
    sum(o.square().mean() for o in out.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    _check_ownership(model, x, set(SCENES))


@pytest.mark.parametrize("cutoff", [0, 5, 8])
def test_branched_copies_start_identical_and_match_the_shared_model(cutoff):
    shared = build_model("small", SCENES, seed=3)
    branched = build_model("small", SCENES, cutoff=cutoff, seed=3)
    for i in range(branched.num_blocks):
        reference = shared.shared[i].state_dict()
        copies = ([branched.shared[i]] if i < cutoff else
                  [branched.branches[t][i - cutoff] for t in SCENES])
        for copy in copies:
            state = copy.state_dict()
            assert state.keys() == reference.keys()
            for k in state:
                assert torch.equal(state[k], reference[k]), (i, k)
    # copies are separate tensors: training one task's branch leaves the others alone
    if cutoff < branched.num_blocks:
        seg_w = next(branched.branches["seg"][0].parameters())
        depth_w = next(branched.branches["depth"][0].parameters())
        with torch.no_grad():
            seg_w.add_(1.0)
        assert not torch.equal(seg_w, depth_w)


def test_block_prefixes_cover_every_backbone_weight():
    model = build_model("small", SCENES, cutoff=3, width=8)
    prefixes = model.block_prefixes()
    assert len(prefixes) == model.num_blocks
    assert prefixes[0] == ("shared.0",)
    assert prefixes[3] == ("branches.seg.0", "branches.depth.0", "branches.normal.0")
    for name in prunable_weights(model):
        block = model.block_index(name)
        if name.startswith("heads."):
            assert block is None
        else:
            assert block is not None
            assert any(name.startswith(p + ".") for p in prefixes[block])
    # "shared.1" must not claim "shared.10"-style names
    assert model.block_index("shared.1x.conv.weight") is None
    assert model.block_names()[:4] == ["shared.0", "shared.1", "shared.2", "branches.seg.0"]


def test_suggested_cutoff_from_a_shared_layer_name():
    from disparse_core.iou import suggest_cutoff
    model = build_model("small", SCENES, width=8)
    layer = next(n for n in prunable_weights(model) if model.block_index(n) == 5)
    assert suggest_cutoff(layer, model.block_names()) == 5
    assert build_model("small", SCENES, cutoff=5, width=8).block_index(
        layer.replace("shared.5", "branches.seg.0")) == 5


@pytest.mark.parametrize("bad", [-1, 9, 2.5, True, "3"])
def test_bad_cutoff_is_a_one_line_value_error(bad):
    with pytest.raises(ValueError, match=r"cutoff.*0\.\.8") as info:
        build_model("small", SCENES, cutoff=bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_bad_arch_and_task_names():
    with pytest.raises(ValueError, match="unknown arch 'resnet'.*small"):
        build_model("resnet", SCENES)
    with pytest.raises(ValueError, match="task name"):
        build_model("small", {"seg.x": 3})
    with pytest.raises(ValueError, match="task_channels"):
        build_model("small", {})
    with pytest.raises(ValueError, match="unknown task 'x'"):
        build_model("small", SCENES, task_kinds={"x": "classification"})


def test_counts_and_fully_shared_reference():
    full = build_model("small", SCENES)
    assert fully_shared_prunable("small", SCENES) == count_prunable_params(full)
    assert fully_shared_prunable("small", SCENES, cutoff=0) == count_prunable_params(full)
    expected = sum(p.numel() for n, p in prunable_weights(full).items())
    assert count_prunable_params(full) == expected
    assert count_params(full, prunable_only=True) == expected
    assert count_params(full) == sum(p.numel() for p in full.parameters())
    assert 100_000 <= count_params(full) <= 300_000
    previous = count_prunable_params(full)
    for cutoff in range(7, -1, -1):      # every block branched off adds two more copies
        n = count_prunable_params(build_model("small", SCENES, cutoff=cutoff))
        assert n > previous
        previous = n


def test_deeplab_parameter_count_matches_the_paper():
    with torch.device("meta"):
        model = build_model("deeplab_resnet34", NYU)
    assert model.num_blocks == num_blocks("deeplab_resnet34") == 17
    assert count_params(model) == pytest.approx(67.6e6, rel=0.01)
    assert fully_shared_prunable("deeplab_resnet34", NYU) == count_prunable_params(model)
    convs = [m for m in model.shared.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 16 + 3      # stem, two per BasicBlock, three projections


@pytest.mark.parametrize("cutoff", [0, 17])
def test_deeplab_runs_at_tiny_input(cutoff):
    model = build_model("deeplab_resnet34", NYU, cutoff=cutoff, seed=0)
    x = torch.randn(1, 3, 33, 33)
    out = model(x)
    assert out["seg"].shape == (1, 40, 33, 33) and out["normal"].shape == (1, 3, 33, 33)
    sum(o.mean() for o in out.values()).backward()
    stem = (model.shared[0] if cutoff > 0 else model.branches["seg"][0]).conv.weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0


def test_deeplab_ownership_at_a_cutoff():
    model = build_model("deeplab_resnet34", NYU, cutoff=9, seed=0).eval()
    _check_ownership(model, torch.randn(1, 3, 33, 33), set(NYU))


@pytest.mark.parametrize("arch", ARCHS)
def test_classification_heads(arch):
    kinds = {"left": "classification", "right": "classification"}
    ctx = torch.device("meta") if arch == "deeplab_resnet34" else torch.device("cpu")
    with ctx:
        model = build_model(arch, {"left": 10, "right": 10}, task_kinds=kinds, in_channels=1,
                            cutoff=2)
    if arch == "small":
        out = model(torch.randn(4, 1, 16, 32))
        assert out["left"].shape == (4, 10) and out["right"].shape == (4, 10)
        _check_ownership(model, torch.randn(2, 1, 16, 32), {"left", "right"})
    assert isinstance(model.heads["left"].fc, nn.Linear)


def test_seed_makes_init_reproducible_without_touching_the_global_rng():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_model("small", SCENES, seed=7)
    after = torch.rand(3)
    assert torch.equal(before, after)
    b = build_model("small", SCENES, seed=7)
    c = build_model("small", SCENES, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_width_scales_small():
    n8 = count_params(build_model("small", SCENES, width=8))
    n16 = count_params(build_model("small", SCENES, width=16))
    assert 3 * n8 < n16 < 5 * n8
    with pytest.raises(ValueError, match="width"):
        build_model("small", SCENES, width=0)
