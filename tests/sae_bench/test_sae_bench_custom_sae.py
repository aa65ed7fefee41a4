"""sae_bench 0.6's custom-SAE path on a saecore SAE: load_and_format_sae, then the core eval's weight metrics.

Run by ``nox -s sae_bench``, which installs sae-bench without its dependencies (its
imports need sae-lens and TransformerLens 3, installed there beside saecore).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from saecore import StandardSAE, StandardSAEConfig

general_utils = pytest.importorskip("sae_bench.sae_bench_utils.general_utils")
core_main = pytest.importorskip("sae_bench.evals.core.main")


def unit_norm_sae() -> StandardSAE:
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=32, metadata={"model_name": "pythia-70m-deduped",
                                                                      "hook_name": "blocks.3.hook_resid_post",
                                                                      "context_size": 128, "prepend_bos": True}))
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.normal_()
        sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True)
    return sae


def test_load_and_format_sae_standardizes_a_saecore_sae_config() -> None:
    sae = unit_norm_sae()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sae_bench sets its own attributes on the config
        sae_id, formatted, sparsity = general_utils.load_and_format_sae("my_release", sae, "cpu")
    assert (sae_id, formatted, sparsity) == ("custom_sae", sae, None)
    cfg = formatted.cfg
    assert (cfg.hook_layer, cfg.hook_name, cfg.model_name, cfg.architecture_str) == (
        3, "blocks.3.hook_resid_post", "pythia-70m-deduped", "standard")
    assert cfg.metadata.hook_layer == 3 and cfg.to_dict()["metadata"]["architecture_str"] == "standard"


def test_core_weight_metrics_of_a_saecore_sae() -> None:
    sae = unit_norm_sae()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        general_utils.load_and_format_sae("my_release", sae, "cpu")
    metrics = core_main.get_featurewise_weight_based_metrics(sae)
    assert metrics["encoder_bias"] == sae.b_enc.tolist()
    torch.testing.assert_close(torch.tensor(metrics["encoder_norm"]), sae.W_enc.detach().norm(dim=0))
    cosine = torch.nn.functional.cosine_similarity(sae.W_enc.detach().T, sae.W_dec.detach(), dim=-1)
    torch.testing.assert_close(torch.tensor(metrics["encoder_decoder_cosine_sim"]), cosine)
    unit = sae.W_dec.detach() / sae.W_dec.detach().norm(dim=-1, keepdim=True)
    similarity = unit @ unit.T - 3 * torch.eye(32)
    torch.testing.assert_close(torch.tensor(metrics["max_decoder_cosine_sim"]), similarity.max(dim=-1).values)
