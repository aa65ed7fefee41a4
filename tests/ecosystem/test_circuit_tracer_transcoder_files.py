"""Transcoders written by circuit-tracer itself load through ``mwhanna_transcoder`` with its own outputs.

The files come from ``SingleLayerTranscoder.to_safetensors`` (``pip install --no-deps
circuit-tracer``: the writer needs only torch and safetensors), and the outputs are compared
with its own ``encode`` and ``forward``. Without the library these tests skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ecosystem_helpers import relative_error, require_architectures

from saecore import SAE

D_MODEL, D_TRANSCODER = 16, 48


@pytest.mark.parametrize(("skip", "jumprelu", "architecture"), [
    (False, False, "transcoder"),
    (True, True, "jumprelu_skip_transcoder"),
])
def test_files_written_by_circuit_tracer_load_with_its_outputs(skip: bool, jumprelu: bool, architecture: str,
                                                                tmp_path: Path) -> None:
    written = pytest.importorskip("circuit_tracer.transcoder.single_layer_transcoder")
    activations = pytest.importorskip("circuit_tracer.transcoder.activation_functions")
    require_architectures(architecture)
    generator = torch.Generator().manual_seed(3)
    activation = activations.JumpReLU(torch.rand(D_TRANSCODER, generator=generator) / 2) if jumprelu \
        else torch.nn.ReLU()
    original = written.SingleLayerTranscoder(D_MODEL, D_TRANSCODER, activation, layer_idx=4, skip_connection=skip,
                                             device=torch.device("cpu"), dtype=torch.float32)
    with torch.no_grad():
        for name, parameter in original.named_parameters():
            if not name.startswith("activation_function"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / 2)
    original.to_safetensors(str(tmp_path / "layer_4.safetensors"))

    sae = SAE.load_from_disk(tmp_path / "layer_4.safetensors", converter="mwhanna_transcoder")

    assert sae.cfg.architecture() == architecture
    assert (sae.cfg.metadata.hook_name, sae.cfg.metadata.hook_name_out) == ("blocks.4.mlp.hook_in",
                                                                            "blocks.4.hook_mlp_out")
    x = 2 * torch.randn(12, D_MODEL, generator=generator)
    with torch.no_grad():
        expected_acts = original.encode(x)
        assert 0 < int((expected_acts > 0).sum()) < expected_acts.numel()
        assert relative_error(sae.encode(x), expected_acts) <= 1e-6
        assert relative_error(sae(x), original(x)) <= 1e-6
