"""``CacheActivationsRunner`` on the offline tiny GPT-2: SAELens's dataset layout, read back by the cached source,
SAELens's ``ActivationsStore`` and the SAELens runner."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import (
    ActivationsStore,
    CacheActivationsRunner,
    CacheActivationsRunnerConfig,
    LanguageModelSAERunnerConfig,
    LanguageModelSAETrainingRunner,
    LLMSource,
)
from saecore_source_llm.hf_activation_dataset import TMP_SHARDS

from saecore import ConfigError, StandardTrainingSAEConfig
from saecore.cli import train_cmd
from saecore.sources.cached import CachedActivationsWriter, CachedSource, CachedSourceConfig
from saecore.training import LoggingConfig

HOOK = "transformer.h.1"
CONTEXT, D_MODEL, BATCH = 8, 32, 2


def runner_config(model_dir: Path, text_dir: Path, output: Path, **fields: Any) -> CacheActivationsRunnerConfig:
    settings: dict[str, Any] = {
        "dataset_path": str(text_dir), "model_name": str(model_dir), "model_class_name": "AutoModelForCausalLM",
        "model_batch_size": BATCH, "hook_name": HOOK, "d_in": D_MODEL, "training_tokens": 40,
        "context_size": CONTEXT, "new_cached_activations_path": str(output), "device": "cpu", "shuffle": False,
        # 48 activations × 32 × 4 bytes: three forward passes per buffer, so 40 tokens take one buffer.
        "buffer_size_gb": 48 * D_MODEL * 4 / 1e9,
    }
    return CacheActivationsRunnerConfig(**{**settings, **fields})


@pytest.fixture(scope="module")
def written(model_dir: Path, text_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    output = tmp_path_factory.mktemp("saelens-cache") / "acts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dataset = CacheActivationsRunner(runner_config(model_dir, text_dir, output)).run()
    return output, dataset


def test_buffers_are_sized_as_saelens_sizes_them(model_dir: Path, text_dir: Path, tmp_path: Path) -> None:
    cfg = runner_config(model_dir, text_dir, tmp_path, training_tokens=100)
    assert (cfg.n_tokens_in_batch, cfg.n_tokens_in_buffer, cfg.n_batches_in_buffer) == (16, 48, 3)
    assert (cfg.n_buffers, cfg.n_seq_in_buffer, cfg.n_seq_in_dataset) == (3, 6, 12)


def test_the_dataset_holds_prompts_of_activations_and_their_token_ids(
    written: tuple[Path, Any], model_dir: Path, text_dir: Path, tmp_path: Path
) -> None:
    folder, dataset = written
    assert len(dataset) == 3 * BATCH and not (folder / TMP_SHARDS).exists()
    assert dataset.features[HOOK].shape == (CONTEXT, D_MODEL)
    rows = dataset.with_format("torch")[:]
    source = LLMSource(runner_config(model_dir, text_dir, tmp_path).llm_source_config(), device="cpu")
    prompts = source.stream.next_prompts(3 * BATCH)
    assert torch.equal(rows["token_ids"].long(), prompts)
    torch.testing.assert_close(rows[HOOK].reshape(-1, D_MODEL), source.activations(prompts))


def test_the_cached_source_reads_what_the_runner_wrote(written: tuple[Path, Any]) -> None:
    folder, dataset = written
    source = CachedSource(CachedSourceConfig(path=folder, shuffle=False))
    assert source.sae_metadata() == {"hook_name": HOOK, "context_size": CONTEXT}
    rows = dataset.with_format("torch")[:]
    torch.testing.assert_close(source.next_batch(source.n_tokens), rows[HOOK].reshape(-1, D_MODEL))


def test_a_folder_that_is_not_empty_is_refused(model_dir: Path, text_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(ConfigError, match="is not empty; delete it or choose another folder"):
        CacheActivationsRunner(runner_config(model_dir, text_dir, tmp_path)).run()


def test_a_misspelled_field_is_named_with_close_matches(model_dir: Path, text_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown field 'model_batchsize' \(did you mean 'model_batch_size'"):
        runner_config(model_dir, text_dir, tmp_path, model_batchsize=4)


def test_fields_without_effect_warn_once_each(model_dir: Path, text_dir: Path, tmp_path: Path) -> None:
    cfg = runner_config(model_dir, text_dir, tmp_path, compile_llm=True, hf_repo_id="me/acts")
    with pytest.warns(UserWarning) as caught:
        cfg.warn_fields_without_effect()
    messages = [str(warning.message) for warning in caught]
    assert len(messages) == 2
    assert messages[0].startswith("CacheActivationsRunnerConfig.compile_llm=True has no effect in saecore")
    assert "upload it with datasets.load_from_disk(path).push_to_hub(repo_id)" in messages[1]


def test_the_default_folder_is_saelens_s(model_dir: Path, text_dir: Path, tmp_path: Path) -> None:
    cfg = runner_config(model_dir, text_dir, tmp_path, new_cached_activations_path=None, dataset_path="org/data",
                        model_name="gpt2", context_size=CONTEXT)
    assert cfg.new_cached_activations_path == f"activations/org_data/gpt2/{HOOK}"


def test_context_size_minus_one_is_read_from_a_tokenized_dataset(model_dir: Path, text_dir: Path,
                                                                 tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "train.jsonl").write_text("".join(json.dumps({"input_ids": list(range(12))}) + "\n" for _ in range(3)))
    assert runner_config(model_dir, tokens, tmp_path / "a", context_size=-1).context_size == 12
    with pytest.raises(ValueError, match=r"is not tokenized; set context_size"):
        runner_config(model_dir, text_dir, tmp_path / "b", context_size=-1)


@pytest.mark.parametrize(("fields", "message"), [
    ({"training_tokens": 4}, r"context_size \(8\) is greater than training_tokens \(4\)"),
    ({"buffer_size_gb": 1e-9}, r"buffer_size_gb=1e-09 holds less than one forward pass of 16 activations"),
    ({"seqpos_slice": (8, None)}, r"seqpos_slice=\(8, None\) keeps no position"),
])
def test_settings_that_cannot_cache_are_named(model_dir: Path, text_dir: Path, tmp_path: Path,
                                              fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        runner_config(model_dir, text_dir, tmp_path, **fields)


def test_d_in_must_be_the_hook_width(model_dir: Path, text_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"d_in=7, but '{HOOK}' of .* is {D_MODEL} wide"):
        CacheActivationsRunner(runner_config(model_dir, text_dir, tmp_path, d_in=7))


def test_an_sae_trains_from_the_cache(written: tuple[Path, Any], tmp_path: Path) -> None:
    folder, _ = written
    argv = ["--arch", "standard", "--source", "cached", "--path", str(folder), "--training-tokens", "96",
            "--train-batch-size-tokens", "16", "--d-sae", "64", "--n-eval-batches", "1",
            "--output-path", str(tmp_path / "sae")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 48 cached rows serve two epochs
        assert train_cmd.run_from_argv(argv) == 0
    metadata = json.loads((tmp_path / "sae" / "cfg.json").read_text())["metadata"]
    assert (metadata["hook_name"], metadata["context_size"]) == (HOOK, CONTEXT)


def cache_store(folder: Path, **options: Any) -> ActivationsStore:
    """SAELens's store on a cache alone (no model, no dataset), ``BATCH`` prompts a batch."""
    return ActivationsStore(None, None, False, HOOK, None, CONTEXT, D_MODEL, 2, 40, BATCH, 16, False, "none", "cpu",
                            "float32", cached_activations_path=str(folder), **options)


