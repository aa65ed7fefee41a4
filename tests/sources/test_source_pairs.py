"""Sources of (input, target) pairs for transcoders: rows are ``[input | target]``, aligned through shuffles."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from saecore import ConfigError
from saecore.sources.in_memory import TensorSource, TensorSourceConfig
from saecore.sources.synthetic import SyntheticSource, SyntheticSourceConfig
from saecore.sources.synthetic_transcoder import SyntheticTranscoderSource, SyntheticTranscoderSourceConfig


def test_tensor_source_serves_each_row_beside_its_target() -> None:
    data = torch.arange(40, dtype=torch.float32).reshape(10, 4)
    target = data[:, :2] * -1
    source = TensorSource(TensorSourceConfig(data=data, target=target))
    assert (source.d_in, source.target_width) == (6, 2)
    rows = source.next_batch(10)
    assert torch.equal(rows[:, 4:], -rows[:, :2])
    assert sorted(rows[:, 0].tolist()) == data[:, 0].tolist()


def test_tensor_source_reads_pairs_from_an_iterable() -> None:
    chunks = [(torch.ones(3, 4), torch.zeros(3, 2)), (2 * torch.ones(5, 4), torch.ones(5, 2))]
    source = TensorSource(TensorSourceConfig(data=chunks))
    assert (source.d_in, source.target_width) == (6, 2)
    rows = source.next_batch(4)
    assert torch.equal(rows[3], torch.tensor([2.0, 2, 2, 2, 1, 1]))


@pytest.mark.parametrize(("fields", "message"), [
    ({"data": torch.zeros(4, 3), "target": torch.zeros(5, 2)}, "target has 5 rows but data has 4"),
    ({"data": [torch.zeros(4, 3)], "target": torch.zeros(4, 2)}, "target needs data to be a tensor"),
])
def test_tensor_source_refuses_targets_that_do_not_fit(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TensorSourceConfig(**fields)


def test_pairs_of_unequal_rows_are_refused_with_the_chunk() -> None:
    with pytest.raises(ConfigError, match=r"data \(chunk 1\): 3 inputs but 2 targets"):
        TensorSource(TensorSourceConfig(data=[(torch.zeros(3, 4), torch.zeros(2, 2))]))


def test_synthetic_transcoder_source_maps_the_coefficients_magnitudes_to_the_target() -> None:
    cfg = SyntheticTranscoderSourceConfig(d_in=8, d_out=5, n_features=16, avg_active_features=2.0)
    source = SyntheticTranscoderSource(cfg, seed=3)
    twin = SyntheticTranscoderSource(cfg, seed=3)
    rows = source.next_batch(64)
    inputs, coefficients = twin.next_batch_with_coefficients(64)
    assert rows.shape == (64, 13) and source.target_width == 5
    assert torch.equal(rows[:, :8], inputs)
    torch.testing.assert_close(rows[:, 8:], coefficients.abs() @ source.ground_truth_features())
    assert (coefficients < 0).any(), "signed inputs: some features enter the input negated"
    assert source.ground_truth_features().shape == (16, 5)
    assert source.sae_metadata()["hook_name_out"] == "synthetic_out"


def test_synthetic_transcoder_inputs_are_the_synthetic_sources_without_signs() -> None:
    shape = {"d_in": 8, "n_features": 16, "avg_active_features": 2.0}
    paired = SyntheticTranscoderSource(SyntheticTranscoderSourceConfig(**shape, signed_inputs=False), seed=1)
    plain = SyntheticSource(SyntheticSourceConfig(**shape), seed=1)
    assert torch.equal(paired.next_batch(32)[:, :8], plain.next_batch(32))
    assert torch.equal(paired.input_features(), plain.ground_truth_features())
