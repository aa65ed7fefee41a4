"""The runner end to end: what it writes, how it seeds, and how it refuses bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_sae_standard.standard_sae import StandardSAE, StandardTrainingSAEConfig
from safetensors.torch import load_file
from training_helpers import ToySource, ToySourceConfig, make_config

from saecore import SAE
from saecore.errors import ConfigError
from saecore.training import TrainingRunner, TrainingRunnerConfig


def test_run_writes_a_loadable_inference_sae_with_metadata(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    sae_cfg_before = cfg.sae.model_dump()
    runner = TrainingRunner(cfg)
    trained = runner.run()

    output = tmp_path / "output"
    assert sorted(p.name for p in output.iterdir()) == [
        "cfg.json", "runner_cfg.json", "sae_weights.safetensors", "sparsity.safetensors",
    ]
    saved = json.loads((output / "cfg.json").read_text())
    assert saved["architecture"] == "standard"
    metadata = saved["metadata"]
    assert metadata["training_architecture"] == "standard"
    assert (metadata["dataset_path"], metadata["hook_name"]) == ("toy-dataset", "toy.hook")
    assert runner.trainer is not None
    stats = runner.trainer.feature_stats
    assert metadata["l0"] == pytest.approx(float(stats.feature_sparsity.sum()))
    assert metadata["num_dead_features"] == int(stats.dead_mask().sum())
    sparsity = load_file(str(output / "sparsity.safetensors"))["sparsity"]
    assert sparsity.shape == (16,)
    assert float((10**sparsity.double() - 1e-10).sum()) == pytest.approx(metadata["l0"], rel=1e-4)
    assert TrainingRunnerConfig.from_dict(json.loads((output / "runner_cfg.json").read_text())) == cfg

    loaded = SAE.load_from_disk(output)
    assert isinstance(loaded, StandardSAE)
    x = ToySource(ToySourceConfig(), seed=7).next_batch(16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained.decode(trained.encode(x)))
    assert cfg.sae.model_dump() == sae_cfg_before, "the config object is not mutated"


def test_summary_reports_the_final_evaluation(tmp_path: Path) -> None:
    runner = TrainingRunner(make_config(tmp_path))
    sae = runner.run()
    summary = runner.summary
    assert summary is not None and runner.trainer is not None and runner.trainer.final_metrics is not None
    final = runner.trainer.final_metrics
    assert (summary.l0, summary.explained_variance, summary.mse) == (final.l0, final.explained_variance, final.mse)
    assert summary.d_sae == 16 and summary.n_tokens == 40 * 32
    assert summary.dead_features == sae.cfg.metadata.num_dead_features
    assert summary.tokens_per_second > 0 and summary.ground_truth is None
    text = summary.format()
    assert "Trained on 1,280 tokens" in text and "explained variance" in text
    assert f"saved to             {tmp_path / 'output'}" in text


def test_ground_truth_recovery_is_summarised_when_the_source_knows_the_features(tmp_path: Path) -> None:
    pytest.importorskip("saecore.evals.ground_truth")
    runner = TrainingRunner(make_config(tmp_path, source=ToySourceConfig(expose_ground_truth=True)))
    runner.run()
    assert runner.summary is not None and runner.summary.ground_truth is not None
    assert 0.0 <= runner.summary.ground_truth.fraction_recovered <= 1.0
    assert "true features found" in runner.summary.format()


def test_same_seed_same_sae_other_seed_other_sae(tmp_path: Path) -> None:
    first = TrainingRunner(make_config(tmp_path / "a", seed=3)).run()
    again = TrainingRunner(make_config(tmp_path / "b", seed=3)).run()
    other = TrainingRunner(make_config(tmp_path / "c", seed=4)).run()
    assert torch.equal(first.W_dec, again.W_dec)
    assert not torch.equal(first.W_dec, other.W_dec)


def test_width_mismatch_names_sae_d_in(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, source=ToySourceConfig(d_in=12))
    with pytest.raises(ConfigError, match=r"sae\.d_in = 8, but the source \(ToySource\) serves .* width 12"):
        TrainingRunner(cfg).run()


def test_batches_the_source_cannot_serve_are_refused_before_training(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, source=ToySourceConfig(max_batch_size=16))
    with pytest.raises(ConfigError, match="train_batch_size_tokens=32"):
        TrainingRunner(cfg).run()
    assert not (tmp_path / "output").exists()


def test_a_built_source_is_closed_and_a_given_one_is_not(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, output_path=None)
    given = ToySource(cfg.source, seed=cfg.seed)
    TrainingRunner(cfg, source=given).run()
    assert not given.closed
    assert not (tmp_path / "output").exists()

    runner = TrainingRunner(cfg)
    runner.run()
    assert runner.trainer is not None
    built = runner.trainer.source
    assert isinstance(built, ToySource) and built.closed


def test_user_metadata_wins_over_the_source_s(tmp_path: Path) -> None:
    sae = StandardTrainingSAEConfig(d_in=8, d_sae=16, metadata={"hook_name": "my.hook", "neuronpedia_id": "x/y"})
    TrainingRunner(make_config(tmp_path, sae=sae)).run()
    metadata = json.loads((tmp_path / "output" / "cfg.json").read_text())["metadata"]
    assert (metadata["hook_name"], metadata["neuronpedia_id"], metadata["dataset_path"]) == (
        "my.hook", "x/y", "toy-dataset"
    )


class _EvaluatingToySource(ToySource):
    """Reports the SAE's reconstruction error on raw inputs, as a downstream-model eval would."""

    def __init__(self, cfg: ToySourceConfig, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        self.calls: list[float | None] = []

    def evaluate_sae(self, sae: Any, scaling_factor: float | None = None) -> dict[str, float]:
        self.calls.append(scaling_factor)
        x = self.features[:4] * 3.0
        s = 1.0 if scaling_factor is None else scaling_factor
        with torch.no_grad():
            error = ((sae(x * s) / s - x) ** 2).sum(-1).mean()
        return {"toy_downstream_error": float(error)}


def test_source_specific_evaluations_reach_the_summary(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        sae=StandardTrainingSAEConfig(d_in=8, d_sae=16, l1_coefficient=0.05,
                                      normalize_activations="expected_average_only_in"),
    )
    source = _EvaluatingToySource(ToySourceConfig())
    runner = TrainingRunner(cfg, source=source)
    sae = runner.run()
    assert runner.summary is not None
    value = runner.summary.source_metrics["toy_downstream_error"]
    x = source.features[:4] * 3.0
    with torch.no_grad():
        expected = float(((sae(x) - x) ** 2).sum(-1).mean())
    assert value == pytest.approx(expected, rel=1e-5)
    assert "toy_downstream_error" in runner.summary.format()
    # the final evaluation runs after the input scale is folded into the weights
    assert source.calls == [None]


def test_the_core_runner_has_its_own_name_and_leaves_saelens_names_to_saelens_meanings() -> None:
    import saecore
    import saecore.training

    assert saecore.training.TrainingRunner is TrainingRunner
    assert not hasattr(saecore.training, "SAETrainingRunner")
    assert "SAETrainingRunner" not in saecore.__all__ and "SAETrainingRunnerConfig" not in saecore.__all__
    assert saecore.TrainingRunnerConfig is TrainingRunnerConfig
