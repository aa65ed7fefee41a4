"""SAELens's ``sae_lens.saes.transcoder`` path: the transcoder and skip-transcoder classes.

Provided by ``saecore-transcoders``.
"""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(
    __name__,
    (
        "Transcoder",
        "TranscoderConfig",
        "SkipTranscoder",
        "SkipTranscoderConfig",
        "JumpReLUTranscoder",
        "JumpReLUTranscoderConfig",
        "JumpReLUSkipTranscoder",
        "JumpReLUSkipTranscoderConfig",
    ),
    "saecore-transcoders",
)
