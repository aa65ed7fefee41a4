"""Replacement scores of a transcoder: the MLP's output replaced by its prediction from the MLP's input.

The reference is the Hugging Face model with two hand-written forward hooks (one keeps the
``ln_2`` output, the other replaces the MLP's output at the evaluated positions with the skip
transcoder formula in float64), scored by ``test_spliced_evals.reference_metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from test_spliced_evals import assert_metrics_close, make_source, reference_metrics, special_ids

from saecore import SAE

MLP_IN, MLP_OUT = "transformer.h.0.ln_2", "transformer.h.0.mlp"


def random_transcoder(width: int) -> SAE[Any]:
    transcoder = SAE.from_dict({"architecture": "skip_transcoder", "d_in": width, "d_sae": 48, "d_out": width,
                                "metadata": {"hook_name": MLP_IN, "hook_name_out": MLP_OUT}})
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in transcoder.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return transcoder


def test_a_transcoders_replacement_scores_match_a_manual_replacement(hf_model: Any, tokenizer: Any,
                                                                      text_dir: Path) -> None:
    source = make_source(text_dir, model=hf_model, hook_name=MLP_IN, hook_name_out=MLP_OUT)
    tc = random_transcoder(32)
    w_enc, b_enc, w_dec, b_dec, w_skip = (p.detach().double() for p in (tc.W_enc, tc.b_enc, tc.W_dec, tc.b_dec,
                                                                         tc.W_skip))
    inputs: dict[str, torch.Tensor] = {}

    def keep_input(module: Any, args: Any, output: torch.Tensor) -> None:
        inputs["x"] = output.double()

    def predict(target: torch.Tensor) -> torch.Tensor:
        x = inputs["x"]
        return (torch.relu(x @ w_enc + b_enc) @ w_dec + b_dec + x @ w_skip.T).to(target.dtype)

    def run(tokens: torch.Tensor, edit: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        handles = [hf_model.get_submodule(MLP_IN).register_forward_hook(keep_input)]
        if edit is not None:
            handles.append(hf_model.get_submodule(MLP_OUT).register_forward_hook(
                lambda module, args, output: edit(output)))
        try:
            return hf_model(input_ids=tokens).logits
        finally:
            for handle in handles:
                handle.remove()

    tokens = source.eval_tokens()
    expected = reference_metrics(run, tokens, ~torch.isin(tokens, special_ids(tokenizer)), predict)
    found = source.evaluate_sae(tc)
    assert_metrics_close(found, expected, rtol=1e-5, atol=1e-7)
    assert found["ce_loss_with_sae"] != found["ce_loss_without_sae"]
    assert source.evaluate_sae(tc, scaling_factor=2.0) == {}
