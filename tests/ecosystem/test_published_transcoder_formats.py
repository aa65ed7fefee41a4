"""The published transcoder formats load offline from a Hub cache, by release name and by repo and path,
and compute their publisher's formula.

The files are tiny random transcoders written to each publisher's layout
(``fixtures.published_formats``); each expected output is the publisher's formula in float64 on
the tensors as written, in the publisher's names and layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from ecosystem_helpers import relative_error, require_architectures
from fixtures.published_formats import (
    D_IN,
    D_SAE,
    PublishedSAE,
    publish,
    write_gemma_2_transcoder,
    write_gemma_scope_2,
    write_mntss_clt_layer,
    write_mwhanna_transcoder,
)

from saecore import SAE, SAEFileError

pytestmark = [pytest.mark.filterwarnings("ignore:.*is a Hugging Face repo id:UserWarning"),
              pytest.mark.filterwarnings("ignore:A cross-layer transcoder layer loads:UserWarning")]

TRANSCODERS = ("transcoder", "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder")


def x_in() -> torch.Tensor:
    return 2 * torch.randn(12, D_IN, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def assert_computes(sae: SAE[Any], x: torch.Tensor, expected_acts: torch.Tensor, expected_out: torch.Tensor) -> None:
    assert 0 < int((expected_acts > 0).sum()) < expected_acts.numel()
    acts = sae.encode(x)
    assert torch.equal(acts > 0, expected_acts > 0)
    assert relative_error(acts, expected_acts) <= 1e-12
    assert relative_error(sae(x), expected_out) <= 1e-12


def published_in_cache(hub_cache: Path, tmp_path: Path, published: PublishedSAE) -> dict[str, torch.Tensor]:
    publish(hub_cache, tmp_path / "upload", published.repo_id)
    return {name: tensor.double() for name, tensor in published.tensors.items()}


def test_gemma_scope_transcoder_release_loads_offline(hub_cache: Path, tmp_path: Path) -> None:
    require_architectures("jumprelu_transcoder")
    published = write_gemma_2_transcoder(tmp_path / "upload")
    t = published_in_cache(hub_cache, tmp_path, published)

    sae = SAE.from_pretrained("gemma-scope-2b-pt-transcoders", published.sae_path, dtype="float64")

    assert sae.cfg.architecture() == "jumprelu_transcoder"
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.d_out) == (D_IN, D_SAE, D_IN)
    assert (sae.cfg.metadata.model_name, sae.cfg.metadata.hook_name, sae.cfg.metadata.hook_name_out) == (
        "gemma-2-2b", "blocks.3.ln2.hook_normalized", "blocks.3.hook_mlp_out")
    x = x_in()
    hidden = x @ t["W_enc"] + t["b_enc"]
    acts = torch.relu(hidden) * (hidden > t["threshold"])
    assert_computes(sae, x, acts, acts @ t["W_dec"] + t["b_dec"])


@pytest.mark.parametrize(("skip", "jumprelu", "architecture"), [
    (False, False, "transcoder"),
    (True, False, "skip_transcoder"),
    (False, True, "jumprelu_transcoder"),
    (True, True, "jumprelu_skip_transcoder"),
])
def test_circuit_tracer_transcoder_release_loads_offline(skip: bool, jumprelu: bool, architecture: str,
                                                         hub_cache: Path, tmp_path: Path) -> None:
    """circuit-tracer's formula: ``f = act(x W_encᵀ + b_enc)``, ``y = f W_dec + b_dec (+ x W_skipᵀ)``."""
    require_architectures(architecture)
    published = write_mwhanna_transcoder(tmp_path / "upload", skip=skip, jumprelu=jumprelu)
    t = published_in_cache(hub_cache, tmp_path, published)

    sae = SAE.from_pretrained("mwhanna-qwen3-0.6b-transcoders-lowl0", "layer_3", dtype="float64")

    assert sae.cfg.architecture() == architecture
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.d_out) == (D_IN, D_SAE, D_IN)
    metadata = sae.cfg.metadata
    assert (metadata.model_name, metadata.hook_name, metadata.hook_name_out, metadata.context_size) == (
        "Qwen/Qwen3-0.6B", "blocks.3.mlp.hook_in", "blocks.3.hook_mlp_out", 4096)
    assert metadata.model_from_pretrained_kwargs == {"fold_ln": False}
    x = x_in()
    hidden = x @ t["W_enc"].T + t["b_enc"]
    acts = hidden * (hidden > t["activation_function.threshold"]) if jumprelu else torch.relu(hidden)
    out = acts @ t["W_dec"] + t["b_dec"] + (x @ t["W_skip"].T if skip else 0)
    assert_computes(sae, x, acts, out)


