"""Entry point module: registers the six transcoder architectures, their training recipes and the
published transcoder formats.

Kept light: the classes are imported inside the hooks, when the registry is built.
"""

from __future__ import annotations

from saecore import hookimpl
from saecore.hookspecs import RegisterArchitecture, RegisterConverter, RegisterTrainingRecipe


@hookimpl
def saecore_register_architectures(register: RegisterArchitecture) -> None:
    from saecore_transcoders import config
    from saecore_transcoders.jumprelu_transcoder import JumpReLUSkipTranscoder, JumpReLUTranscoder
    from saecore_transcoders.topk_transcoder import TopKSkipTranscoder, TopKTranscoder
    from saecore_transcoders.transcoder import SkipTranscoder, Transcoder

    register("transcoder", Transcoder, config.TranscoderConfig)
    register("skip_transcoder", SkipTranscoder, config.SkipTranscoderConfig)
    register("jumprelu_transcoder", JumpReLUTranscoder, config.JumpReLUTranscoderConfig)
    register("jumprelu_skip_transcoder", JumpReLUSkipTranscoder, config.JumpReLUSkipTranscoderConfig)
    register("topk_transcoder", TopKTranscoder, config.TopKTranscoderConfig)
    register("topk_skip_transcoder", TopKSkipTranscoder, config.TopKSkipTranscoderConfig)


@hookimpl
def saecore_register_training_recipes(register: RegisterTrainingRecipe) -> None:
    from saecore_transcoders import config
    from saecore_transcoders.topk_training_transcoder import TopKSkipTrainingTranscoder, TopKTrainingTranscoder
    from saecore_transcoders.training_transcoder import (
        JumpReLUSkipTrainingTranscoder,
        JumpReLUTrainingTranscoder,
        SkipTrainingTranscoder,
        TrainingTranscoder,
    )

    register("transcoder", TrainingTranscoder, config.TrainingTranscoderConfig)
    register("skip_transcoder", SkipTrainingTranscoder, config.SkipTrainingTranscoderConfig)
    register("jumprelu_transcoder", JumpReLUTrainingTranscoder, config.JumpReLUTrainingTranscoderConfig)
    register("jumprelu_skip_transcoder", JumpReLUSkipTrainingTranscoder, config.JumpReLUSkipTrainingTranscoderConfig)
    register("topk_transcoder", TopKTrainingTranscoder, config.TopKTrainingTranscoderConfig)
    register("topk_skip_transcoder", TopKSkipTrainingTranscoder, config.TopKSkipTrainingTranscoderConfig)


@hookimpl
def saecore_register_converters(register: RegisterConverter) -> None:
    from saecore_transcoders.circuit_tracer_transcoder import CircuitTracerTranscoderConverter
    from saecore_transcoders.cross_layer_transcoder_layer import CrossLayerTranscoderLayerConverter
    from saecore_transcoders.gemma_scope_transcoder import GemmaScopeTranscoderConverter

    register("gemma_2_transcoder", GemmaScopeTranscoderConverter())
    register("mwhanna_transcoder", CircuitTracerTranscoderConverter())
    register("mntss_clt_layer_transcoder", CrossLayerTranscoderLayerConverter())
