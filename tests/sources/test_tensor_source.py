"""The in-memory tensor source, including activations captured from a small vision CNN."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from saecore.errors import ConfigError
from saecore.registry import get_registry
from saecore.sources.in_memory import TensorSource, TensorSourceConfig

D_IN = 6


def rows_with_ids(n: int) -> torch.Tensor:
    rows = torch.randn(n, D_IN, generator=torch.Generator().manual_seed(n))
    rows[:, 0] = torch.arange(n, dtype=torch.float32)
    return rows


def ids(batch: torch.Tensor) -> list[int]:
    return batch[:, 0].long().tolist()


def chunks(data: torch.Tensor, sizes: tuple[int, ...] = (5, 0, 17, 3, 40, 35)) -> list[torch.Tensor]:
    out, start = [], 0
    for size in sizes:
        out.append(data[start:start + size])
        start += size
    return out


def test_registered_as_tensor() -> None:
    entry = get_registry().source("tensor")
    assert entry.source_class is TensorSource and entry.config_class is TensorSourceConfig


def test_tensor_epoch_serves_each_row_once_in_a_new_order_each_epoch() -> None:
    data = rows_with_ids(100)
    source = TensorSource(TensorSourceConfig(data=data), seed=3)
    first = torch.cat([source.next_batch(20) for _ in range(5)])
    assert first.dtype == torch.float32 and first.shape == (100, D_IN)
    assert sorted(ids(first)) == list(range(100)) and ids(first) != list(range(100))
    assert torch.equal(first, data[first[:, 0].long()])
    with pytest.warns(UserWarning, match="another pass"):
        second = ids(torch.cat([source.next_batch(20) for _ in range(5)]))
    assert sorted(second) == list(range(100)) and second != ids(first)


def test_tensor_order_depends_only_on_the_seed() -> None:
    data = rows_with_ids(50)
    a, b = TensorSource(TensorSourceConfig(data=data), seed=9), TensorSource(TensorSourceConfig(data=data), seed=9)
    assert torch.equal(a.next_batch(30), b.next_batch(30))
    assert not torch.equal(a.next_batch(10), TensorSource(TensorSourceConfig(data=data), seed=10).next_batch(10))


def test_unshuffled_tensor_is_served_in_order() -> None:
    source = TensorSource(TensorSourceConfig(data=rows_with_ids(30), shuffle=False))
    assert ids(source.next_batch(30)) == list(range(30))


def test_tensor_resume_is_exact_across_epochs() -> None:
    cfg = TensorSourceConfig(data=rows_with_ids(40))
    source = TensorSource(cfg, seed=1)
    source.next_batch(25)
    state = json.loads(json.dumps(source.state_dict()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [source.next_batch(25) for _ in range(4)]
        resumed = TensorSource(cfg, seed=1)
        resumed.load_state_dict(state)
        for batch in expected:
            assert torch.equal(resumed.next_batch(25), batch)


def test_tensor_resume_with_other_data_is_refused() -> None:
    state = TensorSource(TensorSourceConfig(data=rows_with_ids(40))).state_dict()
    with pytest.raises(ConfigError, match="40 rows"):
        TensorSource(TensorSourceConfig(data=rows_with_ids(41))).load_state_dict(state)


def test_batch_larger_than_the_tensor_names_the_field() -> None:
    source = TensorSource(TensorSourceConfig(data=rows_with_ids(40)))
    source.check_batch_size(40)
    with pytest.raises(ConfigError, match="train_batch_size_tokens=41"):
        source.check_batch_size(41)


def test_iterator_is_rechunked_in_order_and_running_out_is_an_error() -> None:
    data = rows_with_ids(100)
    source = TensorSource(TensorSourceConfig(data=iter(chunks(data))))
    assert source.d_in == D_IN
    served = torch.cat([source.next_batch(7) for _ in range(14)])
    assert torch.equal(served, data[:98])
    with pytest.raises(ConfigError, match="ran out after 100 rows"):
        source.next_batch(7)


def test_reiterable_is_read_again_with_a_warning() -> None:
    data = rows_with_ids(100)
    source = TensorSource(TensorSourceConfig(data=chunks(data)))
    source.next_batch(90)
    with pytest.warns(UserWarning, match="another pass"):
        batch = source.next_batch(30)
    assert ids(batch) == list(range(90, 100)) + list(range(20))


def test_reiterable_resume_is_exact_across_passes() -> None:
    data = rows_with_ids(100)
    source = TensorSource(TensorSourceConfig(data=chunks(data)))
    source.next_batch(33)
    source.next_batch(33)
    state = source.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [source.next_batch(33) for _ in range(4)]
        resumed = TensorSource(TensorSourceConfig(data=chunks(data)))
        resumed.load_state_dict(state)
        for batch in expected:
            assert torch.equal(resumed.next_batch(33), batch)


def generate(data: torch.Tensor) -> Iterator[torch.Tensor]:
    yield from chunks(data)


def test_one_shot_iterator_resumes_by_skipping_served_rows_of_a_fresh_iterator() -> None:
    data = rows_with_ids(100)
    source = TensorSource(TensorSourceConfig(data=generate(data)))
    source.next_batch(45)
    state = source.state_dict()
    expected = source.next_batch(30)
    resumed = TensorSource(TensorSourceConfig(data=generate(data)))
    resumed.load_state_dict(state)
    assert torch.equal(resumed.next_batch(30), expected)


def test_one_shot_iterator_cannot_rewind_a_source_that_already_served() -> None:
    data = rows_with_ids(100)
    source = TensorSource(TensorSourceConfig(data=generate(data)))
    source.next_batch(10)
    with pytest.raises(ConfigError, match="one-shot iterator"):
        source.load_state_dict({"pass": 0, "rows_into_pass": 50})


def test_chunk_of_another_width_names_the_chunk() -> None:
    source = TensorSource(TensorSourceConfig(data=[torch.zeros(4, D_IN), torch.zeros(4, D_IN + 1)]))
    with pytest.raises(ConfigError, match=r"chunk 2.*d_in=7.*d_in=6"):
        source.next_batch(8)


def test_empty_iterable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no rows"):
        TensorSource(TensorSourceConfig(data=[]))


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, 4), torch.zeros(5, 3, dtype=torch.long), "acts.pt", 3])
def test_bad_data_is_rejected_naming_the_field(bad: object) -> None:
    with pytest.raises(ValidationError, match="data"):
        TensorSourceConfig(data=bad)


def test_config_json_describes_the_data_instead_of_dumping_it() -> None:
    cfg = TensorSourceConfig(data=torch.zeros(10, D_IN), metadata={"model_name": "cnn"})
    dumped = json.loads(cfg.model_dump_json())
    assert dumped["data"] == "<tensor [10, 6] float32>"
    assert TensorSource(cfg).sae_metadata() == {"model_name": "cnn"}


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, padding=1)
        self.head = nn.Linear(16, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.conv2(torch.relu(self.conv1(images))))
        return self.head(hidden.mean(dim=(2, 3)))


def capture_conv_activations(n_images: int) -> torch.Tensor:
    """Activations of ``conv2`` from a forward hook, one row per spatial position: [B*H*W, C]."""
    torch.manual_seed(0)
    model = TinyCNN().eval()
    captured: list[torch.Tensor] = []
    handle = model.conv2.register_forward_hook(
        lambda _module, _inputs, output: captured.append(output.detach().permute(0, 2, 3, 1).reshape(-1, 16))
    )
    with torch.no_grad():
        model(torch.randn(n_images, 3, 8, 8))
    handle.remove()
    return torch.cat(captured)


def test_an_sae_trains_on_activations_hooked_from_a_vision_cnn(tmp_path: object) -> None:
    from saecore.training.runner import TrainingRunner
    from saecore.training.runner_config import TrainingRunnerConfig

    acts = capture_conv_activations(n_images=64)
    assert acts.shape == (64 * 8 * 8, 16)
    recipe = get_registry().training_recipe("standard")
    cfg = TrainingRunnerConfig(
        sae=recipe.training_config_class(d_in=16, d_sae=32, l1_coefficient=0.01),
        source=TensorSourceConfig(data=acts, metadata={"model_name": "tiny-cnn", "hook_name": "conv2"}),
        training_tokens=256 * 60, train_batch_size_tokens=256, lr=3e-3,
        n_batches_for_norm_estimate=2, n_eval_batches=2, output_path=str(tmp_path), verbose=False,
    )
    runner = TrainingRunner(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sae = runner.run()
    assert runner.summary is not None
    assert runner.summary.ground_truth is None
    assert runner.summary.explained_variance > 0.5
    assert sae.cfg.metadata.model_name == "tiny-cnn" and sae.cfg.metadata.hook_name == "conv2"