def test_a_store_serves_the_cached_prompts_in_order_and_starts_again(written: tuple[Path, Any]) -> None:
    folder, dataset = written
    store = cache_store(folder)
    rows = dataset.with_format("torch")[:]
    served = [store.get_raw_llm_batch(raise_on_epoch_end=True) for _ in range(3)]
    torch.testing.assert_close(torch.cat([acts for acts, _ in served]), rows[HOOK].reshape(-1, D_MODEL),
                               rtol=0, atol=0)
    assert torch.equal(torch.cat([tokens for _, tokens in served]), rows["token_ids"].reshape(-1).long())
    with pytest.raises(StopIteration, match="every prompt of the cache"):
        store.get_raw_llm_batch(raise_on_epoch_end=True)
    torch.testing.assert_close(store.get_raw_llm_batch()[0], served[0][0], rtol=0, atol=0)
    assert len(store.load_cached_activation_dataset()) == len(store.cached_activation_dataset) == 3 * BATCH
    assert store.next_batch().shape == (16, D_MODEL)
    with pytest.raises(ConfigError, match=r"reads only the cached activations .* give a dataset as well"):
        store.get_batch_tokens()


def test_special_tokens_are_filtered_on_the_cached_token_ids(written: tuple[Path, Any]) -> None:
    folder, dataset = written
    first_prompts = dataset.with_format("torch")[:BATCH]["token_ids"].reshape(-1).long()
    excluded = first_prompts[:3].unique()
    store = cache_store(folder, exclude_special_tokens=excluded)
    kept = int((~torch.isin(first_prompts, excluded)).sum())
    assert store.get_filtered_llm_batch().shape == (kept, D_MODEL) and kept < BATCH * CONTEXT


