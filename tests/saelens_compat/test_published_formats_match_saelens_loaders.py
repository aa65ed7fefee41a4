"""saecore's converters and SAELens's loaders read the same published files to the same SAE.

Each format's files are written to the publisher's layout (``fixtures.published_formats``)
into an offline Hugging Face cache. SAELens's own loader for the format reads them by repo
id and path, as its ``from_pretrained`` does; saecore loads the same repo and path. Both
SAEs then encode and decode the same input, to relative error ≤ 1e-5.

SAELens's Gemma Scope 2 loader reads tensor shapes from the Hub over HTTP; here that call
reads the same safetensors header from the cached file instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures.hub_cache import offline_hub_cache
from fixtures.published_formats import (
    D_IN,
    D_SAE,
    TRANSCODER_WRITERS,
    WRITERS,
    PublishedSAE,
    publish,
    write_dictionary_learning,
    write_gemma_scope,
    write_gemma_scope_2,
    write_llama_scope,
)

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")
loaders = pytest.importorskip("sae_lens.loading.pretrained_sae_loaders")

pytestmark = pytest.mark.filterwarnings("ignore:.*is a Hugging Face repo id:UserWarning")

REL_TOL = 1e-5
SAELENS_NAMES = {"gemma_scope": "gemma_2", "dictionary_learning": "dictionary_learning_1"}
# SAELens reads these sizes from tables of the real models rather than the files.
SIZE_OVERRIDES = {"gemma_scope", "qwen_scope", "goodfire", "deepseek_r1", "gemma_2_transcoder"}
COMPARED_CFG = ("d_in", "d_sae", "apply_b_dec_to_input", "normalize_activations",
                "reshape_activations")
TRANSCODER_ARCHITECTURES = ("transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder")
COMPARED_METADATA = ("model_name", "hook_name", "hf_hook_name", "hook_name_out", "hf_hook_name_out",
                     "context_size", "prepend_bos", "dataset_path")


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = offline_hub_cache(tmp_path, monkeypatch)
    monkeypatch.setattr(loaders, "get_safetensors_tensor_shapes", _cached_tensor_shapes)
    return cache


def _cached_tensor_shapes(repo_id: str, filename: str) -> dict[str, list[int]]:
    from huggingface_hub import hf_hub_download
    from safetensors import safe_open

    with safe_open(hf_hub_download(repo_id, filename), framework="pt") as file:
        return {name: list(file.get_slice(name).get_shape()) for name in file.keys()}


def saelens_loader_output(published: PublishedSAE) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """What SAELens's loader for the format returns, with its pre-6.0 defaulting applied as from_pretrained does."""
    name = SAELENS_NAMES.get(published.converter, published.converter)
    if name not in loaders.NAMED_PRETRAINED_SAE_LOADERS:
        pytest.skip(f"SAELens {sae_lens.__version__} has no {name!r} loader")
    loader = loaders.NAMED_PRETRAINED_SAE_LOADERS[name]
    overrides = {"d_in": D_IN, "d_sae": D_SAE} if published.converter in SIZE_OVERRIDES else None
    if overrides is not None and "transcoder" in published.converter:
        overrides["d_out"] = D_IN
    cfg_dict, state_dict, _ = loader(repo_id=published.repo_id, folder_name=published.sae_path, device="cpu",
                                     force_download=False, cfg_overrides=overrides)
    return loaders.handle_config_defaulting(cfg_dict), state_dict


def saelens_sae(published: PublishedSAE) -> Any:
    cfg_dict, state_dict = saelens_loader_output(published)
    cfg = sae_lens.SAE.get_sae_config_class_for_architecture(cfg_dict["architecture"]).from_dict(cfg_dict)
    sae = sae_lens.SAE.get_sae_class_for_architecture(cfg.architecture())(cfg)
    sae.process_state_dict_for_loading(state_dict)
    sae.load_state_dict(state_dict, assign=True)
    return sae.to(dtype=torch.float32)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().double(), expected.detach().double()
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-30))


def require_transcoders() -> None:
    missing = [name for name in TRANSCODER_ARCHITECTURES if name not in saecore.get_registry().architectures]
    if missing:
        pytest.skip(f"needs saecore-transcoders (missing architectures {missing})")


