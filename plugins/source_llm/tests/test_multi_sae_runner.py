"""SAELens's MultiSAETrainingRunner: several SAEs, on one or more hooks, from shared forward passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from saecore_source_llm import MultiSAETrainingRunner, MultiSAETrainingRunnerConfig

from saecore import SAE, StandardTrainingSAE, StandardTrainingSAEConfig, TopKTrainingSAEConfig, get_registry
from saecore.training import LoggingConfig


def multi_config(tmp_path: Path, text_dir: Path, **fields: Any) -> MultiSAETrainingRunnerConfig:
    values: dict[str, Any] = {
        "saes": {"relu": StandardTrainingSAEConfig(d_in=32, d_sae=64),
                 "topk": TopKTrainingSAEConfig(d_in=32, d_sae=96, k=4)},
        "hook_names": {"relu": "transformer.h.1", "topk": "transformer.h.0"},
        "dataset_path": str(text_dir), "context_size": 16, "store_batch_size_prompts": 4, "n_batches_in_buffer": 4,
        "train_batch_size_tokens": 64, "training_tokens": 64 * 4, "n_batches_for_norm_estimate": 2,
        "n_eval_batches": 1, "output_path": str(tmp_path / "out"), "checkpoint_path": None, "verbose": False,
        "logger": LoggingConfig(log_to_wandb=False),
    }
    values.update(fields)
    return MultiSAETrainingRunnerConfig(**values)


def test_each_sae_trains_on_its_hook_and_saves_under_its_name(hf_model: Any, text_dir: Path, tmp_path: Path) -> None:
    cfg = multi_config(tmp_path, text_dir)
    runner = MultiSAETrainingRunner(cfg, override_model=hf_model)
    source = runner.sweep_cfg.first.source
    assert (source.hook_name, source.additional_hook_names) == ("transformer.h.1", ["transformer.h.0"])
    saes = runner.run()
    assert set(saes) == {"relu", "topk"} and saes["topk"].cfg.d_sae == 96
    for name, hook in cfg.hook_names.items():
        loaded = SAE.load_from_disk(tmp_path / "out" / name)
        assert loaded.cfg.metadata.hook_name == hook
        assert json.loads((tmp_path / "out" / name / "runner_cfg.json").read_text())["output_path"].endswith(name)


def test_override_saes_are_trained_with_their_own_configs(hf_model: Any, text_dir: Path, tmp_path: Path) -> None:
    cfg = multi_config(tmp_path, text_dir, hook_names="transformer.h.1",
                       saes={"a": StandardTrainingSAEConfig(d_in=32, d_sae=64)})
    given = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=32, d_sae=48, l1_coefficient=3.0))
    assert MultiSAETrainingRunner(cfg, override_model=hf_model, override_saes={"a": given}).run() == {"a": given}
    with pytest.raises(ValueError, match=r"override_saes keys must match cfg.saes; extra: \['b'\]"):
        MultiSAETrainingRunner(cfg, override_saes={"a": given, "b": given})


def test_bad_configs_are_refused_naming_what_is_wrong(text_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"hook_names keys must match saes keys; extra: \[\]; "
                                              r"missing: \['topk'\]"):
        multi_config(tmp_path, text_dir, hook_names={"relu": "transformer.h.1"})
    with pytest.raises(ValidationError, match=r"SAEs sharing hook 'transformer\.h\.1' must have the same d_in"):
        multi_config(tmp_path, text_dir, hook_names="transformer.h.1",
                     saes={"a": StandardTrainingSAEConfig(d_in=32, d_sae=64),
                           "b": StandardTrainingSAEConfig(d_in=16, d_sae=64)})
    with pytest.raises(ValidationError, match="a custom per-SAE evaluator is not supported"):
        multi_config(tmp_path, text_dir, evaluator=lambda sae, data, scaler: {})
    with pytest.raises(ValidationError, match=r"unknown field 'hook_name' \(did you mean 'hook_names'"):
        multi_config(tmp_path, text_dir, hook_name="transformer.h.1")
    with pytest.raises(ValidationError, match=r"unknown field 'hook_head_indexes' \(did you mean 'hook_head_indices'"):
        multi_config(tmp_path, text_dir, hook_head_indexes=1)


TRANSCODER = {"architecture": "topk_transcoder", "d_in": 32, "d_out": 32, "d_sae": 64, "k": 4}


def test_a_transcoder_trains_on_its_pair_beside_an_sae(hf_model: Any, text_dir: Path, tmp_path: Path) -> None:
    if "topk_transcoder" not in get_registry().training_recipes:
        pytest.skip("needs saecore-transcoders")
    cfg = multi_config(tmp_path, text_dir, saes={"sae": TopKTrainingSAEConfig(d_in=32, d_sae=64, k=4),
                                                 "tc": TRANSCODER},
                       hook_names={"sae": "transformer.h.0", "tc": "transformer.h.1.ln_2"},
                       hook_names_out={"tc": "transformer.h.1.mlp"})
    runner = MultiSAETrainingRunner(cfg, override_model=hf_model)
    source = runner.sweep_cfg.first.source
    assert (source.hook_name_out, source.additional_hook_names_out) == (None, {"transformer.h.1.ln_2":
                                                                               "transformer.h.1.mlp"})
    saes = runner.run()
    assert saes["tc"].cfg.d_out == 32
    metadata = json.loads((tmp_path / "out" / "tc" / "cfg.json").read_text())["metadata"]
    assert (metadata["hook_name"], metadata["hook_name_out"]) == ("transformer.h.1.ln_2", "transformer.h.1.mlp")
    assert "hook_name_out" not in json.loads((tmp_path / "out" / "sae" / "cfg.json").read_text())["metadata"]
    assert "hook_names_out" in cfg.to_dict() and "hook_name_out" not in cfg.to_dict()


def test_a_transcoder_on_the_first_hook_sets_the_sources_hook_name_out(text_dir: Path, tmp_path: Path) -> None:
    if "topk_transcoder" not in get_registry().training_recipes:
        pytest.skip("needs saecore-transcoders")
    cfg = multi_config(tmp_path, text_dir, saes={"tc": TRANSCODER, "tc2": TRANSCODER},
                       hook_names="transformer.h.0.ln_2", hook_names_out={"tc": "transformer.h.0.mlp",
                                                                          "tc2": "transformer.h.0.mlp"})
    source = cfg.source_config()
    assert (source.hook_name, source.hook_name_out, source.additional_hook_names_out) == (
        "transformer.h.0.ln_2", "transformer.h.0.mlp", {})


def test_output_hooks_that_do_not_fit_the_saes_are_refused_naming_what_is_wrong(text_dir: Path, tmp_path: Path) -> None:
    if "topk_transcoder" not in get_registry().training_recipes:
        pytest.skip("needs saecore-transcoders")
    with pytest.raises(ValidationError, match=r"unknown field 'hook_name_out' \(did you mean 'hook_names_out'"):
        multi_config(tmp_path, text_dir, hook_name_out="transformer.h.0.mlp")
    with pytest.raises(ValidationError, match=r"hook_names_out has keys that are not SAEs: \['tc'\]"):
        multi_config(tmp_path, text_dir, hook_names_out={"tc": "transformer.h.0.mlp"})
    with pytest.raises(ValidationError, match=r"SAE 'topk' \(topk\) is not a transcoder"):
        multi_config(tmp_path, text_dir, hook_names_out={"topk": "transformer.h.0.mlp"})
    with pytest.raises(ValidationError, match=r"SAE 'tc' \(topk_transcoder\) needs an output hook in hook_names_out"):
        multi_config(tmp_path, text_dir, saes={"tc": TRANSCODER}, hook_names="transformer.h.0.ln_2")
    with pytest.raises(ValidationError, match=r"SAEs sharing hook 'transformer\.h\.0' must predict the same output "
                                              r"hook; 'tc' has 'transformer\.h\.0\.mlp', 'topk' has None"):
        multi_config(tmp_path, text_dir, saes={"tc": TRANSCODER, "topk": TopKTrainingSAEConfig(d_in=32, d_sae=96, k=4)},
                     hook_names="transformer.h.0", hook_names_out={"tc": "transformer.h.0.mlp"})
    with pytest.raises(ValidationError, match=r"hook_names_out\['tc'\]='transformer\.h\.1' is also an SAE's input"):
        multi_config(tmp_path, text_dir, saes={"tc": TRANSCODER, "relu": StandardTrainingSAEConfig(d_in=32, d_sae=64)},
                     hook_names={"tc": "transformer.h.0.ln_2", "relu": "transformer.h.1"},
                     hook_names_out={"tc": "transformer.h.1"})
