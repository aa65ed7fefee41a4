"""temporal SAEs cross between SAELens 6.x and saecore both ways, and the published format loads alike in both.

The published format is read through a Hugging Face cache built on disk (``HF_HUB_OFFLINE``),
so SAELens's own loader (``SAE.from_pretrained`` on its ``temporal-sae-gemma-2-2b`` release)
and saecore's ``temporal`` converter read the same files the way they read the Hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures.hub_cache import offline_hub_cache
from fixtures.published_formats import publish, write_temporal
from saelens_compat_support import METADATA, assert_cfg_carries_file, assert_close, read_cfg_json, saelens_metadata

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")

D_IN, D_SAE = 16, 64
BASE: dict[str, Any] = {"n_heads": 2, "bottleneck_factor": 4, "kval_topk": 9}
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "untied": {"tied_weights": False},
    "relu": {"sae_diff_type": "relu"},
    "scalar-rescale": {"normalize_activations": "constant_scalar_rescale", "activation_normalization_factor": 0.3},
    "two-layers-no-b-dec-in": {"n_attn_layers": 2, "apply_b_dec_to_input": False},
    "layer-norm": {"normalize_activations": "layer_norm"},
}


@torch.no_grad()
def randomize(module: torch.nn.Module, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in sorted(module.named_parameters()):
        scale = 1.0 if name in ("W_dec", "W_enc") else 0.4 / D_SAE**0.5 if parameter.ndim == 2 else 0.1
        parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * scale)


def sequences(seed: int = 0, d_in: int = D_IN) -> torch.Tensor:
    return torch.randn(3, 5, d_in, generator=torch.Generator().manual_seed(seed)) * 1.5 + 0.3


@torch.no_grad()
def assert_same_outputs(actual: Any, expected: Any, x: torch.Tensor) -> None:
    expected_acts = expected.encode(x)
    assert 0 < float((expected_acts != 0).double().mean()) < 1, "degenerate test inputs"
    assert_close(actual.encode(x), expected_acts, "encode")
    assert_close(actual(x), expected(x), "forward")
    expected_pred = expected.encode_with_predictions(x)[1]
    assert float(expected_pred.abs().sum()) > 0, "the attention predicts nothing; the test would not cover it"
    assert_close(actual.encode_with_predictions(x)[1], expected_pred, "predicted codes")


def saelens_temporal(options: dict[str, Any]) -> Any:
    cfg = sae_lens.TemporalSAEConfig(d_in=D_IN, d_sae=D_SAE, **BASE, **options, metadata=saelens_metadata(METADATA))
    sae = sae_lens.TemporalSAE(cfg)
    randomize(sae)
    return sae


@pytest.mark.parametrize("case", CASES)
def test_saelens_sae_loads_in_saecore(case: str, tmp_path: Path) -> None:
    original = saelens_temporal(CASES[case])
    original.save_model(tmp_path)

    loaded = saecore.SAE.load_from_disk(tmp_path)

    assert loaded.cfg.architecture() == "temporal"
    assert_cfg_carries_file(loaded.cfg.to_dict(), read_cfg_json(tmp_path), "saecore")
    assert sorted(loaded.state_dict()) == sorted(original.state_dict())
    assert_same_outputs(loaded, original, sequences())


@pytest.mark.parametrize("case", CASES)
def test_saecore_sae_loads_in_saelens(case: str, tmp_path: Path) -> None:
    original = saecore.SAE.from_dict({"architecture": "temporal", "d_in": D_IN, "d_sae": D_SAE, **BASE,
                                      **CASES[case], "metadata": dict(METADATA)})
    randomize(original)
    original.save_model(tmp_path)

    loaded = sae_lens.SAE.load_from_disk(tmp_path)

    assert type(loaded) is sae_lens.TemporalSAE
    file_cfg = read_cfg_json(tmp_path)
    assert_cfg_carries_file(loaded.cfg.to_dict(), file_cfg, "SAELens")
    missing = [key for key in loaded.cfg.to_dict() if key not in file_cfg]
    assert not missing, f"saecore's cfg.json lacks {missing}; SAELens would fill in its own defaults"
    assert_same_outputs(loaded, original, sequences())


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return offline_hub_cache(tmp_path, monkeypatch)


@pytest.mark.parametrize("tied", [True, False])
def test_published_files_load_alike(hub_cache: Path, tmp_path: Path, tied: bool) -> None:
    """conf.yaml + latest_ckpt.safetensors as published: both loaders give the same SAE (rel err <= 1e-5),
    through the release's name and through the repo and folder."""
    published = write_temporal(tmp_path / "upload", tied=tied)
    publish(hub_cache, tmp_path / "upload", published.repo_id)

    expected = sae_lens.SAE.from_pretrained("temporal-sae-gemma-2-2b", "blocks.12.hook_resid_post")
    from_release = saecore.SAE.from_pretrained("temporal-sae-gemma-2-2b", "blocks.12.hook_resid_post")
    with pytest.warns(UserWarning, match="lists this repo as temporal-sae-gemma-2-2b"):
        loaded = saecore.SAE.from_pretrained(published.repo_id, published.sae_path, converter="temporal")

    assert type(loaded).__name__ == "TemporalSAE"
    assert loaded.cfg.metadata.hook_name == "blocks.12.hook_resid_post"
    assert from_release.cfg.metadata.model_name == "gemma-2-2b"
    for field in ("d_in", "d_sae", "n_heads", "n_attn_layers", "bottleneck_factor", "sae_diff_type", "kval_topk",
                  "tied_weights", "normalize_activations", "activation_normalization_factor", "apply_b_dec_to_input"):
        assert getattr(loaded.cfg, field) == getattr(expected.cfg, field), field
    x = sequences(1, d_in=loaded.cfg.d_in)
    assert_same_outputs(loaded, expected, x)
    assert_same_outputs(from_release, expected, x)
