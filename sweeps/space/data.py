"""Data checks of a trial config that the core only makes when a trial builds its workload.

Without them a bad size or data folder passes the plan and fails inside Ray (the dense baseline first),
after the sweep was recorded. Checked here, at load time, using the data modules' own constants and
index reader (``disparse_core.data.scenes/digits.ALLOWED_SIZES`` and ``DEFAULTS``,
``disparse_core.data.real._load_index``): cheap, no data is generated or read beyond a real data set's
index file. Private to :mod:`sweeps.space`.
"""

from __future__ import annotations

import functools
from typing import Callable

from ..errors import SpaceError

__all__ = ["check_layout", "check_data_config"]


def _generator(workload: str):
    if workload == "scenes":
        from disparse_core.data import scenes as module
    elif workload == "digits":
        from disparse_core.data import digits as module
    else:
        return None
    return module


@functools.lru_cache(maxsize=16)
def _train_items(workload: str, data_root: str) -> int:
    """Items in a real data set's training split (its index file is read once and validated)."""
    from disparse_core.data import real

    _, index = real._load_index(workload, data_root)
    return len(index["train"])


def check_layout(key: str, workload: str, data_root: str) -> None:
    """``data_root`` must hold ``workload``'s index file in the reference layout."""
    try:
        _train_items(workload, data_root)
    except ValueError as err:
        raise SpaceError(f"{key}: {data_root!r} is not a {workload} data folder ({err})") from None


def check_data_config(cfg, key_of: Callable[[str], str]) -> None:
    """Sizes of one trial config (a ``TrialConfig``) against its workload; ``key_of(field)`` names the
    space key the value came from (``workload.X`` or ``parameters.X``)."""
    from disparse_core.factories import is_factory
    module = None if is_factory(cfg.workload) else _generator(cfg.workload)
    if is_factory(cfg.workload):        # a workload of your own: built once when the space was checked
        from disparse_core.data.user import build_factory_workload
        train = len(build_factory_workload(cfg.workload).train)
        train_key = f"the training set of {cfg.workload['factory']!r}"
    elif module is not None:
        size = cfg.image_size if cfg.image_size is not None else module.DEFAULTS["image_size"]
        if size not in module.ALLOWED_SIZES:
            allowed = ", ".join(map(str, module.ALLOWED_SIZES))
            raise SpaceError(f"{key_of('image_size')}: {size} is not an image size of the {cfg.workload} "
                             f"workload; expected one of {allowed}")
        train = cfg.train_size if cfg.train_size is not None else module.DEFAULTS["train_size"]
        train_key = key_of("train_size") if cfg.train_size is not None else f"default {cfg.workload} train_size"
    elif cfg.data_root:
        available = _train_items(cfg.workload, str(cfg.data_root))
        train = min(available, cfg.train_size) if cfg.train_size is not None else available
        train_key = key_of("train_size") if cfg.train_size is not None else "training items in data_root"
    else:
        return
    if cfg.batch_size > train:
        raise SpaceError(f"{key_of('batch_size')}: {cfg.batch_size} is larger than the training set "
                         f"({train_key} = {train}); expected a batch size of at most {train}")
