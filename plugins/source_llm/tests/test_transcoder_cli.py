"""``saecore train --arch *_transcoder --source llm`` and ``saecore eval`` on the offline tiny GPT-2.

A TopK transcoder and a TopK skip transcoder train on the MLP of layer 1 (input
``ln2.hook_normalized``, target ``hook_mlp_out``) of the tiny GPT-2 with that MLP's output
projection scaled up, so that zeroing it costs the model something measurable. ``saecore eval``,
given no source flags, must find each transcoder predicting the MLP's output better than zeroing
it: a lower replacement CE loss and KL divergence than the ablation's, a positive CE loss score.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from saecore_source_llm.spliced_evals import METRIC_NAMES

from saecore.cli import eval_cmd, train_cmd

MLP_IN, MLP_OUT = "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"
MLP_SCALE = 30.0


@pytest.fixture(scope="module")
def loud_mlp_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 with layer 1's MLP output projection multiplied by ``MLP_SCALE``."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("loud-mlp-gpt2")
    model = GPT2LMHeadModel.from_pretrained(model_dir)
    with torch.no_grad():
        model.transformer.h[1].mlp.c_proj.weight.mul_(MLP_SCALE)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("arch", ["topk_transcoder", "topk_skip_transcoder"])
def test_a_transcoder_trained_from_the_cli_beats_the_zero_ablation(
    arch: str, loud_mlp_model_dir: Path, text_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = ["--arch", arch, "--source", "llm", "--model", str(loud_mlp_model_dir), "--hook-name", MLP_IN,
             "--hook-name-out", MLP_OUT, "--dataset-path", str(text_dir), "--context-size", "16",
             "--store-batch-size-prompts", "4", "--n-batches-in-buffer", "4", "--training-tokens", "4096",
             "--train-batch-size-tokens", "64", "--d-sae", "64", "--k", "8", "--n-eval-batches", "2",
             "--output-path", str(tmp_path / "tc")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the tiny dataset is read more than once
        assert train_cmd.run_from_argv(train) == 0
        assert "ce_loss_score" in capsys.readouterr().out
        argv = [str(tmp_path / "tc"), "--source", "llm", "--n-eval-batches", "2", "--batch-size-tokens", "64",
                "--store-batch-size-prompts", "4", "--n-batches-in-buffer", "4", "--verbose", "false", "--json"]
        assert eval_cmd.run_from_argv(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["architecture"] == arch
    assert report["source_config"]["hook_name_out"] == MLP_OUT
    scores = report["source_metrics"]
    assert list(scores) == list(METRIC_NAMES)
    assert scores["ce_loss_with_sae"] < scores["ce_loss_with_ablation"] and scores["ce_loss_score"] > 0
    assert scores["kl_div_with_sae"] < scores["kl_div_with_ablation"]


def test_saecore_eval_refuses_a_source_of_inputs_only_for_a_transcoder(tmp_path: Path) -> None:
    from saecore import SAE
    from saecore.errors import ConfigError

    SAE.from_dict({"architecture": "topk_transcoder", "d_in": 16, "d_sae": 32, "k": 4}).save_model(tmp_path / "tc")
    with pytest.raises(ConfigError, match=r"is a transcoder \(topk_transcoder\) but the 'synthetic' source serves "
                                          r"inputs only; give it the output hook too"):
        eval_cmd.run_from_argv([str(tmp_path / "tc"), "--source", "synthetic", "--d-in", "16"])
