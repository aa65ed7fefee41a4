"""Gemma Scope ``params.npz`` files, built to the published layout, load as JumpReLU SAEs.

No writer for the format is on PyPI, so the archive is written here as Gemma Scope ships
it: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc``, ``b_dec``, ``threshold``
(float32). The expected outputs are Gemma Scope's formula evaluated in float64 on the
archive's own arrays: ``h = x W_enc + b_enc``, ``f = 1[h > θ]·ReLU(h)``, ``x̂ = f W_dec + b_dec``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ecosystem_helpers import relative_error, require_architectures

from saecore import SAE, SAEFileError

D_IN, D_SAE = 12, 40


def write_params(folder: Path, prefix: str = "W_", seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        f"{prefix}enc": rng.normal(size=(D_IN, D_SAE)).astype(np.float32),
        f"{prefix}dec": rng.normal(size=(D_SAE, D_IN)).astype(np.float32),
        "b_enc": rng.normal(size=D_SAE).astype(np.float32),
        "b_dec": rng.normal(size=D_IN).astype(np.float32),
        "threshold": rng.uniform(0.5, 2.0, size=D_SAE).astype(np.float32),
    }
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "params.npz", **arrays)
    return {("W_" + name[2:] if name.startswith("w_") else name): array for name, array in arrays.items()}


def gemma_scope_reference(arrays: dict[str, np.ndarray], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = {name: torch.from_numpy(array).double() for name, array in arrays.items()}
    hidden = x.double() @ p["W_enc"] + p["b_enc"]
    acts = (hidden > p["threshold"]) * torch.relu(hidden)
    return acts, acts @ p["W_dec"] + p["b_dec"]


@pytest.fixture
def x() -> torch.Tensor:
    return 2 * torch.randn(32, D_IN, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("prefix", ["W_", "w_"])
def test_params_npz_loads_with_gemma_scopes_outputs(tmp_path: Path, x: torch.Tensor, prefix: str) -> None:
    require_architectures("jumprelu")
    arrays = write_params(tmp_path / "layer_3" / "width_16k" / "average_l0_20", prefix=prefix)
    sae = SAE.load_from_disk(tmp_path / "layer_3" / "width_16k" / "average_l0_20", converter="gemma_scope")
    assert sae.cfg.architecture() == "jumprelu"
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.dtype) == (D_IN, D_SAE, "float32")
    assert sae.cfg.apply_b_dec_to_input is False
    expected_acts, expected_recons = gemma_scope_reference(arrays, x)
    acts = sae.encode(x)
    assert 0 < int((expected_acts > 0).sum()) < expected_acts.numel()
    assert torch.equal(acts > 0, expected_acts > 0)
    assert relative_error(acts, expected_acts) <= 1e-5
    assert relative_error(sae.decode(acts), expected_recons) <= 1e-5
    assert relative_error(sae(x), expected_recons) <= 1e-5


def test_float64_load_matches_to_float32_precision(tmp_path: Path, x: torch.Tensor) -> None:
    require_architectures("jumprelu")
    arrays = write_params(tmp_path / "sae")
    sae = SAE.load_from_disk(tmp_path / "sae", converter="gemma_scope", dtype="float64")
    _, expected_recons = gemma_scope_reference(arrays, x)
    torch.testing.assert_close(sae(x.double()), expected_recons, rtol=0, atol=1e-9)


def test_missing_threshold_names_the_file_and_the_tensor(tmp_path: Path) -> None:
    folder = tmp_path / "sae"
    folder.mkdir()
    np.savez(folder / "params.npz", W_enc=np.zeros((4, 8), np.float32), W_dec=np.zeros((8, 4), np.float32),
             b_enc=np.zeros(8, np.float32), b_dec=np.zeros(4, np.float32))
    with pytest.raises(SAEFileError, match=r"params\.npz: missing tensor\(s\) \['threshold'\] of the Gemma Scope"):
        SAE.load_from_disk(folder, converter="gemma_scope")


def test_a_corrupt_archive_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "sae"
    folder.mkdir()
    (folder / "params.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SAEFileError, match=r"params\.npz: not a readable \.npz archive"):
        SAE.load_from_disk(folder, converter="gemma_scope")


def test_a_folder_without_params_npz_names_the_missing_file(tmp_path: Path) -> None:
    (tmp_path / "sae").mkdir()
    with pytest.raises(SAEFileError, match=r"sae/params\.npz: no such file"):
        SAE.load_from_disk(tmp_path / "sae", converter="gemma_scope")
