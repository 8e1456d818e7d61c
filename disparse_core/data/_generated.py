"""Shared by the generated workloads (``digits``, ``scenes``): the size arguments of their builders."""

from __future__ import annotations

from typing import Mapping


def resolve_sizes(name: str, defaults: Mapping[str, int], allowed_sizes: tuple[int, ...], image_size,
                  train_size, test_size) -> tuple[int, int, int]:
    """``(image_size, train_size, test_size)`` with ``None`` replaced by ``defaults``; raises ``ValueError``
    when the image size is not one of ``allowed_sizes`` or a count is not a positive ``int``."""
    size = defaults["image_size"] if image_size is None else image_size
    if size not in allowed_sizes:
        raise ValueError(f"image_size for {name} must be one of {allowed_sizes}, got {size!r}")
    n_train = defaults["train_size"] if train_size is None else train_size
    n_test = defaults["test_size"] if test_size is None else test_size
    for key, n in (("train_size", n_train), ("test_size", n_test)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{key} must be a positive integer, got {n!r}")
    return size, n_train, n_test
