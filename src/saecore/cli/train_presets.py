"""Defaults for ``saecore train --arch NAME`` when the user gives no SAE width or coefficients.

The core fills in a width from the input size whatever the source, and turns on the
trainer's process-wide ``tune_malloc`` (off in the Python API). A transcoder on a source of
(input, target) pairs gets ``d_in`` and ``d_out`` from the pair's two widths. On the built-in
synthetic sources it also asks the recipe's training config class for its
``synthetic_data_presets`` (each recipe knows its own fields; see
``saecore.config.training_presets``), and gives a learning rate and token budget to
recipes that suggest none. Settings the user gives always win.
"""

from __future__ import annotations

from typing import Any

from saecore.registry import get_registry

DEFAULT_WIDTH_MULTIPLE = 8
SYNTHETIC_SOURCES = ("synthetic", "synthetic_transcoder")
GENERIC_SYNTHETIC_TRAINER_PRESET: dict[str, Any] = {"lr": 5e-3, "training_tokens": 1_000_000}
# Process-wide settings a library leaves off and the command, which owns its process, turns on.
CLI_TRAINER_DEFAULTS: dict[str, Any] = {"tune_malloc": True}


def apply_presets(
    arch: str, source: str, d_in: int, sae_values: dict[str, Any], trainer_values: dict[str, Any],
    target_width: int = 0,
) -> dict[str, Any]:
    """Return the SAE settings with presets filled in; ``trainer_values`` is updated in place.

    ``d_in`` is the width of the source's rows, ``target_width`` the part of it that is a target.
    """
    for key, value in CLI_TRAINER_DEFAULTS.items():
        trainer_values.setdefault(key, value)
    config_class = get_registry().training_recipe(arch).training_config_class
    values: dict[str, Any] = {"d_in": d_in, "d_sae": d_in * DEFAULT_WIDTH_MULTIPLE}
    if config_class.PREDICTS_TARGET and target_width:
        input_width = d_in - target_width
        values = {"d_in": input_width, "d_out": target_width, "d_sae": input_width * DEFAULT_WIDTH_MULTIPLE}
    if source in SYNTHETIC_SOURCES:
        presets = config_class.synthetic_data_presets(sae_values.get("d_sae", values["d_sae"]))
        values.update(presets.sae)
        for key, value in {**GENERIC_SYNTHETIC_TRAINER_PRESET, **presets.trainer}.items():
            trainer_values.setdefault(key, value)
    values.update(sae_values)
    return values
