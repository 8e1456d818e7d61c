"""Schedules as pure functions of the step: drop fraction (dynamic sparse training) and the cubic
sparsity ramp of gradual pruning (Zhu & Gupta, 2017)."""

from __future__ import annotations

import math

from .config import DECAYS

__all__ = ["DECAYS", "drop_fraction", "cubic_sparsity", "is_update_step", "update_steps"]


def drop_fraction(step: int, *, alpha0: float, t_end: int, decay: str = "cosine") -> float:
    """Fraction of each layer's active weights dropped (and regrown) at ``step``.

    ``cosine``: ``alpha0 / 2 * (1 + cos(pi * step / t_end))`` (RigL, DiSparse);
    ``linear``: ``alpha0 * (1 - step / t_end)``; ``constant``: ``alpha0``. Zero at/after ``t_end``.
    """
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {DECAYS}, got decay={decay!r}")
    if not 0.0 <= alpha0 <= 1.0:
        raise ValueError(f"alpha0 must be in [0, 1], got alpha0={alpha0!r}")
    if t_end <= 0:
        raise ValueError(f"t_end must be > 0, got t_end={t_end!r}")
    if step >= t_end:
        return 0.0
    step = max(step, 0)
    if decay == "cosine":
        return alpha0 / 2.0 * (1.0 + math.cos(math.pi * step / t_end))
    if decay == "linear":
        return alpha0 * (1.0 - step / t_end)
    return float(alpha0)


def cubic_sparsity(step: int, *, initial: float, final: float, start: int, n: int,
                   interval: int) -> float:
    """Zhu & Gupta: ``S_t = S_f + (S_0 - S_f) * (1 - (t - t0) / (n * interval)) ** 3``.

    ``t`` is clamped to ``[start, start + n * interval]``: ``initial`` before ``start``, ``final``
    from ``start + n * interval`` on.
    """
    if n <= 0 or interval <= 0:
        raise ValueError(f"n and interval must be > 0, got n={n!r}, interval={interval!r}")
    for key, value in (("initial", initial), ("final", final)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{key} sparsity must be in [0, 1), got {key}={value!r}")
    span = n * interval
    t = min(max(step, start), start + span)
    return final + (initial - final) * (1.0 - (t - start) / span) ** 3


def is_update_step(step: int, *, delta_t: int, t_end: int) -> bool:
    """Dynamic mask updates happen at ``step = delta_t, 2*delta_t, ...`` while ``step < t_end``
    (never at step 0: the initial random masks get ``delta_t`` steps of training first)."""
    if delta_t <= 0:
        raise ValueError(f"delta_t must be > 0, got delta_t={delta_t!r}")
    return 0 < step < t_end and step % delta_t == 0


def update_steps(*, delta_t: int, t_end: int) -> list[int]:
    """Every step at which ``is_update_step`` is true."""
    if delta_t <= 0:
        raise ValueError(f"delta_t must be > 0, got delta_t={delta_t!r}")
    return list(range(delta_t, max(t_end, 0), delta_t))
