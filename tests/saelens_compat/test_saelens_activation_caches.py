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


def saelens_store_arguments(folder: Path) -> dict[str, Any]:
    """SAELens's ActivationsStore arguments for a cache alone (no model, no dataset)."""
    return {"model": None, "dataset": None, "streaming": False, "hook_name": HOOK, "hook_head_index": None,
            "context_size": CONTEXT, "d_in": D_MODEL, "n_batches_in_buffer": 2, "total_training_tokens": 40,
            "store_batch_size_prompts": BATCH, "train_batch_size_tokens": 4, "prepend_bos": True,
            "normalize_activations": "none", "device": torch.device("cpu"), "dtype": "float32",
            "cached_activations_path": str(folder)}


@pytest.mark.parametrize("writer", ["saelens", "saecore"])
def test_saecores_store_serves_a_cache_as_saelens_s_does(caches: dict[str, Path], writer: str) -> None:
    arguments = saelens_store_arguments(caches[writer])
    theirs, ours = sae_lens.ActivationsStore(**arguments), saecore.ActivationsStore(**arguments)
    for _ in range(N_BATCHES + 2):  # past the end: both start the cache again from its first prompt
        (their_acts, their_tokens), (our_acts, our_tokens) = theirs.get_raw_llm_batch(), ours.get_raw_llm_batch()
        torch.testing.assert_close(our_acts, their_acts, rtol=0, atol=0)
        assert torch.equal(our_tokens, their_tokens.long())
    for store in (theirs, ours):
        store.load_cached_activation_dataset()
        for _ in range(N_BATCHES):
            store.get_raw_llm_batch(raise_on_epoch_end=True)
        with pytest.raises(StopIteration):
            store.get_raw_llm_batch(raise_on_epoch_end=True)
    assert ours.cached_activation_dataset.features == theirs.cached_activation_dataset.features


def test_the_saelens_runner_trains_from_a_cache_saelens_wrote(caches: dict[str, Path], tmp_path: Path) -> None:
    cfg = saecore.LanguageModelSAERunnerConfig(
        sae=saecore.StandardTrainingSAEConfig(d_in=D_MODEL, d_sae=16), use_cached_activations=True,
        cached_activations_path=str(caches["saelens"]), hook_name=HOOK, context_size=CONTEXT,
        train_batch_size_tokens=8, training_tokens=16, n_batches_for_norm_estimate=1, n_eval_batches=1,
        output_path=str(tmp_path / "sae"), checkpoint_path=None,
        logger=saecore.LoggingConfig(log_to_wandb=False), verbose=False)
    sae = saecore.LanguageModelSAETrainingRunner(cfg).run()
    assert (sae.cfg.metadata.hook_name, sae.cfg.metadata.context_size) == (HOOK, CONTEXT)
    loaded = sae_lens.SAE.load_from_disk(str(tmp_path / "sae"))
    assert loaded.cfg.metadata.hook_name == HOOK
