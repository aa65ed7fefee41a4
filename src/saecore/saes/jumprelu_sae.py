"""SAELens's ``sae_lens.saes.jumprelu_sae`` path: the JumpReLU SAE classes, ``JumpReLU`` and ``Step``.

Provided by ``saecore-sae-jumprelu``."""

from saecore.plugin_exports import plugin_exports

__getattr__, __dir__ = plugin_exports(
    __name__,
    (
        "JumpReLUSAE",
        "JumpReLUSAEConfig",
        "JumpReLUTrainingSAE",
        "JumpReLUTrainingSAEConfig",
        "JumpReLU",
        "Step",
    ),
    "saecore-sae-jumprelu",
)
