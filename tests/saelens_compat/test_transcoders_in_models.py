"""Transcoders spliced into TransformerLens 3 models, in SAELens's HookedSAETransformer and in saecore's.

One set of weights, made by SAELens: SAELens's transcoder in SAELens's model is the reference;
the same weights loaded by saecore must give the same logits and ``<hook_name_out>.hook_sae_*``
cache entries in SAELens's model and in saecore's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens")
transformer_lens = pytest.importorskip("transformer_lens")
saecore = pytest.importorskip("saecore")
pytest.importorskip("saecore_transcoders")
pytest.importorskip("saecore_source_llm")

D_MODEL, D_SAE = 16, 40
MLP_IN, MLP_OUT = "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"
POINTS = ("hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_output")


def model_config() -> Any:
    return transformer_lens.HookedTransformerConfig(n_layers=2, d_model=D_MODEL, n_ctx=12, d_head=4, n_heads=4,
                                                    d_vocab=30, act_fn="gelu", dtype=torch.float64, seed=0)


def tokens() -> torch.Tensor:
    return torch.randint(0, 30, (2, 7), generator=torch.Generator().manual_seed(2))


def saelens_transcoder(architecture: str) -> Any:
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.transcoder import JumpReLUTranscoder, JumpReLUTranscoderConfig, Transcoder, TranscoderConfig

    sae_class, config_class = {"transcoder": (Transcoder, TranscoderConfig),
                               "jumprelu_transcoder": (JumpReLUTranscoder, JumpReLUTranscoderConfig)}[architecture]
    transcoder = sae_class(config_class(d_in=D_MODEL, d_out=D_MODEL, d_sae=D_SAE, dtype="float64",
                                        apply_b_dec_to_input=False,
                                        metadata=SAEMetadata(hook_name=MLP_IN, hook_name_out=MLP_OUT)))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, parameter in transcoder.named_parameters():
            value = torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * 0.3
            parameter.copy_(value.abs() if name == "threshold" else value)
    return transcoder


def spliced_run(model: Any, transcoder: Any, use_error_term: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logits, cache = model.run_with_cache_with_saes(tokens(), saes=[transcoder], use_error_term=use_error_term)
    names = POINTS + (("hook_sae_error",) if use_error_term else ())
    return logits, {name: cache[f"{MLP_OUT}.{name}"] for name in names}


@pytest.mark.parametrize("use_error_term", [False, True], ids=["prediction", "error-term"])
@pytest.mark.parametrize("architecture", ["transcoder", "jumprelu_transcoder"])
def test_a_transcoder_splices_alike_in_saelens_and_saecore_models(architecture: str, use_error_term: bool,
                                                                   tmp_path: Path) -> None:
    from saecore_source_llm.hooked_sae_transformer import HookedSAETransformer

    theirs = saelens_transcoder(architecture)
    theirs.save_model(tmp_path)
    ours = saecore.SAE.load_from_disk(tmp_path, dtype="float64")
    saelens_model = sae_lens.HookedSAETransformer(model_config())
    saecore_model = HookedSAETransformer(model_config())

    expected_logits, expected = spliced_run(saelens_model, theirs, use_error_term)
    for model in (saelens_model, saecore_model):
        logits, points = spliced_run(model, ours, use_error_term)
        torch.testing.assert_close(logits, expected_logits, rtol=1e-10, atol=1e-10)
        for name, value in expected.items():
            torch.testing.assert_close(points[name], value, rtol=1e-10, atol=1e-10, msg=name)
    if not use_error_term:  # the prediction replaced the MLP's output
        assert not torch.allclose(expected_logits, saecore_model(tokens()))
