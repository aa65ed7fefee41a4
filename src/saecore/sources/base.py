"""The activation-source contract the trainer reads batches through.

A source knows nothing about SAEs; the trainer knows nothing about where activations
come from. A source serves batches ``[n, d_in]`` and can save and restore its position,
so an interrupted run resumes on exactly the batches it would have seen. A source of
(input, target) pairs for transcoders serves each row as the input followed by the target
(``target_width`` says how wide the target is).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from saecore.errors import ConfigError

DEFAULT_STREAM = "activations"


class SourceConfig(BaseModel):
    """Base of every source's config; unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)


class ActivationSource(ABC):
    """Serves activation batches to the trainer.

    ``seed`` seeds every random choice the source makes; ``device`` is where batches are
    delivered.
    """

    def __init__(self, cfg: SourceConfig, *, seed: int = 42, device: str = "cpu") -> None:
        self.cfg = cfg
        self.seed = seed
        self.device = torch.device(device)

    @property
    @abstractmethod
    def d_in(self) -> int:
        """Width of each row a batch holds (for pairs, the input's width plus the target's)."""

    @property
    def target_width(self) -> int:
        """Width of the target activations that end each row; 0 when rows hold inputs only.

        A source that feeds transcoders serves ``[input | target]`` rows: an input hook's
        activation followed by the output hook's, from the same forward pass and position.
        """
        return 0

    @abstractmethod
    def next_batch(self, batch_size: int) -> torch.Tensor:
        """The next ``[batch_size, d_in]`` float batch, on ``self.device``."""

    def check_batch_size(self, batch_size: int) -> None:
        """Raise ConfigError naming the field if ``batch_size`` cannot be served."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume at the current position (tensors and plain values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position saved by ``state_dict``."""

    def sae_metadata(self) -> dict[str, Any]:
        """Facts recorded in the trained SAE's cfg.json metadata (model, hook, dataset ...)."""
        return {}

    def streams(self) -> dict[str, int]:
        """The activation streams each batch holds, in column order: name → width.

        A source may hook several points of one model forward pass (several layers of an
        LLM) and serve them side by side: a batch is then the concatenation of the streams
        along its last dimension, and ``d_in`` is the sum of their widths. Training many
        SAEs on one source (``saecore.training.sweep``) gives each SAE the columns of its
        stream, so the model runs once for all of them and every stream's rows stay
        aligned through shuffling, caching and sharding. The default is one stream named
        ``DEFAULT_STREAM``.
        """
        return {DEFAULT_STREAM: self.d_in}

    def stream_target_width(self, stream: str) -> int:
        """Width of the target ending ``stream``'s columns; 0 when the stream holds inputs only.

        A stream of (input, target) pairs feeds a transcoder in a sweep, beside SAEs on
        other streams. The default: ``target_width`` for a source of one stream, 0 for
        each stream of several.
        """
        return self.target_width if len(self.streams()) == 1 else 0

    def stream_metadata(self, stream: str) -> dict[str, Any]:
        """``sae_metadata`` for an SAE trained on ``stream`` alone (its own hook name, say)."""
        return self.sae_metadata()

    def ground_truth_features(self) -> torch.Tensor | None:
        """Known feature directions ``[n_features, d_in]`` if the source has them (synthetic).

        A source of pairs gives the directions in its target space, ``[n_features, target_width]``:
        what a transcoder's decoder rows should find.
        """
        return None

    def shard_for_rank(self, rank: int, world_size: int) -> bool:
        """Serve only this rank's part of the stream in data-parallel training.

        Called once, before the first batch and before ``load_state_dict``. Return True
        if the source now serves a disjoint shard (the trainer then keeps per-rank
        states); the default False makes every rank draw whole global batches and keep
        its slice of rows, which is exact but repeats the source's work on every rank.
        See docs/distributed.md.
        """
        return False

    def evaluate_sae(self, sae: Any, scaling_factor: float | None = None) -> dict[str, float]:
        """Metrics only this source can compute, logged next to the reconstruction metrics.

        The LLM source splices the SAE into the model and reports CE-loss and KL scores.
        ``scaling_factor`` is the input scale the SAE is being trained with (None once it is
        folded in): feed ``sae(s·x)/s`` where raw activations are replaced. The default is
        none, so sources that have no downstream model need not implement it.
        """
        return {}

    def write_saelens_cache(self, folder: Path, n_tokens: int, dtype: str) -> int:
        """Write at least ``n_tokens`` activations as SAELens's cache (a Hugging Face dataset of prompts).

        Returns the tokens written. Only a source that serves whole prompts of a language
        model can: the default refuses, naming the source.
        """
        raise ConfigError(f"the {type(self).__name__} source cannot write SAELens's cache layout (one row per prompt "
                          "of a language model); use --format saecore")

    def close(self) -> None:
        """Release files, models or worker threads."""
