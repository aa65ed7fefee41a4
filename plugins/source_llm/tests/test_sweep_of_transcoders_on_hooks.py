"""A sweep mixing an SAE and two transcoders on different layers of one language-model stream.

The llm source reads every hook and both pairs in one forward pass; each member trains on
its stream's columns and must end with exactly the weights of its solo run on a source
reading its hook (or its pair) alone.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import LLMSourceConfig
from safetensors.torch import load_file

from saecore import get_registry
from saecore.errors import ConfigError
from saecore.training import SAESweepConfig, SAESweepRunner, SweepMember, TrainingRunner, TrainingRunnerConfig

EARLY_IN, EARLY_OUT = "transformer.h.0.ln_2", "transformer.h.0.mlp"
LATE_IN, LATE_OUT = "transformer.h.1.ln_2", "transformer.h.1.mlp"
PLAIN = "transformer.h.0"

MEMBERS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "sae": (PLAIN, None, {"architecture": "topk", "d_in": 32, "d_sae": 64, "k": 4}),
    "early_tc": (EARLY_IN, EARLY_OUT, {"architecture": "topk_transcoder", "d_in": 32, "d_out": 32, "d_sae": 64,
                                        "k": 4}),
    "late_tc": (LATE_IN, LATE_OUT, {"architecture": "skip_transcoder", "d_in": 32, "d_out": 32, "d_sae": 64}),
}
SCALED = {"normalize_activations": "expected_average_only_in"}  # each member's scales come from its own columns


def source_config(model_dir: Path, text_dir: Path, **hooks: Any) -> LLMSourceConfig:
    return LLMSourceConfig(model_name=str(model_dir), model_class_name="AutoModelForCausalLM",
                           dataset_path=str(text_dir), context_size=16, store_batch_size_prompts=4,
                           n_batches_in_buffer=3, verbose=False, eval_batch_size_prompts=4, n_eval_batches=1, **hooks)


def run_config(folder: Path, sae: dict[str, Any], source: LLMSourceConfig) -> TrainingRunnerConfig:
    return TrainingRunnerConfig(sae={**sae, **SCALED}, source=source, training_tokens=640, train_batch_size_tokens=64,
                                lr=1e-2, n_eval_batches=1, n_batches_for_norm_estimate=2, output_path=str(folder),
                                checkpoint_path=str(folder.parent / "checkpoints"), verbose=False)


def test_an_sae_and_two_transcoders_on_one_stream_each_equal_their_solo_runs(
    model_dir: Path, text_dir: Path, tmp_path: Path
) -> None:
    if "topk_transcoder" not in get_registry().training_recipes:
        pytest.skip("needs saecore-transcoders")
    shared = source_config(model_dir, text_dir, hook_name=EARLY_IN, hook_name_out=EARLY_OUT,
                           additional_hook_names=[PLAIN, LATE_IN], additional_hook_names_out={LATE_IN: LATE_OUT})
    members = [SweepMember(name=name, stream=hook, run=run_config(tmp_path / "sweep" / name, sae, shared))
               for name, (hook, _, sae) in MEMBERS.items()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the tiny dataset is read more than once
        runner = SAESweepRunner(SAESweepConfig(members=members))
        runner.run()
        for name, (hook, target, sae) in MEMBERS.items():
            alone = source_config(model_dir, text_dir, hook_name=hook, hook_name_out=target)
            TrainingRunner(run_config(tmp_path / "solo" / name, sae, alone)).run()
    for name in MEMBERS:
        swept = load_file(str(tmp_path / "sweep" / name / "sae_weights.safetensors"))
        solo = load_file(str(tmp_path / "solo" / name / "sae_weights.safetensors"))
        assert swept.keys() == solo.keys()
        assert all(torch.equal(swept[key], solo[key]) for key in solo), name
        assert "ce_loss_score" in runner.summaries[name].source_metrics, name
    for name, (hook, target, _) in MEMBERS.items():
        metadata = json.loads((tmp_path / "sweep" / name / "cfg.json").read_text())["metadata"]
        assert (metadata["hook_name"], metadata.get("hook_name_out")) == (hook, target), name


def test_a_transcoder_on_a_stream_without_a_target_is_refused_by_name(
    model_dir: Path, text_dir: Path, tmp_path: Path
) -> None:
    if "topk_transcoder" not in get_registry().training_recipes:
        pytest.skip("needs saecore-transcoders")
    shared = source_config(model_dir, text_dir, hook_name=EARLY_IN, hook_name_out=EARLY_OUT,
                           additional_hook_names=[PLAIN])
    _, _, transcoder = MEMBERS["early_tc"]
    members = [SweepMember(name="misplaced", stream=PLAIN, run=run_config(tmp_path / "misplaced", transcoder, shared))]
    with pytest.raises(ConfigError, match=r"sweep SAE 'misplaced' is a topk_transcoder: it trains on \(input, target\) "
                                          r"pairs, but the source \(LLMSource\) serves inputs only"):
        SAESweepRunner(SAESweepConfig(members=members)).run()
