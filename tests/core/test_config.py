"""The trial schema in ``disparse_core.config`` is the one table the rest of the core reads: its value tuples
name exactly what the registries and functions behind them accept."""

from __future__ import annotations

import importlib
from dataclasses import fields

import pytest

from disparse_core import config
from disparse_core.data import registry
from disparse_core.models import build_model
from disparse_core.sparsify import METHODS as SPARSIFY_TABLE


def test_every_trial_config_key_has_a_field_and_every_section_key_too():
    assert list(config.FIELDS) == [f.name for f in fields(config.TrialConfig)]
    assert set(config.SECTION_FIELDS["dynamic"]) == {f.name for f in fields(config.DynamicOptions)}
    assert set(config.SECTION_FIELDS["gradual"]) == {f.name for f in fields(config.GradualOptions)}


def test_the_workload_tuples_are_the_registry_s():
    assert config.WORKLOADS == tuple(registry.WORKLOADS)
    assert config.REAL_DATA == tuple(n for n, spec in registry.WORKLOADS.items() if spec.needs_root)
    assert config.GENERATED == tuple(n for n, spec in registry.WORKLOADS.items() if not spec.needs_root)
    for name in config.GENERATED:          # resolved_config reads each generator's size table
        assert set(importlib.import_module(f"disparse_core.data.{name}").DEFAULTS) == {
            "image_size", "train_size", "test_size"}


@pytest.mark.parametrize("arch", config.ARCHS)
def test_num_blocks_is_the_cutoff_limit_of_the_built_model(arch):
    import torch
    heads = {"a": 2, "b": 3}
    with torch.device("meta"):
        build_model(arch, heads, cutoff=config.num_blocks(arch))
        with pytest.raises(ValueError, match="cutoff"):
            build_model(arch, heads, cutoff=config.num_blocks(arch) + 1)
    with pytest.raises(ValueError, match="unknown arch"):
        config.num_blocks("resnet")


def test_sparsify_decides_the_one_shot_methods_with_the_schema_s_criteria():
    assert set(config.ONE_SHOT_AT_INIT + config.PRETRAINED) <= set(SPARSIFY_TABLE)
    assert set(config.METHODS) == set(config.SPARSIFY_METHODS) | set(config.DYNAMIC)
    assert all(SPARSIFY_TABLE[m] == config.METHODS[m] for m in SPARSIFY_TABLE)
    assert config.FIELDS["method"].choices == tuple(config.METHODS)
