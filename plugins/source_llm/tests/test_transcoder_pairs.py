"""``hook_name_out``: rows are (input, target) pairs of one forward pass, for transcoders.

The reference for each half of a row is a source reading that hook alone, with the same
seed and data, so the shuffled pairs must line up exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import LLMSource, LLMSourceConfig

from saecore import get_registry
from saecore.errors import ConfigError

MLP_IN = "transformer.h.0.ln_2"
MLP_OUT = "transformer.h.0.mlp"


def make_source(hf_model: Any, text_dir: Path, hook_name: str, **settings: Any) -> LLMSource:
    values: dict[str, Any] = {"model": hf_model, "hook_name": hook_name, "dataset_path": str(text_dir),
                              "context_size": 16, "store_batch_size_prompts": 4, "n_batches_in_buffer": 3,
                              "verbose": False}
    values.update(settings)
    return LLMSource(LLMSourceConfig(**values), seed=7)


def test_rows_are_the_input_hooks_activation_then_the_output_hooks(hf_model: Any, text_dir: Path) -> None:
    pairs = make_source(hf_model, text_dir, MLP_IN, hook_name_out=MLP_OUT)
    inputs = make_source(hf_model, text_dir, MLP_IN)
    targets = make_source(hf_model, text_dir, MLP_OUT)
    assert (pairs.d_in, pairs.target_width) == (64, 32)
    assert pairs.streams() == {MLP_IN: 64}
    assert pairs.sae_metadata()["hook_name_out"] == MLP_OUT
    for _ in range(3):
        batch = pairs.next_batch(40)
        assert torch.equal(batch[:, :32], inputs.next_batch(40))
        assert torch.equal(batch[:, 32:], targets.next_batch(40))


@pytest.mark.parametrize(("settings", "message"), [
    ({"hook_name_out": MLP_IN}, "hook_name_out='transformer.h.0.ln_2' is hook_name"),
    ({"hook_name_out": MLP_OUT, "additional_hook_names": [MLP_OUT]},
     r"hook_name_out='transformer\.h\.0\.mlp' is additional_hook_names\[0\]"),
    ({"additional_hook_names": ["transformer.h.1"], "additional_hook_names_out": {"transformer.h.2": MLP_OUT}},
     r"additional_hook_names_out has keys \['transformer\.h\.2'\] that are not in additional_hook_names"),
    ({"hook_name_out": MLP_OUT, "additional_hook_names": ["transformer.h.1.ln_2"],
      "additional_hook_names_out": {"transformer.h.1.ln_2": MLP_OUT}},
     r"additional_hook_names_out\['transformer\.h\.1\.ln_2'\]='transformer\.h\.0\.mlp' is hook_name_out"),
])
def test_output_hooks_that_cannot_pair_are_refused(hf_model: Any, text_dir: Path, settings: dict, message: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=message):
        make_source(hf_model, text_dir, MLP_IN, **settings)


def test_several_pairs_and_plain_hooks_share_one_forward_pass(hf_model: Any, text_dir: Path) -> None:
    """Each stream's columns equal a source reading that stream's hook (and target) alone."""
    late_in, late_out, plain = "transformer.h.1.ln_2", "transformer.h.1.mlp", "transformer.h.1"
    mixed = make_source(hf_model, text_dir, MLP_IN, hook_name_out=MLP_OUT, additional_hook_names=[plain, late_in],
                        additional_hook_names_out={late_in: late_out})
    alone = [make_source(hf_model, text_dir, MLP_IN, hook_name_out=MLP_OUT), make_source(hf_model, text_dir, plain),
             make_source(hf_model, text_dir, late_in, hook_name_out=late_out)]
    assert mixed.streams() == {MLP_IN: 64, plain: 32, late_in: 64}
    assert [mixed.stream_target_width(stream) for stream in mixed.streams()] == [32, 0, 32]
    assert mixed.target_width == 0  # several streams: no one pair spans the row
    assert mixed.stream_metadata(late_in)["hook_name_out"] == late_out
    assert "hook_name_out" not in mixed.stream_metadata(plain)
    for _ in range(2):
        batch = mixed.next_batch(40)
        assert torch.equal(batch, torch.cat([source.next_batch(40) for source in alone], dim=1))


def test_a_misspelled_output_hook_is_named(hf_model: Any, text_dir: Path) -> None:
    with pytest.raises(ConfigError, match="hook_name_out"):
        make_source(hf_model, text_dir, MLP_IN, hook_name_out="transformer.h.0.mpl")


def test_a_transcoder_trains_on_the_pairs(hf_model: Any, text_dir: Path, tmp_path: Path) -> None:
    if "topk_transcoder" not in get_registry().training_recipes:
        pytest.skip("needs saecore-transcoders")
    from saecore.training import TrainingRunner, TrainingRunnerConfig

    source = make_source(hf_model, text_dir, MLP_IN, hook_name_out=MLP_OUT)
    cfg = TrainingRunnerConfig(
        sae={"architecture": "topk_transcoder", "d_in": 32, "d_out": 32, "d_sae": 64, "k": 4},
        source=source.cfg, training_tokens=640, train_batch_size_tokens=64, n_eval_batches=1,
        output_path=str(tmp_path / "out"), checkpoint_path=str(tmp_path / "ck"), verbose=False,
    )
    runner = TrainingRunner(cfg, source)
    sae = runner.run()
    assert sae.cfg.metadata.hook_name == MLP_IN and sae.cfg.metadata.hook_name_out == MLP_OUT
    assert runner.summary is not None and 0 < runner.summary.source_metrics["ce_loss_with_sae"]
