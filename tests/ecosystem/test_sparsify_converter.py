"""sparsify folders (``cfg.json`` + ``sae.safetensors``) load as TopK SAEs with sparsify's own outputs.

The files are written by EleutherAI's sparsify (``pip install eai-sparsify``) through its own
``SparseCoder.save_to_disk``; outputs are compared with its own ``encode``/``decode``. Without
the library those tests skip; the error paths use files written here to the same layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from ecosystem_helpers import relative_error, require_architectures
from safetensors.torch import save_file

from saecore import SAE, SAEFileError
from saecore.io.pretrained_loaders import sparsify_disk_loader

D_IN, D_SAE, K = 16, 48, 5


@pytest.fixture
def sparsify(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # sparsify's own switch for its pure-torch decoder; its Triton kernel needs a GPU.
    monkeypatch.setenv("SPARSIFY_DISABLE_TRITON", "1")
    module = pytest.importorskip("sparsify")
    require_architectures("topk")
    return module


def written_by_sparsify(sparsify: ModuleType, folder: Path, dtype: torch.dtype = torch.float32,
                        **cfg: Any) -> Any:
    """A sparsify SparseCoder with every parameter random (zero biases would hide bugs), saved by sparsify."""
    coder = sparsify.SparseCoder(D_IN, sparsify.SparseCoderConfig(k=K, num_latents=D_SAE, **cfg), dtype=dtype)
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for parameter in coder.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float32).to(dtype))
    coder.save_to_disk(folder)
    return coder


def sparsify_outputs(coder: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sparsify's own codes (scattered to dense) and reconstruction."""
    with torch.no_grad():
        top_acts, top_indices, _ = coder.encode(x)
        dense = torch.zeros(x.shape[0], D_SAE, dtype=top_acts.dtype).scatter(-1, top_indices, top_acts)
        return dense, coder.decode(top_acts, top_indices)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(24, D_IN, generator=torch.Generator().manual_seed(5))


def test_sparse_coder_matches_sparsifys_encode_and_decode(sparsify: ModuleType, tmp_path: Path,
                                                         x: torch.Tensor) -> None:
    coder = written_by_sparsify(sparsify, tmp_path / "layers.3")
    sae = SAE.load_from_disk(tmp_path / "layers.3", converter="sparsify")
    assert sae.cfg.architecture() == "topk"
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.k) == (D_IN, D_SAE, K)
    assert sae.cfg.rescale_acts_by_decoder_norm is False and sae.cfg.apply_b_dec_to_input is True
    assert sae.cfg.metadata.hook_name == "blocks.3.hook_resid_post"
    assert sae.cfg.metadata.sparsify_hookpoint == "layers.3"
    expected_acts, expected_recons = sparsify_outputs(coder, x)
    with torch.no_grad():
        acts = sae.encode(x)
        assert torch.equal(acts != 0, expected_acts != 0)
        assert relative_error(acts, expected_acts) <= 1e-5
        assert relative_error(sae.decode(acts), expected_recons) <= 1e-5
        assert relative_error(sae(x), expected_recons) <= 1e-5


def test_transcoder_does_not_centre_its_input(sparsify: ModuleType, tmp_path: Path, x: torch.Tensor) -> None:
    require_architectures("topk_transcoder")
    coder = written_by_sparsify(sparsify, tmp_path / "layers.1.mlp", transcode=True)
    sae = SAE.load_from_disk(tmp_path / "layers.1.mlp", converter="sparsify")
    assert sae.cfg.architecture() == "topk_transcoder"
    assert sae.cfg.apply_b_dec_to_input is False
    assert sae.cfg.d_out == D_IN
    assert sae.cfg.metadata.hook_name == "blocks.1.ln2.hook_normalized"
    assert sae.cfg.metadata.hook_name_out == "blocks.1.hook_mlp_out"
    expected_acts, expected_recons = sparsify_outputs(coder, x)
    with torch.no_grad():
        assert relative_error(sae.encode(x), expected_acts) <= 1e-5
        assert relative_error(sae(x), expected_recons) <= 1e-5


