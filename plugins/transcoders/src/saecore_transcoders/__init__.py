"""Transcoders and skip transcoders (ReLU, JumpReLU, TopK): coders that predict one activation from another.

The public classes below are imported on first use, so importing this package (which
the entry point does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saecore.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from saecore_transcoders.config import JumpReLUSkipTrainingTranscoderConfig as JumpReLUSkipTrainingTranscoderConfig
    from saecore_transcoders.config import JumpReLUSkipTranscoderConfig as JumpReLUSkipTranscoderConfig
    from saecore_transcoders.config import JumpReLUTrainingTranscoderConfig as JumpReLUTrainingTranscoderConfig
    from saecore_transcoders.config import JumpReLUTranscoderConfig as JumpReLUTranscoderConfig
    from saecore_transcoders.config import SkipTrainingTranscoderConfig as SkipTrainingTranscoderConfig
    from saecore_transcoders.config import SkipTranscoderConfig as SkipTranscoderConfig
    from saecore_transcoders.config import TopKSkipTrainingTranscoderConfig as TopKSkipTrainingTranscoderConfig
    from saecore_transcoders.config import TopKSkipTranscoderConfig as TopKSkipTranscoderConfig
    from saecore_transcoders.config import TopKTrainingTranscoderConfig as TopKTrainingTranscoderConfig
    from saecore_transcoders.config import TopKTranscoderConfig as TopKTranscoderConfig
    from saecore_transcoders.config import TrainingTranscoderConfig as TrainingTranscoderConfig
    from saecore_transcoders.config import TranscoderConfig as TranscoderConfig
    from saecore_transcoders.jumprelu_transcoder import JumpReLUSkipTranscoder as JumpReLUSkipTranscoder
    from saecore_transcoders.jumprelu_transcoder import JumpReLUTranscoder as JumpReLUTranscoder
    from saecore_transcoders.topk_training_transcoder import TopKSkipTrainingTranscoder as TopKSkipTrainingTranscoder
    from saecore_transcoders.topk_training_transcoder import TopKTrainingTranscoder as TopKTrainingTranscoder
    from saecore_transcoders.topk_transcoder import TopKSkipTranscoder as TopKSkipTranscoder
    from saecore_transcoders.topk_transcoder import TopKTranscoder as TopKTranscoder
    from saecore_transcoders.training_transcoder import JumpReLUSkipTrainingTranscoder as JumpReLUSkipTrainingTranscoder
    from saecore_transcoders.training_transcoder import JumpReLUTrainingTranscoder as JumpReLUTrainingTranscoder
    from saecore_transcoders.training_transcoder import SkipTrainingTranscoder as SkipTrainingTranscoder
    from saecore_transcoders.training_transcoder import TrainingTranscoder as TrainingTranscoder
    from saecore_transcoders.transcoder import SkipTranscoder as SkipTranscoder
    from saecore_transcoders.transcoder import Transcoder as Transcoder

_EXPORTS = {
    "JumpReLUSkipTrainingTranscoder": "saecore_transcoders.training_transcoder",
    "JumpReLUSkipTrainingTranscoderConfig": "saecore_transcoders.config",
    "JumpReLUSkipTranscoder": "saecore_transcoders.jumprelu_transcoder",
    "JumpReLUSkipTranscoderConfig": "saecore_transcoders.config",
    "JumpReLUTrainingTranscoder": "saecore_transcoders.training_transcoder",
    "JumpReLUTrainingTranscoderConfig": "saecore_transcoders.config",
    "JumpReLUTranscoder": "saecore_transcoders.jumprelu_transcoder",
    "JumpReLUTranscoderConfig": "saecore_transcoders.config",
    "SkipTrainingTranscoder": "saecore_transcoders.training_transcoder",
    "SkipTrainingTranscoderConfig": "saecore_transcoders.config",
    "SkipTranscoder": "saecore_transcoders.transcoder",
    "SkipTranscoderConfig": "saecore_transcoders.config",
    "TopKSkipTrainingTranscoder": "saecore_transcoders.topk_training_transcoder",
    "TopKSkipTrainingTranscoderConfig": "saecore_transcoders.config",
    "TopKSkipTranscoder": "saecore_transcoders.topk_transcoder",
    "TopKSkipTranscoderConfig": "saecore_transcoders.config",
    "TopKTrainingTranscoder": "saecore_transcoders.topk_training_transcoder",
    "TopKTrainingTranscoderConfig": "saecore_transcoders.config",
    "TopKTranscoder": "saecore_transcoders.topk_transcoder",
    "TopKTranscoderConfig": "saecore_transcoders.config",
    "TrainingTranscoder": "saecore_transcoders.training_transcoder",
    "TrainingTranscoderConfig": "saecore_transcoders.config",
    "Transcoder": "saecore_transcoders.transcoder",
    "TranscoderConfig": "saecore_transcoders.config",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
