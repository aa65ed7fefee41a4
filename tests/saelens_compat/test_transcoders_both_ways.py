"""Transcoders move between SAELens 6.54 and saecore with identical outputs, both ways.

SAELens's four transcoder architectures save ``d_out`` in cfg.json, the target hook in
``metadata.hook_name_out``, ``W_dec [d_sae, d_out]``, ``b_dec [d_out]`` and, with a skip
connection, ``W_skip [d_out, d_in]``. Outputs are compared in float64 on random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")
pytest.importorskip("saecore_transcoders")

ARCHITECTURES = ("transcoder", "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder")
D_IN, D_OUT, D_SAE = 10, 7, 24
METADATA = {"model_name": "gpt2-small", "hook_name": "blocks.1.ln2.hook_normalized",
            "hook_name_out": "blocks.1.hook_mlp_out"}


def randomize(module: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, param in module.named_parameters():
            value = torch.randn(param.shape, generator=generator, dtype=torch.float64) * 0.3
            param.copy_(value.abs() if name == "threshold" else value)


def inputs() -> torch.Tensor:
    return torch.randn(6, D_IN, generator=torch.Generator().manual_seed(8), dtype=torch.float64)


def cfg_dict(architecture: str) -> dict:
    return {"architecture": architecture, "d_in": D_IN, "d_out": D_OUT, "d_sae": D_SAE, "dtype": "float64",
            "apply_b_dec_to_input": False, "metadata": METADATA}


def saelens_transcoder(architecture: str) -> torch.nn.Module:
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.transcoder import (
        JumpReLUSkipTranscoder,
        JumpReLUSkipTranscoderConfig,
        JumpReLUTranscoder,
        JumpReLUTranscoderConfig,
        SkipTranscoder,
        SkipTranscoderConfig,
        Transcoder,
        TranscoderConfig,
    )

    classes = {
        "transcoder": (Transcoder, TranscoderConfig),
        "skip_transcoder": (SkipTranscoder, SkipTranscoderConfig),
        "jumprelu_transcoder": (JumpReLUTranscoder, JumpReLUTranscoderConfig),
        "jumprelu_skip_transcoder": (JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig),
    }
    sae_class, config_class = classes[architecture]
    cfg = config_class(d_in=D_IN, d_out=D_OUT, d_sae=D_SAE, dtype="float64", apply_b_dec_to_input=False,
                       metadata=SAEMetadata(**METADATA))
    sae = sae_class(cfg)
    randomize(sae)
    return sae


def assert_same_outputs(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), theirs.encode(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_saelens_transcoder_loads_in_saecore(architecture: str, tmp_path: Path) -> None:
    theirs = saelens_transcoder(architecture)
    theirs.save_model(tmp_path)

    ours = saecore.SAE.load_from_disk(tmp_path, dtype="float64")

    assert ours.cfg.architecture() == architecture
    assert ours.cfg.d_out == D_OUT
    assert ours.cfg.metadata.hook_name_out == METADATA["hook_name_out"]
    assert sorted(dict(ours.named_parameters())) == sorted(dict(theirs.named_parameters()))
    assert_same_outputs(ours, theirs)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_saecore_transcoder_loads_in_saelens(architecture: str, tmp_path: Path) -> None:
    ours = saecore.SAE.from_dict(cfg_dict(architecture))
    randomize(ours)
    ours.save_model(tmp_path)
    written = json.loads((tmp_path / "cfg.json").read_text())
    assert written["d_out"] == D_OUT and written["metadata"]["hook_name_out"] == METADATA["hook_name_out"]

    theirs = sae_lens.SAE.load_from_disk(tmp_path, dtype="float64")

    assert type(theirs).__name__ == type(ours).__name__
    assert theirs.cfg.d_out == D_OUT
    assert_same_outputs(ours, theirs)


@pytest.mark.parametrize("recipe", ["skip_transcoder", "jumprelu_transcoder", "topk_skip_transcoder"])
def test_trained_saecore_transcoder_loads_in_saelens_or_saecore(recipe: str, tmp_path: Path) -> None:
    """A training transcoder's saved file: SAELens reads its four architectures; TopK ones stay saecore's."""
    training = saecore.TrainingSAE.from_dict({**cfg_dict(recipe), **({"k": 4} if "topk" in recipe else {})})
    randomize(training)
    training.save_inference_model(tmp_path)
    x = inputs()
    with torch.no_grad():
        expected = training(x)
        loaded = (saecore.SAE if "topk" in recipe else sae_lens.SAE).load_from_disk(tmp_path, dtype="float64")
        torch.testing.assert_close(loaded(x), expected, rtol=1e-12, atol=1e-12)


def test_skip_weights_under_a_non_skip_architecture_are_refused(tmp_path: Path) -> None:
    saelens_transcoder("skip_transcoder").save_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "architecture": "transcoder"}))

    with pytest.raises(saecore.SAEFileError, match=r"W_skip \[7, 10\].*'skip_transcoder'"):
        saecore.SAE.load_from_disk(tmp_path)
