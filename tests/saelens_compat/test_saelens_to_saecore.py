"""SAEs saved by SAELens 6.x load in saecore and compute the same thing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from saelens_compat_support import (
    ARCHITECTURES,
    METADATA,
    Case,
    assert_cfg_carries_file,
    assert_close,
    assert_same_outputs,
    build_saelens_sae,
    inference_cases,
    parameters_of,
    read_cfg_json,
)

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")


def assert_same_parameters(actual: torch.nn.Module, expected: torch.nn.Module) -> None:
    actual_params, expected_params = parameters_of(actual), parameters_of(expected)
    assert sorted(actual_params) == sorted(expected_params)
    for name, tensor in expected_params.items():
        assert actual_params[name].dtype == tensor.dtype, name
        assert torch.equal(actual_params[name], tensor), f"parameter {name} changed on loading"


@pytest.mark.parametrize("case", inference_cases())
def test_saelens_sae_loads_in_saecore(case: Case, tmp_path: Path) -> None:
    saelens_sae = build_saelens_sae(case)
    saelens_sae.save_model(tmp_path)
    file_cfg = read_cfg_json(tmp_path)

    loaded = saecore.SAE.load_from_disk(tmp_path)

    assert loaded.cfg.architecture() == case.architecture
    assert_cfg_carries_file(loaded.cfg.to_dict(), file_cfg, "saecore")
    assert loaded.cfg.metadata.model_name == METADATA["model_name"]
    assert loaded.cfg.metadata.context_size == METADATA["context_size"]
    assert_same_parameters(loaded, saelens_sae)
    assert_same_outputs(loaded, saelens_sae, case, file_cfg, parameters_of(saelens_sae))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_load_options_dtype_and_fold_w_dec_norm(architecture: str, tmp_path: Path) -> None:
    """load_from_disk(dtype=..., fold_W_dec_norm=True) gives what SAELens's does."""
    options = {"k": 6, "rescale_acts_by_decoder_norm": True} if architecture == "topk" else {}
    case = Case(architecture, options)
    build_saelens_sae(case).save_model(tmp_path)

    expected = sae_lens.SAE.load_from_disk(tmp_path, dtype="float64", fold_W_dec_norm=True)
    loaded = saecore.SAE.load_from_disk(tmp_path, dtype="float64", fold_W_dec_norm=True)

    assert loaded.cfg.dtype == "float64"
    for name, tensor in parameters_of(expected).items():
        assert_close(getattr(loaded, name), tensor, f"folded {name}")
    assert_close(loaded.W_dec.norm(dim=-1), torch.ones(loaded.cfg.d_sae, dtype=torch.float64), "row norms")
    assert_same_outputs(loaded, expected, case)


def test_topk_fold_refused_without_decoder_norm_rescaling(tmp_path: Path) -> None:
    """Folding changes which latents a plain TopK SAE picks, so SAELens refuses it
    (TopKSAE.fold_W_dec_norm raises NotImplementedError, which callers catch); saecore must
    refuse the same way rather than fold silently."""
    build_saelens_sae(Case("topk", {"k": 6})).save_model(tmp_path)
    with pytest.raises(NotImplementedError):
        sae_lens.SAE.load_from_disk(tmp_path, fold_W_dec_norm=True)
    with pytest.raises(NotImplementedError):
        saecore.SAE.load_from_disk(tmp_path, fold_W_dec_norm=True)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_covariance_whitening_config_loads(architecture: str, tmp_path: Path) -> None:
    """SAELens accepts normalize_activations="covariance_whitening" in an inference cfg
    (sae_lens/saes/sae.py SAEConfig.__post_init__) and applies nothing at run time, since
    the whitening is folded into the weights; such cfg.json files must load too."""
    options = {"normalize_activations": "covariance_whitening"}
    case = Case(architecture, {"k": 6, **options} if architecture == "topk" else options)
    saelens_sae = build_saelens_sae(case)
    saelens_sae.save_model(tmp_path)

    loaded = saecore.SAE.load_from_disk(tmp_path)

    assert_cfg_carries_file(loaded.cfg.to_dict(), read_cfg_json(tmp_path), "saecore")
    assert_same_outputs(loaded, saelens_sae, case)
