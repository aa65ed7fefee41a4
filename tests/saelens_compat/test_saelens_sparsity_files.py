"""sparsity.safetensors (key "sparsity", log10 feature density, shape [d_sae]) crosses over.

SAELens's training runner writes it next to the inference SAE; its Hugging Face loader
reads it back with ``safe_open(...).get_tensor("sparsity")``
(sae_lens/loading/pretrained_sae_loaders.py, sae_lens_huggingface_loader).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from saelens_compat_support import (
    ARCHITECTURES,
    D_SAE,
    Case,
    assert_same_outputs,
    build_saelens_sae,
    randomize_parameters,
)
from safetensors import safe_open
from safetensors.torch import save_file

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")
resolver = pytest.importorskip("saecore.resolver")


def _log_sparsity(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    density = torch.rand(D_SAE, generator=generator) ** 4
    density[:3] = 0.0  # dead latents: log10(0 + 1e-10) = -10
    return torch.log10(density + 1e-10)


def _case(architecture: str) -> Case:
    return Case(architecture, {"k": 6} if architecture == "topk" else {})


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_saelens_folder_with_sparsity_loads_in_saecore(architecture: str, tmp_path: Path) -> None:
    from sae_lens.constants import SPARSITY_FILENAME

    case = _case(architecture)
    saelens_sae = build_saelens_sae(case)
    saelens_sae.save_model(tmp_path)
    log_sparsity = _log_sparsity(seed=3)
    save_file({"sparsity": log_sparsity}, str(tmp_path / SPARSITY_FILENAME))

    loaded = saecore.SAE.load_from_disk(tmp_path)
    sae, cfg_dict, sparsity = resolver.load_sae_folder(tmp_path)

    assert sparsity is not None
    assert torch.equal(sparsity, log_sparsity)
    assert cfg_dict["architecture"] == architecture
    assert_same_outputs(loaded, saelens_sae, case)
    assert_same_outputs(sae, saelens_sae, case)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_saecore_sparsity_file_reads_as_saelens_reads_it(architecture: str, tmp_path: Path) -> None:
    from sae_lens.constants import SPARSITY_FILENAME

    case = _case(architecture)
    saecore_sae = saecore.SAE.from_dict(case.config_dict())
    randomize_parameters(saecore_sae)
    log_sparsity = _log_sparsity(seed=4)
    saecore_sae.save_model(tmp_path, sparsity=log_sparsity)

    with safe_open(str(tmp_path / SPARSITY_FILENAME), framework="pt", device="cpu") as handle:
        read_back = handle.get_tensor("sparsity")
    loaded = sae_lens.SAE.load_from_disk(tmp_path)

    assert read_back.dtype == torch.float32
    assert torch.equal(read_back, log_sparsity)
    assert_same_outputs(loaded, saecore_sae, case)


def test_folder_without_sparsity_gives_none(tmp_path: Path) -> None:
    build_saelens_sae(_case("standard")).save_model(tmp_path)
    assert resolver.load_sae_folder(tmp_path)[2] is None
