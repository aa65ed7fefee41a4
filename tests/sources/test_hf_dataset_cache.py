"""The cached source reads SAELens's cache layout: a Hugging Face dataset of ``[context_size, d_in]`` prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saecore.errors import SAEFileError
from saecore.sources.cached import CachedSource, CachedSourceConfig

datasets = pytest.importorskip("datasets")

HOOK = "blocks.0.hook_resid_post"
PROMPTS, CONTEXT, D_IN = 5, 4, 3


def save_saelens_layout(path: Path, activations: torch.Tensor, *, num_shards: int = 2) -> None:
    """The folder SAELens's CacheActivationsRunner writes: one Array2D column per hook plus token ids."""
    features = datasets.Features({
        HOOK: datasets.Array2D(shape=(CONTEXT, D_IN), dtype="float32"),
        "token_ids": datasets.Sequence(datasets.Value("int32"), length=CONTEXT),
    })
    token_ids = torch.arange(PROMPTS * CONTEXT, dtype=torch.int32).reshape(PROMPTS, CONTEXT)
    dataset = datasets.Dataset.from_dict({HOOK: activations, "token_ids": token_ids}, features=features)
    dataset.save_to_disk(str(path), num_shards=num_shards)


@pytest.fixture
def activations() -> torch.Tensor:
    return torch.randn(PROMPTS, CONTEXT, D_IN, generator=torch.Generator().manual_seed(0))


def test_rows_are_served_in_cache_order_with_the_hook_as_metadata(tmp_path: Path, activations: torch.Tensor) -> None:
    save_saelens_layout(tmp_path, activations)
    source = CachedSource(CachedSourceConfig(path=tmp_path, shuffle=False, buffer_shards=1))
    assert (source.d_in, source.n_tokens, len(source.info.shards)) == (D_IN, PROMPTS * CONTEXT, 2)
    assert source.sae_metadata() == {"hook_name": HOOK, "context_size": CONTEXT}
    served = torch.cat([source.next_batch(6) for _ in range(3)] + [source.next_batch(2)])
    torch.testing.assert_close(served, activations.reshape(-1, D_IN), rtol=0, atol=0)


def test_shuffled_epochs_serve_every_row_once(tmp_path: Path, activations: torch.Tensor) -> None:
    save_saelens_layout(tmp_path, activations)
    source = CachedSource(CachedSourceConfig(path=tmp_path, shuffle=True, buffer_shards=2))
    served = source.next_batch(PROMPTS * CONTEXT)
    expected = activations.reshape(-1, D_IN)
    assert sorted(map(tuple, served.tolist())) == sorted(map(tuple, expected.tolist()))


def test_a_dataset_without_one_activation_column_is_refused_naming_its_columns(tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"text": ["a", "b"]}).save_to_disk(str(tmp_path))
    with pytest.raises(SAEFileError, match=r"exactly one Array2D column .* found none among \['text'\]"):
        CachedSource(CachedSourceConfig(path=tmp_path))


def test_a_missing_data_file_is_named(tmp_path: Path, activations: torch.Tensor) -> None:
    save_saelens_layout(tmp_path, activations)
    first = json.loads((tmp_path / "state.json").read_text())["_data_files"][0]["filename"]
    (tmp_path / first).unlink()
    with pytest.raises(SAEFileError, match=f"{first}: data file listed in state.json is missing"):
        CachedSource(CachedSourceConfig(path=tmp_path))