def test_skip_transcoder_converts_with_its_skip_connection(sparsify: ModuleType, tmp_path: Path,
                                                         x: torch.Tensor) -> None:
    """sparsify's forward adds ``x W_skipᵀ`` to the decode; the converted transcoder predicts the same."""
    require_architectures("topk_skip_transcoder")
    coder = written_by_sparsify(sparsify, tmp_path / "layers.2.mlp", transcode=True, skip_connection=True)
    sae = SAE.load_from_disk(tmp_path / "layers.2.mlp", converter="sparsify")
    assert sae.cfg.architecture() == "topk_skip_transcoder"
    assert torch.equal(sae.W_skip, coder.W_skip)
    with torch.no_grad():
        expected = coder(x).sae_out
        assert relative_error(expected, coder.decode(*coder.encode(x)[:2])) > 1e-3  # the skip term matters here
        assert relative_error(sae(x), expected) <= 1e-5


def test_bfloat16_weights_load_in_bfloat16_unchanged(sparsify: ModuleType, tmp_path: Path) -> None:
    coder = written_by_sparsify(sparsify, tmp_path / "layers.0", dtype=torch.bfloat16)
    sae = SAE.load_from_disk(tmp_path / "layers.0", converter="sparsify")
    assert sae.cfg.dtype == "bfloat16"
    assert torch.equal(sae.W_enc, coder.encoder.weight.T)
    assert torch.equal(sae.W_dec, coder.W_dec)


def test_a_skip_connection_is_refused_by_name(sparsify: ModuleType, tmp_path: Path) -> None:
    written_by_sparsify(sparsify, tmp_path / "layers.2", skip_connection=True)
    with pytest.raises(SAEFileError, match=r"cfg\.json: skip_connection = true; saecore has no architecture"):
        SAE.load_from_disk(tmp_path / "layers.2", converter="sparsify")


def write_sparsify_layout(folder: Path, cfg: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "sae.safetensors"))


def test_groupmax_activation_is_refused_by_name(tmp_path: Path) -> None:
    write_sparsify_layout(tmp_path / "layers.0", {"activation": "groupmax", "k": 4, "d_in": 4},
                          {"encoder.weight": torch.zeros(8, 4)})
    with pytest.raises(SAEFileError, match=r"activation = 'groupmax'; only 'topk' sparse coders can be loaded"):
        SAE.load_from_disk(tmp_path / "layers.0", converter="sparsify")


def test_missing_decoder_names_the_file_and_the_tensor(tmp_path: Path) -> None:
    write_sparsify_layout(tmp_path / "layers.0", {"k": 4, "d_in": 4},
                          {"encoder.weight": torch.zeros(8, 4), "encoder.bias": torch.zeros(8)})
    with pytest.raises(SAEFileError, match=r"sae\.safetensors: missing tensor\(s\) \['W_dec', 'b_dec'\]"):
        SAE.load_from_disk(tmp_path / "layers.0", converter="sparsify")


def test_d_in_that_disagrees_with_the_weights_is_named(tmp_path: Path) -> None:
    tensors = {"encoder.weight": torch.zeros(8, 4), "encoder.bias": torch.zeros(8),
               "W_dec": torch.zeros(8, 4), "b_dec": torch.zeros(4)}
    write_sparsify_layout(tmp_path / "layers.0", {"k": 4, "d_in": 6}, tensors)
    with pytest.raises(SAEFileError, match=r"cfg\.json: d_in = 6 but .* holds encoder\.weight of shape \[8, 4\]"):
        SAE.load_from_disk(tmp_path / "layers.0", converter="sparsify")


def test_saelens_sparsify_disk_loader_reads_through_the_converter(tmp_path: Path, x: torch.Tensor) -> None:
    require_architectures("topk")
    generator = torch.Generator().manual_seed(3)
    tensors = {"encoder.weight": torch.randn(D_SAE, D_IN, generator=generator),
               "encoder.bias": torch.randn(D_SAE, generator=generator),
               "W_dec": torch.randn(D_SAE, D_IN, generator=generator), "b_dec": torch.randn(D_IN, generator=generator)}
    write_sparsify_layout(tmp_path / "layers.1", {"k": K, "d_in": D_IN, "num_latents": D_SAE}, tensors)
    by_name = SAE.load_from_disk(tmp_path / "layers.1", converter="sparsify")
    by_loader = SAE.load_from_disk(tmp_path / "layers.1", converter=sparsify_disk_loader)
    assert sparsify_disk_loader.__name__ == "sparsify_disk_loader"
    assert by_loader.cfg.to_dict() == by_name.cfg.to_dict()
    assert torch.equal(by_loader(x), by_name(x))