def assert_same_sae(writer: Callable[[Path], PublishedSAE], hub_cache: Path, tmp_path: Path,
                    metadata: tuple[str, ...] = COMPARED_METADATA, transcoder: bool = False) -> None:
    published = writer(tmp_path / "upload")
    publish(hub_cache, tmp_path / "upload", published.repo_id)
    expected = saelens_sae(published)
    loaded = saecore.SAE.from_pretrained(published.repo_id, published.sae_path, converter=published.converter)

    assert loaded.cfg.architecture() == expected.cfg.architecture()
    for key in COMPARED_CFG + (("d_out",) if transcoder else ()):
        assert getattr(loaded.cfg, key) == getattr(expected.cfg, key), key
    for key in metadata:
        assert loaded.cfg.metadata.get(key) == expected.cfg.metadata.get(key), key
    shape = (12, 2, D_IN // 2) if loaded.cfg.reshape_activations == "hook_z" else (12, D_IN)
    x = 2 * torch.randn(*shape, generator=torch.Generator().manual_seed(9))
    expected_acts = expected.encode(x)
    assert 0 < int((expected_acts > 0).sum()) < expected_acts.numel()
    acts = loaded.encode(x)
    assert relative_error(acts, expected_acts) <= REL_TOL
    assert relative_error(loaded.decode(acts), expected.decode(expected_acts)) <= REL_TOL
    assert relative_error(loaded(x), expected(x)) <= REL_TOL


@pytest.mark.parametrize("converter", list(WRITERS))
def test_converter_matches_saelens_loader(converter: str, hub_cache: Path, tmp_path: Path) -> None:
    assert_same_sae(WRITERS[converter], hub_cache, tmp_path)


@pytest.mark.filterwarnings("ignore:.*CLT layer as a single layer transcoder:UserWarning")
@pytest.mark.filterwarnings("ignore:A cross-layer transcoder layer loads:UserWarning")
@pytest.mark.parametrize("converter", list(TRANSCODER_WRITERS))
def test_transcoder_converter_matches_saelens_loader(converter: str, hub_cache: Path, tmp_path: Path) -> None:
    require_transcoders()
    assert_same_sae(TRANSCODER_WRITERS[converter], hub_cache, tmp_path, transcoder=True)


@pytest.mark.filterwarnings("ignore:.*CLT layer as a single layer transcoder:UserWarning")
@pytest.mark.filterwarnings("ignore:A cross-layer transcoder layer loads:UserWarning")
@pytest.mark.parametrize(("converter", "loader"), [
    ("gemma_2_transcoder", "gemma_2_transcoder_huggingface_loader"),
    ("mwhanna_transcoder", "mwhanna_transcoder_huggingface_loader"),
    ("mntss_clt_layer_transcoder", "mntss_clt_layer_huggingface_loader"),
])
def test_transcoder_loader_callable_loads_as_saelens_loader(converter: str, loader: str, hub_cache: Path,
                                                            tmp_path: Path) -> None:
    from saecore.loading import pretrained_sae_loaders

    require_transcoders()
    published = TRANSCODER_WRITERS[converter](tmp_path / "upload")
    publish(hub_cache, tmp_path / "upload", published.repo_id)
    expected = saelens_sae(published)
    loaded = saecore.SAE.from_pretrained(published.repo_id, published.sae_path,
                                         converter=getattr(pretrained_sae_loaders, loader))
    assert loaded.cfg.architecture() == expected.cfg.architecture()
    x = 2 * torch.randn(12, D_IN, generator=torch.Generator().manual_seed(9))
    assert relative_error(loaded.encode(x), expected.encode(x)) <= REL_TOL
    assert relative_error(loaded(x), expected(x)) <= REL_TOL


@pytest.mark.filterwarnings("ignore:.*CLT layer as a single layer transcoder:UserWarning")
@pytest.mark.filterwarnings("ignore:A cross-layer transcoder layer loads:UserWarning")
@pytest.mark.parametrize(("converter", "release"), [
    ("mwhanna_transcoder", "mwhanna-qwen3-0.6b-transcoders-lowl0"),
    ("mntss_clt_layer_transcoder", "mntss-gemma-2-2b-2.5m-clt-as-per-layer"),
])
def test_transcoder_release_loads_by_name_as_in_saelens(converter: str, release: str, hub_cache: Path,
                                                        tmp_path: Path) -> None:
    require_transcoders()
    published = TRANSCODER_WRITERS[converter](tmp_path / "upload")
    publish(hub_cache, tmp_path / "upload", published.repo_id)
    expected = sae_lens.SAE.from_pretrained(release, "layer_3")
    loaded = saecore.SAE.from_pretrained(release, "layer_3")
    assert loaded.cfg.architecture() == expected.cfg.architecture()
    for key in ("model_name", "hook_name", "hook_name_out", "model_from_pretrained_kwargs"):
        assert loaded.cfg.metadata.get(key) == expected.cfg.metadata.get(key), key
    x = 2 * torch.randn(12, D_IN, generator=torch.Generator().manual_seed(9))
    assert relative_error(loaded.encode(x), expected.encode(x)) <= REL_TOL
    assert relative_error(loaded(x), expected(x)) <= REL_TOL


@pytest.mark.parametrize("affine", [False, True])
def test_gemma_scope_2_transcoder_matches_saelens_loader(affine: bool, hub_cache: Path, tmp_path: Path) -> None:
    require_transcoders()
    suffix = "_affine" if affine else ""
    assert_same_sae(lambda root: write_gemma_scope_2(root, sae_path=f"transcoder/layer_5_width_16k_l0_tiny{suffix}",
                                                     affine=affine), hub_cache, tmp_path, transcoder=True)


@pytest.mark.parametrize(("repo_id", "sae_path"), [
    ("google/gemma-scope-9b-pt-mlp", "layer_20/width_131k/average_l0_11"),
    ("google/gemma-scope-2b-pt-att", "layer_4/width_16k/average_l0_7"),
    ("google/gemma-scope-9b-it-res", "layer_9/width_16k/average_l0_7"),
    ("google/gemma-scope-2b-pt-res", "embedding/width_4k/average_l0_6"),
])
def test_gemma_scope_variants_match_saelens_loader(repo_id: str, sae_path: str, hub_cache: Path,
                                                   tmp_path: Path) -> None:
    assert_same_sae(lambda root: write_gemma_scope(root, repo_id=repo_id, sae_path=sae_path), hub_cache, tmp_path)


@pytest.mark.parametrize(("repo_id", "sae_path", "with_config"), [
    ("google/gemma-scope-2-1b-it", "mlp_out_all/layer_7_width_16k_l0_tiny", False),
    ("google/gemma-scope-2-4b-pt", "attn_out/layer_17_width_16k_l0_tiny", True),
    ("google/gemma-scope-2-27b-it", "resid_post_all/layer_0_width_16k_l0_tiny", False),
])
def test_gemma_scope_2_variants_match_saelens_loader(repo_id: str, sae_path: str, with_config: bool,
                                                     hub_cache: Path, tmp_path: Path) -> None:
    assert_same_sae(lambda root: write_gemma_scope_2(root, repo_id=repo_id, sae_path=sae_path,
                                                     with_config=with_config), hub_cache, tmp_path)


@pytest.mark.parametrize("affine", [False, True])
def test_gemma_scope_2_transcoder_converts_as_saelens_loads_it(affine: bool, hub_cache: Path, tmp_path: Path) -> None:
    """No transcoder architecture is needed to compare what each side reads from the files."""
    from saecore import get_registry
    from saecore.io.hub import hub_locator

    suffix = "_affine" if affine else ""
    published = write_gemma_scope_2(tmp_path / "upload", sae_path=f"transcoder/layer_5_width_16k_l0_tiny{suffix}",
                                    affine=affine)
    publish(hub_cache, tmp_path / "upload", published.repo_id)
    expected_cfg, expected_state = saelens_loader_output(published)
    converted = get_registry().converter("gemma_3").convert(
        hub_locator(published.repo_id, published.sae_path, force_download=False, revision=None))
    assert sorted(converted.state_dict) == sorted(expected_state)
    for name, tensor in expected_state.items():
        assert torch.equal(converted.state_dict[name], tensor), name
    for key in ("architecture", "d_in", "d_sae", "d_out", "apply_b_dec_to_input"):
        assert converted.cfg_dict[key] == expected_cfg[key], key
    for key in COMPARED_METADATA:
        assert converted.cfg_dict["metadata"].get(key) == expected_cfg["metadata"].get(key), key


@pytest.mark.parametrize("dict_class", ["AutoEncoder", "AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE",
                                        "JumpReluAutoEncoder", "GatedAutoEncoder"])
def test_dictionary_learning_classes_match_saelens_loader(dict_class: str, hub_cache: Path, tmp_path: Path) -> None:
    """SAELens's ``dictionary_learning_1`` also states a dataset and BOS for every folder; saecore states only
    what the folder's config.json says."""
    assert_same_sae(lambda root: write_dictionary_learning(root, dict_class), hub_cache, tmp_path,
                    metadata=("model_name", "hook_name", "context_size"))


class _LlamaScopeRelease:
    """A directory entry for the written Llama Scope SAE, with the norm scaling factor SAELens's directory states."""

    def __init__(self, published: PublishedSAE, scaling_factor: float) -> None:
        self.published, self.scaling_factor = published, scaling_factor

    @saecore.hookimpl
    def saecore_register_releases(self, register: Any) -> None:
        register("test-llama-scope", self.published.repo_id,
                 {"l3r": {"path": self.published.sae_path, "norm_scaling_factor": self.scaling_factor}},
                 conversion="llama_scope")


def test_llama_scope_release_folds_the_norm_scaling_factor_as_saelens_does(hub_cache: Path, tmp_path: Path) -> None:
    from saecore.registry import add_in_process_plugin, remove_in_process_plugin

    published = write_llama_scope(tmp_path / "upload")
    publish(hub_cache, tmp_path / "upload", published.repo_id)
    norm_in = published.config["dataset_average_activation_norm"]["in"]
    scaling_factor = published.config["d_model"] ** 0.5 / norm_in
    expected = saelens_sae(published)
    expected.fold_activation_norm_scaling_factor(scaling_factor)
    add_in_process_plugin(_LlamaScopeRelease(published, scaling_factor), "test-llama-scope-release")
    try:
        loaded = saecore.SAE.from_pretrained("test-llama-scope", "l3r")
    finally:
        remove_in_process_plugin("test-llama-scope-release")
    assert loaded.cfg.normalize_activations == "none"
    x = 3 * torch.randn(12, D_IN, generator=torch.Generator().manual_seed(9))
    expected_acts = expected.encode(x)
    assert 0 < int((expected_acts > 0).sum()) < expected_acts.numel()
    assert relative_error(loaded.encode(x), expected_acts) <= REL_TOL
    assert relative_error(loaded(x), expected(x)) <= REL_TOL
