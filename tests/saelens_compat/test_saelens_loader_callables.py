"""SAELens's loader callables and saecore's are interchangeable: each library loads through the other's."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")

from sae_lens.loading import pretrained_sae_loaders as saelens_loaders  # noqa: E402

from saecore.io import pretrained_loaders  # noqa: E402

D_IN, D_SAE = 8, 16


def saved_sae(path: Path) -> object:
    sae = saecore.SAE.from_dict({"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE,
                                 "metadata": {"hook_name": "blocks.0.hook_resid_pre"}})
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(5)))
    sae.save_model(path)
    return sae


@pytest.mark.parametrize("name", ["PretrainedSaeHuggingfaceLoader", "PretrainedSaeDiskLoader"])
def test_protocols_take_the_same_parameters(name: str) -> None:
    ours = inspect.signature(getattr(saecore, name).__call__).parameters
    theirs = inspect.signature(getattr(saelens_loaders, name).__call__).parameters
    assert list(ours) == list(theirs)


@pytest.mark.parametrize("name", ["sae_lens_huggingface_loader", "sae_lens_disk_loader"])
def test_loaders_take_the_same_parameters(name: str) -> None:
    ours = inspect.signature(getattr(pretrained_loaders, name)).parameters
    theirs = inspect.signature(getattr(saelens_loaders, name)).parameters
    assert [(p.name, p.default) for p in ours.values()] == [(p.name, p.default) for p in theirs.values()]


@pytest.mark.parametrize("method", ["load_from_disk", "from_pretrained"])
def test_converter_parameter_sits_where_saelens_puts_it(method: str) -> None:
    ours = list(inspect.signature(getattr(saecore.SAE, method)).parameters)
    theirs = list(inspect.signature(getattr(sae_lens.SAE, method)).parameters)
    assert ours[: len(theirs)] == theirs


def test_saecore_loads_through_saelens_disk_loader(tmp_path: Path) -> None:
    original = saved_sae(tmp_path)
    sae = saecore.SAE.load_from_disk(tmp_path, dtype="float64", converter=saelens_loaders.sae_lens_disk_loader)
    x = torch.randn(4, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    assert sae.W_enc.dtype == torch.float64
    torch.testing.assert_close(sae(x), original.double()(x), rtol=1e-6, atol=1e-6)


def test_saelens_loads_through_saecore_disk_loader(tmp_path: Path) -> None:
    original = saved_sae(tmp_path)
    sae = sae_lens.SAE.load_from_disk(tmp_path, converter=pretrained_loaders.sae_lens_disk_loader)
    x = torch.randn(4, D_IN, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(sae(x), original(x))


def test_disk_loaders_return_the_same_cfg_and_tensors(tmp_path: Path) -> None:
    saved_sae(tmp_path)
    overrides = {"dtype": "float64"}
    our_cfg, our_tensors = pretrained_loaders.sae_lens_disk_loader(tmp_path, "cpu", overrides)
    their_cfg, their_tensors = saelens_loaders.sae_lens_disk_loader(tmp_path, "cpu", overrides)
    assert {key: our_cfg[key] for key in their_cfg if key in our_cfg} == {
        key: value for key, value in their_cfg.items() if key in our_cfg}
    assert our_cfg["dtype"] == their_cfg["dtype"] == "float64"
    assert sorted(our_tensors) == sorted(their_tensors)
    for name, tensor in their_tensors.items():
        assert our_tensors[name].dtype == tensor.dtype
        torch.testing.assert_close(our_tensors[name], tensor)


PORTED_LOADERS = ("sparsify_huggingface_loader", "sparsify_disk_loader", "gemma_2_sae_huggingface_loader",
                  "gemma_3_sae_huggingface_loader", "llama_scope_sae_huggingface_loader",
                  "llama_scope_r1_distill_sae_huggingface_loader", "dictionary_learning_sae_huggingface_loader_1",
                  "deepseek_r1_sae_huggingface_loader", "qwen_scope_sae_huggingface_loader",
                  "connor_rob_hook_z_huggingface_loader", "get_goodfire_huggingface_loader",
                  "temporal_sae_huggingface_loader", "gemma_2_transcoder_huggingface_loader",
                  "mwhanna_transcoder_huggingface_loader", "mntss_clt_layer_huggingface_loader")


def test_the_loaders_import_from_saelens_module_path() -> None:
    from saecore.loading import pretrained_sae_loaders

    for name in (*PORTED_LOADERS, "sae_lens_huggingface_loader", "sae_lens_disk_loader",
                 "PretrainedSaeHuggingfaceLoader", "PretrainedSaeDiskLoader"):
        assert hasattr(saelens_loaders, name)
        assert getattr(pretrained_sae_loaders, name) is getattr(pretrained_loaders, name)


@pytest.mark.parametrize("name", PORTED_LOADERS)
def test_format_loaders_take_saelens_parameters(name: str) -> None:
    ours = inspect.signature(getattr(pretrained_loaders, name)).parameters
    theirs = inspect.signature(getattr(saelens_loaders, name)).parameters
    assert [(p.name, p.default) for p in ours.values()] == [(p.name, p.default) for p in theirs.values()]
    assert getattr(pretrained_loaders, name).__name__ == name

