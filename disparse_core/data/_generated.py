"""Shared by the generated workloads (``digits``, ``scenes``, ``cues``): the size arguments of their
builders and the ``.npz`` cache of generated arrays."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Callable, Mapping

import numpy as np


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


def default_cache_dir() -> Path:
    """``$DISPARSE_CACHE``, else ``~/.cache/disparse-tune``."""
    env = os.environ.get("DISPARSE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "disparse-tune"


def cached_arrays(name: str, version: int, count: int, size: int, seed: int, split: int,
                  keys: tuple[str, ...], generate: Callable[[], dict[str, np.ndarray]],
                  cache_dir=None) -> dict[str, np.ndarray]:
    """``generate()`` through an ``.npz`` file named by the generator, its version and the arguments
    (``cache_dir=False`` disables the cache). An unreadable file is generated again; a folder that
    cannot be written is said on stderr and the arrays are returned all the same. Written to a
    temporary name first, so concurrent builders never read half a file."""
    if cache_dir is False:
        return generate()
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = f"{name}-v{version}-size{size}-n{count}-seed{seed}-split{split}"
    path = cache_dir / f"{key}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in keys}
        except (OSError, KeyError, ValueError):
            pass                                                # unreadable cache: regenerate
    arrays = generate()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        print(f"disparse: could not cache {name} in {cache_dir}: {e}", file=sys.stderr)
    return arrays
