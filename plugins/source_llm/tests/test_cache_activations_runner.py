"""``CacheActivationsRunner`` on the offline tiny GPT-2: SAELens's dataset layout, read back by the cached source."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import CacheActivationsRunner, CacheActivationsRunnerConfig, LLMSource
from saecore_source_llm.cache_activations_runner import TMP_SHARDS

from saecore import ConfigError
from saecore.cli import train_cmd
from saecore.sources.cached import CachedSource, CachedSourceConfig

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
    with pytest.raises(ValueError, match=r"unknown field 'model_batchsize'; did you mean 'model_batch_size'"):
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