def test_circuit_tracer_repo_without_config_yaml_names_the_qwen3_model_and_reads_the_misspelt_wandb_config(
    hub_cache: Path, tmp_path: Path
) -> None:
    require_architectures("transcoder")
    published = write_mwhanna_transcoder(tmp_path / "upload", repo_id="mwhanna/qwen3-14b-transcoders",
                                         wandb_filename="wanb-config.yaml", with_model_config=False)
    published_in_cache(hub_cache, tmp_path, published)

    sae = SAE.from_pretrained(published.repo_id, published.sae_path, converter="mwhanna_transcoder")

    assert (sae.cfg.metadata.model_name, sae.cfg.metadata.context_size) == ("Qwen/Qwen3-14B", 4096)


def test_cross_layer_transcoder_layer_loads_offline_with_its_decoders_summed(hub_cache: Path, tmp_path: Path) -> None:
    require_architectures("transcoder")
    published = write_mntss_clt_layer(tmp_path / "upload")
    t = published_in_cache(hub_cache, tmp_path, published)

    with pytest.warns(UserWarning, match="feature activations, not reconstructions"):
        sae = SAE.from_pretrained("mntss-gemma-2-2b-2.5m-clt-as-per-layer", "layer_3", dtype="float64")

    assert sae.cfg.architecture() == "transcoder"
    assert (sae.cfg.metadata.model_name, sae.cfg.metadata.hook_name, sae.cfg.metadata.hook_name_out) == (
        "google/gemma-2-2b", "blocks.3.hook_resid_mid", "blocks.3.hook_mlp_out")
    x = x_in()
    acts = torch.relu(x @ t["W_enc_3"].T + t["b_enc_3"])
    # The decoders are summed in the file's float32, before the cast to float64.
    summed_decoder = published.tensors["W_dec_3"].sum(dim=1).double()
    assert_computes(sae, x, acts, acts @ summed_decoder + t["b_dec_3"])


def test_cross_layer_transcoder_path_that_is_not_a_layer_number_is_refused(hub_cache: Path, tmp_path: Path) -> None:
    published = write_mntss_clt_layer(tmp_path / "upload")
    published_in_cache(hub_cache, tmp_path, published)
    with pytest.raises(SAEFileError, match=r"SAE path is its layer number \(for example '3'\), got 'layer_3'"):
        SAE.from_pretrained(published.repo_id, "layer_3", converter="mntss_clt_layer_transcoder")


@pytest.mark.parametrize("affine", [False, True])
def test_gemma_scope_2_transcoder_loads_offline_with_its_skip_connection(affine: bool, hub_cache: Path,
                                                                        tmp_path: Path) -> None:
    """Gemma Scope 2's formula: ``f = JumpReLU(x w_enc + b_enc)``,
    ``y = f w_dec + b_dec (+ x affine_skip_connection)``."""
    architecture = "jumprelu_skip_transcoder" if affine else "jumprelu_transcoder"
    require_architectures(architecture)
    published = write_gemma_scope_2(tmp_path / "upload", sae_path="transcoder/layer_5_width_16k_l0_tiny"
                                    + ("_affine" if affine else ""), affine=affine)
    t = published_in_cache(hub_cache, tmp_path, published)

    sae = SAE.from_pretrained(published.repo_id, published.sae_path, converter="gemma_3", dtype="float64")

    assert sae.cfg.architecture() == architecture
    assert (sae.cfg.metadata.hook_name, sae.cfg.metadata.hook_name_out) == ("blocks.5.hook_mlp_in",
                                                                            "blocks.5.hook_mlp_out")
    x = x_in()
    hidden = x @ t["w_enc"] + t["b_enc"]
    acts = torch.relu(hidden) * (hidden > t["threshold"])
    out = acts @ t["w_dec"] + t["b_dec"] + (x @ t["affine_skip_connection"] if affine else 0)
    assert_computes(sae, x, acts, out)


@pytest.mark.parametrize("release", ["gemma-scope-2b-pt-transcoders", "mwhanna-qwen3-0.6b-transcoders-lowl0",
                                     "mntss-gemma-2-2b-2.5m-clt-as-per-layer", "gemma-scope-2-270m-pt-transcoders"])
def test_transcoder_releases_are_loadable(release: str) -> None:
    from saecore.cli.releases_cmd import release_record
    from saecore.registry import get_registry

    require_architectures(*TRANSCODERS)
    assert release_record(get_registry().releases[release], with_saes=False)["loadable"] is True
