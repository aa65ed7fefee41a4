"""Defaults for ``saecore train --arch NAME`` when the user gives no SAE width or coefficients.

The SAE config classes keep SAELens's defaults (k=100, l1_coefficient=1.0, ...), which
suit language-model activations. On the built-in synthetic source those are wrong for a
quick run, so the CLI fills in what the user did not set: a width from the input size
and, for our own architectures, coefficients measured to recover the synthetic source's
features within the default token budget (see benchmarks/quality_synthetic.py).
"""

from __future__ import annotations

from typing import Any

DEFAULT_WIDTH_MULTIPLE = 8

SYNTHETIC_PRESETS: dict[str, dict[str, Any]] = {
    "standard": {"l1_coefficient": 0.5},
    "gated": {"l1_coefficient": 1.0},
    "jumprelu": {"l0_coefficient": 0.3},
    "topk": {"k": 8},
    "batchtopk": {"k": 8, "rescale_acts_by_decoder_norm": False, "topk_threshold_lr": 0.05},
    "matryoshka_batchtopk": {"k": 8, "rescale_acts_by_decoder_norm": False, "topk_threshold_lr": 0.05},
}
SYNTHETIC_TRAINER_PRESETS: dict[str, dict[str, Any]] = {
    "standard": {"lr": 1e-2, "training_tokens": 1_000_000},
    "gated": {"lr": 5e-3, "training_tokens": 1_000_000},
    "jumprelu": {"lr": 5e-3, "training_tokens": 1_000_000},
    "topk": {"lr": 1e-2, "training_tokens": 1_000_000},
    "batchtopk": {"lr": 1e-2, "training_tokens": 1_000_000, "train_batch_size_tokens": 2048},
    "matryoshka_batchtopk": {"lr": 1e-2, "training_tokens": 1_000_000, "train_batch_size_tokens": 2048},
}
GENERIC_SYNTHETIC_TRAINER_PRESET: dict[str, Any] = {"lr": 5e-3, "training_tokens": 1_000_000}


def apply_presets(
    arch: str, source: str, d_in: int, sae_values: dict[str, Any], trainer_values: dict[str, Any]
) -> dict[str, Any]:
    """Return the SAE settings with presets filled in; ``trainer_values`` is updated in place."""
    values = {"d_in": d_in, "d_sae": d_in * DEFAULT_WIDTH_MULTIPLE}
    if source == "synthetic":
        values.update(SYNTHETIC_PRESETS.get(arch, {}))
        for key, value in SYNTHETIC_TRAINER_PRESETS.get(arch, GENERIC_SYNTHETIC_TRAINER_PRESET).items():
            trainer_values.setdefault(key, value)
    values.update(sae_values)
    if source == "synthetic" and arch == "matryoshka_batchtopk" and "matryoshka_widths" not in sae_values:
        values["matryoshka_widths"] = [3 * values["d_sae"] // 4]
    return values
