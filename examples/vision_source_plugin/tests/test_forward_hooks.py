"""The rows served are exactly the hooked layer's outputs, position by position."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from saecore_vision_toy.images import draw_images
from saecore_vision_toy.model import HOOKABLE_LAYERS, ToyCNN, build_model
from saecore_vision_toy.source import VisionToySource, VisionToySourceConfig

from saecore import SAE, ConfigError, get_registry
from saecore.cli.main import main
from saecore.config.validation import validate_model


def layer_output(model: ToyCNN, images: torch.Tensor, layer: str) -> torch.Tensor:
    """The layer's output computed by calling the blocks one by one (no hooks)."""
    outputs = {}
    x = model.conv1(images)
    outputs["conv1"] = x
    x = model.act1(x)
    outputs["act1"] = x
    x = model.conv2(model.pool1(x))
    outputs["conv2"] = x
    outputs["act2"] = model.act2(x)
    return outputs[layer]


@pytest.mark.parametrize("layer", HOOKABLE_LAYERS)
def test_feature_maps_are_the_hooked_layers_output(layer: str) -> None:
    source = VisionToySource(VisionToySourceConfig(layer=layer, image_size=8), seed=0)
    images = draw_images(torch.Generator().manual_seed(5), 3, 8)
    with torch.no_grad():
        expected = layer_output(build_model(16, 32, seed=0), images, layer)
    torch.testing.assert_close(source.feature_maps(images), expected, rtol=0, atol=0)
    assert expected.shape[1] == source.d_in
    source.close()


def test_the_model_stops_after_the_hooked_layer() -> None:
    source = VisionToySource(VisionToySourceConfig(layer="act1", image_size=8), seed=0)
    calls = []
    source.model.head.register_forward_hook(lambda *args: calls.append("head"))
    source.model.conv2.register_forward_hook(lambda *args: calls.append("conv2"))
    source.next_batch(10)
    assert calls == []
    source.close()


def test_close_removes_the_hook() -> None:
    source = VisionToySource(VisionToySourceConfig(), seed=0)
    assert len(source.layer_module._forward_hooks) == 1
    source.close()
    assert len(source.layer_module._forward_hooks) == 0


def test_a_chunk_is_served_as_its_positions_in_shuffled_order() -> None:
    cfg = VisionToySourceConfig(layer="act2", image_size=8, images_per_chunk=2)
    source = VisionToySource(cfg, seed=11)
    served = source.next_batch(2 * 4 * 4)
    images = draw_images(torch.Generator().manual_seed(11), 2, 8)
    with torch.no_grad():
        maps = layer_output(build_model(16, 32, seed=0), images, "act2")
    rows = maps.permute(0, 2, 3, 1).reshape(-1, 32)
    assert not torch.equal(served, rows)
    order = served.sum(1).argsort()
    torch.testing.assert_close(served[order], rows[rows.sum(1).argsort()], rtol=0, atol=0)
    source.close()


def test_weights_path_loads_a_trained_model(tmp_path: Path) -> None:
    other = build_model(16, 32, seed=123)
    torch.save(other.state_dict(), tmp_path / "weights.pt")
    source = VisionToySource(VisionToySourceConfig(weights_path=str(tmp_path / "weights.pt"), image_size=8), seed=0)
    images = draw_images(torch.Generator().manual_seed(1), 2, 8)
    with torch.no_grad():
        torch.testing.assert_close(source.feature_maps(images), layer_output(other, images, "act2"), rtol=0, atol=0)
    source.close()


def test_odd_image_size_names_the_field() -> None:
    with pytest.raises(ConfigError, match="source 'vision_toy': field 'image_size' = 9: must be even"):
        validate_model(VisionToySourceConfig, {"image_size": 9}, "source 'vision_toy'")


def test_saecore_train_trains_a_topk_sae_on_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if "topk" not in get_registry().training_recipes:
        pytest.skip("needs saecore-sae-topk")
    code = main([
        "train", "--arch", "topk", "--source", "vision_toy", "--k", "4", "--image-size", "8",
        "--training-tokens", "2000", "--train-batch-size-tokens", "500", "--n-eval-batches", "1",
        "--output-path", str(tmp_path / "sae"), "--verbose", "false",
    ])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    sae = SAE.load_from_disk(tmp_path / "sae")
    assert sae.cfg.d_in == 32
    assert (sae.cfg.metadata.model_name, sae.cfg.metadata.hook_name) == ("vision-toy-cnn", "act2")
