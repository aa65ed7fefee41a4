"""Activation caches move both ways: SAELens's CacheActivationsRunner and saecore's write the same dataset,
saecore's cached source reads SAELens's, and SAELens's ActivationsStore reads saecore's."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_language_model import D_MODEL, corpus, write_text_folder, write_tiny_gpt2

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")
datasets = pytest.importorskip("datasets")

from saecore.sources.cached import CachedSource, CachedSourceConfig  # noqa: E402

HOOK = "transformer.h.1"
CONTEXT, BATCH, N_BATCHES = 8, 2, 3


def runner_settings(model: Path, text: Path, output: Path) -> dict[str, Any]:
    return {"dataset_path": str(text), "model_name": str(model), "model_class_name": "AutoModelForCausalLM",
            "model_batch_size": BATCH, "hook_name": HOOK, "d_in": D_MODEL, "training_tokens": 40,
            "context_size": CONTEXT, "new_cached_activations_path": str(output), "device": "cpu", "shuffle": False,
            "buffer_size_gb": N_BATCHES * BATCH * CONTEXT * D_MODEL * 4 / 1e9}


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("activation-caches")
    documents = corpus()
    model, text = write_tiny_gpt2(root / "model", documents), write_text_folder(root / "text", documents)
    folders = {"saelens": root / "saelens", "saecore": root / "saecore"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sae_lens.CacheActivationsRunner(
            sae_lens.CacheActivationsRunnerConfig(**runner_settings(model, text, folders["saelens"]))).run()
        saecore.CacheActivationsRunner(
            saecore.CacheActivationsRunnerConfig(**runner_settings(model, text, folders["saecore"]))).run()
    return folders


def rows(folder: Path) -> dict[str, torch.Tensor]:
    return dict(datasets.load_from_disk(str(folder)).with_format("torch")[:])


def test_both_runners_write_the_same_dataset(caches: dict[str, Path]) -> None:
    theirs, ours = rows(caches["saelens"]), rows(caches["saecore"])
    assert datasets.load_from_disk(str(caches["saecore"])).features == datasets.load_from_disk(
        str(caches["saelens"])).features
    assert torch.equal(ours["token_ids"], theirs["token_ids"])
    torch.testing.assert_close(ours[HOOK], theirs[HOOK], rtol=1e-5, atol=1e-5)


def test_the_cached_source_reads_a_cache_saelens_wrote(caches: dict[str, Path]) -> None:
    source = CachedSource(CachedSourceConfig(path=caches["saelens"], shuffle=False))
    expected = rows(caches["saelens"])[HOOK].reshape(-1, D_MODEL)
    assert source.sae_metadata() == {"hook_name": HOOK, "context_size": CONTEXT}
    torch.testing.assert_close(source.next_batch(expected.shape[0]), expected, rtol=0, atol=0)


def test_saelens_activations_store_reads_a_cache_saecore_wrote(caches: dict[str, Path]) -> None:
    store = sae_lens.ActivationsStore(
        model=None, dataset=None, streaming=False, hook_name=HOOK, hook_head_index=None, context_size=CONTEXT,
        d_in=D_MODEL, n_batches_in_buffer=2, total_training_tokens=40, store_batch_size_prompts=BATCH,
        train_batch_size_tokens=4, prepend_bos=True, normalize_activations="none", device=torch.device("cpu"),
        dtype="float32", cached_activations_path=str(caches["saecore"]))
    written = rows(caches["saecore"])
    served = [store.get_raw_llm_batch() for _ in range(N_BATCHES)]
    torch.testing.assert_close(torch.cat([acts for acts, _ in served]), written[HOOK].reshape(-1, D_MODEL),
                               rtol=0, atol=0)
    assert torch.equal(torch.cat([tokens for _, tokens in served]), written["token_ids"].reshape(-1))
