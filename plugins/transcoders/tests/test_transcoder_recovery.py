"""Each transcoder, at the defaults ``saecore train`` gives it, finds the true features of the synthetic map.

The source is the synthetic transcoder source at small shapes (16 → 12 dimensions, 32
features, 3 active per sample, inputs with random signs so that no linear map, hence no
skip connection, can stand in for the features). The recipe's presets decide everything
but the token budget and the batch size, which are cut to keep the test short.
"""

from __future__ import annotations

import pytest

from saecore.cli.train_presets import apply_presets
from saecore.sources.synthetic_transcoder import SyntheticTranscoderSource, SyntheticTranscoderSourceConfig
from saecore.training import TrainingRunner, TrainingRunnerConfig

RECIPES = [
    "transcoder", "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder", "topk_transcoder",
    "topk_skip_transcoder",
]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recovers_at_least_90_percent_of_the_true_features(recipe: str, tmp_path: object) -> None:
    source_cfg = SyntheticTranscoderSourceConfig(d_in=16, d_out=12, n_features=32, avg_active_features=3)
    source = SyntheticTranscoderSource(source_cfg, seed=0)
    trainer = {"training_tokens": 200_000, "train_batch_size_tokens": 512}
    sae = apply_presets(recipe, "synthetic_transcoder", source.d_in, {}, trainer, source.target_width)
    trainer.pop("tune_malloc")
    cfg = TrainingRunnerConfig(
        sae={"architecture": recipe, **sae}, source=source_cfg, output_path=None,
        checkpoint_path=str(tmp_path), n_checkpoints=0, verbose=False, **trainer,
    )
    runner = TrainingRunner(cfg, source)
    runner.run()
    assert runner.summary is not None and runner.summary.ground_truth is not None
    assert runner.summary.ground_truth.fraction_recovered >= 0.9
