"""Every published format loads offline from a Hub cache and computes its publisher's formula.

The files are tiny random SAEs written to each publisher's layout (``fixtures.published_formats``)
and placed in a Hugging Face cache; ``HF_HUB_OFFLINE=1``, so the real download code finds them
there. Each expected output is the publisher's formula in float64 on the tensors as written,
in the publisher's names and layout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from ecosystem_helpers import relative_error, require_architectures
from fixtures.published_formats import (
    D_IN,
    D_SAE,
    WRITERS,
    PublishedSAE,
    publish,
    write_connor_rob_hook_z,
    write_gemma_scope,
    write_gemma_scope_2,
    write_llama_scope,
    write_qwen_scope,
)

from saecore import SAE, SAEFileError, UnknownNameError, get_registry

pytestmark = pytest.mark.filterwarnings("ignore:.*is a Hugging Face repo id:UserWarning")

Formula = Callable[[dict[str, torch.Tensor], dict[str, Any], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _jumprelu(hidden: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.relu(hidden) * (hidden > threshold)


def gemma_scope_formula(t: dict[str, torch.Tensor], _: dict[str, Any], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    acts = _jumprelu(x @ t["W_enc"] + t["b_enc"], t["threshold"])
    return acts, acts @ t["W_dec"] + t["b_dec"]


def gemma_scope_2_formula(t: dict[str, torch.Tensor], _: dict[str, Any], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    acts = _jumprelu(x @ t["w_enc"] + t["b_enc"], t["threshold"])
    return acts, acts @ t["w_dec"] + t["b_dec"]


def qwen_scope_formula(t: dict[str, torch.Tensor], _: dict[str, Any], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    hidden = x @ t["W_enc"].T + t["b_enc"]
    top = hidden.topk(5, dim=-1)
    acts = torch.zeros_like(hidden).scatter(-1, top.indices, torch.relu(top.values))
    return acts, acts @ t["W_dec"].T + t["b_dec"]


def llama_scope_formula(t: dict[str, torch.Tensor], cfg: dict[str, Any], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    threshold = cfg["jump_relu_threshold"] * cfg["d_model"] ** 0.5 / cfg["dataset_average_activation_norm"]["in"]
    acts = _jumprelu(x @ t["encoder.weight"].T + t["encoder.bias"], torch.tensor(threshold).to(torch.bfloat16))
    return acts, acts @ t["decoder.weight"].T + t["decoder.bias"]


def r1_distill_formula(t: dict[str, torch.Tensor], _: dict[str, Any], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    acts = _jumprelu(x @ t["encoder.weight"].T + t["encoder.bias"], t["log_jumprelu_threshold"].exp())
    return acts, acts @ t["decoder.weight"].T + t["decoder.bias"]


def linear_formula(encoder: str, decoder: str) -> Formula:
    def formula(t: dict[str, torch.Tensor], _: dict[str, Any], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        acts = torch.relu(x @ t[f"{encoder}.weight"].T + t[f"{encoder}.bias"])
        return acts, acts @ t[f"{decoder}.weight"].T + t[f"{decoder}.bias"]

    return formula


def hook_z_formula(t: dict[str, torch.Tensor], _: dict[str, Any], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    acts = torch.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"])
    return acts, acts @ t["W_dec"] + t["b_dec"]


# converter → (architecture, apply_b_dec_to_input, model_name, hook_name, formula)
EXPECTED: dict[str, tuple[str, bool, str, str, Formula]] = {
    "gemma_scope": ("jumprelu", False, "gemma-2-2b", "blocks.3.hook_resid_post", gemma_scope_formula),
    "gemma_3": ("jumprelu", False, "google/gemma-3-270m", "blocks.5.hook_resid_post", gemma_scope_2_formula),
    "qwen_scope": ("topk", False, "Qwen/Qwen3-1.7B-Base", "blocks.3.hook_resid_post", qwen_scope_formula),
    "llama_scope": ("jumprelu", False, "meta-llama/Llama-3.1-8B", "blocks.3.hook_resid_post", llama_scope_formula),
    "llama_scope_r1_distill": ("jumprelu", False, "meta-llama/Llama-3.1-8B", "blocks.3.hook_resid_post",
                               r1_distill_formula),
    "goodfire": ("standard", False, "meta-llama/Llama-3.1-8B-Instruct", "blocks.19.hook_resid_post",
                 linear_formula("encoder_linear", "decoder_linear")),
    "deepseek_r1": ("standard", False, "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "blocks.19.hook_resid_post",
                    linear_formula("encoder", "decoder")),
    "connor_rob_hook_z": ("standard", True, "gpt2-small", "blocks.1.attn.hook_z", hook_z_formula),
}


def x_in(shape: tuple[int, ...] = (12, D_IN)) -> torch.Tensor:
    return 2 * torch.randn(*shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def load_published(
    hub_cache: Path, tmp_path: Path, writer: Callable[[Path], PublishedSAE]
) -> tuple[SAE[Any], PublishedSAE]:
    published = writer(tmp_path / "upload")
    publish(hub_cache, tmp_path / "upload", published.repo_id)
    sae = SAE.from_pretrained(published.repo_id, published.sae_path, converter=published.converter, dtype="float64")
    return sae, published


@pytest.mark.parametrize("converter", list(WRITERS))
def test_published_layout_loads_offline_with_the_publishers_outputs(
    converter: str, hub_cache: Path, tmp_path: Path
) -> None:
    architecture, centre, model_name, hook_name, formula = EXPECTED[converter]
    require_architectures(architecture)
    sae, published = load_published(hub_cache, tmp_path, WRITERS[converter])
    assert sae.cfg.architecture() == architecture
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.apply_b_dec_to_input) == (D_IN, D_SAE, centre)
    assert (sae.cfg.metadata.model_name, sae.cfg.metadata.hook_name) == (model_name, hook_name)
    tensors = {name: tensor.double() for name, tensor in published.tensors.items()}
    x = x_in()
    expected_acts, expected_recons = formula(tensors, published.config, x)
    assert 0 < int((expected_acts > 0).sum()) < expected_acts.numel()
    sae_in = x.reshape(12, 2, D_IN // 2) if converter == "connor_rob_hook_z" else x
    acts = sae.encode(sae_in)
    assert torch.equal(acts > 0, expected_acts > 0)
    assert relative_error(acts, expected_acts) <= 1e-12
    assert relative_error(sae.decode(acts).reshape(expected_recons.shape), expected_recons) <= 1e-12


def test_gemma_scope_2_without_config_json_takes_the_model_from_the_repo(hub_cache: Path, tmp_path: Path) -> None:
    require_architectures("jumprelu")
    sae, _ = load_published(hub_cache, tmp_path, lambda root: write_gemma_scope_2(
        root, repo_id="google/gemma-scope-2-1b-it", sae_path="mlp_out_all/layer_7_width_16k_l0_tiny",
        with_config=False))
    assert sae.cfg.metadata.model_name == "google/gemma-3-1b-it"
    assert sae.cfg.metadata.hook_name == "blocks.7.hook_mlp_out"
    assert sae.cfg.metadata.hf_hook_name == "model.layers.7.post_feedforward_layernorm.output"


def test_gemma_scope_2_attention_sae_reads_flat_hook_z(hub_cache: Path, tmp_path: Path) -> None:
    require_architectures("jumprelu")
    sae, _ = load_published(hub_cache, tmp_path, lambda root: write_gemma_scope_2(
        root, sae_path="attn_out/layer_4_width_16k_l0_tiny", with_config=False))
    assert sae.cfg.metadata.hook_name == "blocks.4.attn.hook_z"
    assert sae.cfg.reshape_activations == "none"


@pytest.mark.parametrize("affine", [False, True])
def test_gemma_scope_2_transcoder_needs_the_transcoder_architecture(
    affine: bool, hub_cache: Path, tmp_path: Path
) -> None:
    """Without saecore-transcoders the error names the architecture; with it, the transcoder loads as it."""
    name = "jumprelu_skip_transcoder" if affine else "jumprelu_transcoder"
    suffix = "_affine" if affine else ""

    def load() -> Any:
        return load_published(hub_cache, tmp_path, lambda root: write_gemma_scope_2(
            root, sae_path=f"transcoder/layer_5_width_16k_l0_tiny{suffix}", affine=affine))[0]

    if name in get_registry().architectures:
        assert load().cfg.architecture() == name
        return
    with pytest.raises(UnknownNameError, match=name):
        load()


def test_gemma_scope_embedding_sae_takes_raw_embeddings(hub_cache: Path, tmp_path: Path) -> None:
    require_architectures("jumprelu")
    sae, published = load_published(hub_cache, tmp_path, lambda root: write_gemma_scope(
        root, sae_path="embedding/width_4k/average_l0_7"))
    assert sae.cfg.metadata.hook_name == "hook_embed"
    tensors = {name: tensor.double() for name, tensor in published.tensors.items()}
    x = x_in()
    acts, _ = gemma_scope_formula(tensors, {}, x / D_IN**0.5)
    # The rescale happens on the float32 weights, so agreement is to float32 precision.
    assert relative_error(sae.encode(x), acts) <= 1e-6
    assert relative_error(sae(x), acts @ tensors["W_dec"] * D_IN**0.5 + tensors["b_dec"]) <= 1e-6


def test_one_file_formats_load_from_disk(tmp_path: Path) -> None:
    require_architectures("topk")
    published = write_qwen_scope(tmp_path / "SAE-Res-Qwen3-1.7B-Base-W32K-L0_5")
    sae = SAE.load_from_disk(tmp_path / "SAE-Res-Qwen3-1.7B-Base-W32K-L0_5" / published.sae_path,
                             converter="qwen_scope")
    assert (sae.cfg.k, sae.cfg.metadata.hook_name) == (5, "blocks.3.hook_resid_post")


def test_qwen_scope_file_outside_its_repo_name_says_where_k_comes_from(tmp_path: Path) -> None:
    published = write_qwen_scope(tmp_path / "downloads")
    with pytest.raises(SAEFileError, match=r"do not record k; it is read from the repo name"):
        SAE.load_from_disk(tmp_path / "downloads" / published.sae_path, converter="qwen_scope")


@pytest.mark.parametrize(("writer", "removed", "converter"), [
    (write_llama_scope, "Llama3_1-8B-Base-L3R-2x/checkpoints/final.safetensors", "llama_scope"),
    (write_llama_scope, "Llama3_1-8B-Base-L3R-2x/hyperparams.json", "llama_scope"),
    (write_gemma_scope_2, "resid_post/layer_5_width_16k_l0_tiny/params.safetensors", "gemma_3"),
])
def test_a_folder_without_a_file_of_its_format_names_the_file(
    writer: Callable[[Path], PublishedSAE], removed: str, converter: str, tmp_path: Path
) -> None:
    published = writer(tmp_path)
    (tmp_path / removed).unlink()
    with pytest.raises(SAEFileError, match=rf"{removed}: no such file"):
        SAE.load_from_disk(tmp_path / published.sae_path, converter=converter)


def test_a_hook_z_sae_without_its_cfg_json_names_it(hub_cache: Path, tmp_path: Path) -> None:
    published = write_connor_rob_hook_z(tmp_path / "upload")
    (tmp_path / "upload" / (published.sae_path.split(".pt")[0] + "_cfg.json")).unlink()
    publish(hub_cache, tmp_path / "upload", published.repo_id)
    with pytest.raises(SAEFileError, match=r"_v5_cfg\.json: could not be found"):
        SAE.from_pretrained(published.repo_id, published.sae_path, converter="connor_rob_hook_z")


def test_a_hook_z_cfg_json_that_contradicts_the_weights_names_both(tmp_path: Path) -> None:
    published = write_connor_rob_hook_z(tmp_path)
    cfg_path = tmp_path / (published.sae_path.split(".pt")[0] + "_cfg.json")
    cfg_path.write_text(cfg_path.read_text().replace(f'"dict_size": {D_SAE}', '"dict_size": 99'))
    with pytest.raises(SAEFileError, match=r"dict_size = 99, but .*_v5\.pt holds W_enc of shape \[8, 16\]"):
        SAE.load_from_disk(tmp_path / published.sae_path, converter="connor_rob_hook_z")


def test_gemma_scope_2_reads_site_and_layer_from_a_local_folder(tmp_path: Path) -> None:
    require_architectures("jumprelu")
    published = write_gemma_scope_2(tmp_path / "downloads", sae_path="mlp_out/layer_7_width_16k_l0_tiny")
    sae = SAE.load_from_disk(tmp_path / "downloads" / published.sae_path, converter="gemma_3")
    assert sae.cfg.metadata.hook_name == "blocks.7.hook_mlp_out"
    published = write_gemma_scope_2(tmp_path / "downloads", sae_path="transcoder_all/layer_2_width_16k_l0_tiny")
    if "jumprelu_transcoder" in get_registry().architectures:
        transcoder = SAE.load_from_disk(tmp_path / "downloads" / published.sae_path, converter="gemma_3")
        assert transcoder.cfg.architecture() == "jumprelu_transcoder"
        assert transcoder.cfg.metadata.hook_name_out == "blocks.2.hook_mlp_out"
        return
    with pytest.raises(UnknownNameError, match="jumprelu_transcoder"):
        SAE.load_from_disk(tmp_path / "downloads" / published.sae_path, converter="gemma_3")


def test_gemma_scope_reads_layer_and_embedding_from_a_local_folder(tmp_path: Path) -> None:
    require_architectures("jumprelu")
    for sae_path, hook_name in (("layer_3/width_16k/average_l0_7", "blocks.3.hook_resid_post"),
                                ("embedding/width_4k/average_l0_7", "hook_embed")):
        published = write_gemma_scope(tmp_path / "gemma-scope-2b-pt-res", sae_path=sae_path)
        sae = SAE.load_from_disk(tmp_path / "gemma-scope-2b-pt-res" / published.sae_path, converter="gemma_scope")
        assert (sae.cfg.metadata.model_name, sae.cfg.metadata.hook_name) == ("gemma-2-2b", hook_name)