def test_from_cache_activations_reads_the_runners_folder(written: tuple[Path, Any], model_dir: Path,
                                                         text_dir: Path) -> None:
    folder, dataset = written
    cfg = runner_config(model_dir, text_dir, folder)
    for store in (ActivationsStore.from_cache_activations(None, cfg), ActivationsStore.from_config(None, cfg)):
        activations, _ = store.get_raw_llm_batch()
        expected = dataset.with_format("torch")[:BATCH][HOOK].reshape(-1, D_MODEL)
        torch.testing.assert_close(activations, expected, rtol=0, atol=0)


def test_a_store_reads_a_cache_in_saecores_layout(tmp_path: Path) -> None:
    rows = torch.randn(5 * CONTEXT, D_MODEL, generator=torch.Generator().manual_seed(0))
    with CachedActivationsWriter(tmp_path / "cache", D_MODEL, shard_size_tokens=3 * CONTEXT,
                                 metadata={"hook_name": HOOK, "context_size": CONTEXT}) as writer:
        writer.append(rows)
    store = cache_store(tmp_path / "cache")
    served = [store.get_raw_llm_batch() for _ in range(3)]
    torch.testing.assert_close(torch.cat([acts for acts, _ in served[:2]]), rows[:4 * CONTEXT], rtol=0, atol=0)
    torch.testing.assert_close(served[2][0], rows[:2 * CONTEXT], rtol=0, atol=0)  # the fifth prompt is never served
    assert served[0][1] is None and store.load_cached_activation_dataset() is None
    with pytest.raises(ConfigError, match=r"has context_size=8 but the store was given context_size=4"):
        ActivationsStore(None, None, False, HOOK, None, 4, D_MODEL, 2, 40, BATCH, 16, False, "none", "cpu",
                         "float32", cached_activations_path=str(tmp_path / "cache"))


@pytest.mark.parametrize(("options", "message"), [
    ({"cached_activations_path": "no/such/folder"}, r"cached_activations_path='no/such/folder' does not exist"),
    ({"hook_name": "transformer.h.0"}, r"has no activations of hook_name='transformer.h.0'"),
    ({"d_in": 7}, r"shape \(8, 32\) per prompt, but context_size=8 and d_in=7"),
])
def test_a_cache_that_does_not_fit_the_store_is_named(written: tuple[Path, Any], options: dict[str, Any],
                                                     message: str) -> None:
    arguments: dict[str, Any] = {"cached_activations_path": str(written[0]), "hook_name": HOOK, "d_in": D_MODEL}
    arguments.update(options)
    with pytest.raises(ConfigError, match=message):
        ActivationsStore(None, None, False, arguments["hook_name"], None, CONTEXT, arguments["d_in"], 2, 40, BATCH,
                         16, False, "none", "cpu", "float32",
                         cached_activations_path=arguments["cached_activations_path"])


def test_the_saelens_runner_trains_from_the_cache(written: tuple[Path, Any], tmp_path: Path) -> None:
    cfg = LanguageModelSAERunnerConfig(
        sae=StandardTrainingSAEConfig(d_in=D_MODEL, d_sae=64), use_cached_activations=True,
        cached_activations_path=str(written[0]), hook_name=HOOK, context_size=CONTEXT, train_batch_size_tokens=16,
        training_tokens=32, n_batches_for_norm_estimate=1, n_eval_batches=1, output_path=str(tmp_path / "sae"),
        checkpoint_path=None, logger=LoggingConfig(log_to_wandb=False), verbose=False)
    LanguageModelSAETrainingRunner(cfg).run()
    metadata = json.loads((tmp_path / "sae" / "cfg.json").read_text())["metadata"]
    assert (metadata["hook_name"], metadata["context_size"]) == (HOOK, CONTEXT)
