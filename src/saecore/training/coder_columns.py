"""Where a coder's input and target sit in a batch.

A source that feeds transcoders serves each row as its input activation followed by its
target activation (``[input | target]``, widths ``d_in`` and ``d_out``), so pairs stay
aligned through every shuffle, cache, shard and shared sweep stream that moves rows. An
SAE's target is its input, and its batch is the input alone.
"""

from __future__ import annotations

from typing import Any

from saecore.config.sae_config import SAEConfig
from saecore.errors import ConfigError


def target_columns(cfg: SAEConfig) -> tuple[slice, slice] | None:
    """``(input columns, target columns)`` of a batch for a coder that predicts a target; None for an SAE."""
    if not cfg.PREDICTS_TARGET:
        return None
    return slice(0, cfg.d_in), slice(cfg.d_in, cfg.d_in + cfg.d_target)


def batch_width(cfg: SAEConfig) -> int:
    """How wide the batches a coder trains on are: ``d_in``, plus ``d_out`` for a transcoder."""
    return cfg.d_in + cfg.d_target if cfg.PREDICTS_TARGET else cfg.d_in


def check_pair_width(
    cfg: SAEConfig, served_by: Any, width: int | None = None, where: str = "sae", target: int | None = None
) -> None:
    """Raise a ConfigError naming the sizes unless ``served_by`` serves ``cfg``'s (input, target) pairs.

    ``width`` is the row width the coder reads and ``target`` the part of it that is a target
    (defaults: the source's whole rows and its ``target_width``; one stream's in a sweep).
    """
    width = served_by.d_in if width is None else width
    target = served_by.target_width if target is None else target
    if target == 0:
        raise ConfigError(
            f"{where} is a {cfg.architecture()}: it trains on (input, target) pairs, but the source "
            f"({type(served_by).__name__}) serves inputs only; give it a source of pairs (an input hook and an "
            "output hook, a cache written with both, or a tensor source with a target)"
        )
    expected = batch_width(cfg)
    if width != expected or target != cfg.d_target:
        raise ConfigError(
            f"{where} is a {cfg.architecture()} reading d_in={cfg.d_in} and predicting d_out={cfg.d_target}, but "
            f"the source ({type(served_by).__name__}) serves inputs of width {width - target} and targets of "
            f"width {target}; set d_in to {width - target} and d_out to {target}"
        )
