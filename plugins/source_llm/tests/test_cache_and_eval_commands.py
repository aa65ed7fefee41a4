"""``saecore cache --source llm`` and ``saecore eval PATH --source llm`` on the offline tiny GPT-2.

Training from the cache must see exactly the activations the source generates on the fly
(the same tokens in the same order when nothing shuffles), an interrupted cache must
resume to the same shards even with the mixing buffer on, several SAEs must train from
one cache, and an SAE trained with ``--source llm`` must evaluate with no source flags.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import LLMSource, LLMSourceConfig
from saecore_source_llm.spliced_evals import METRIC_NAMES
from safetensors.torch import load_file

from saecore.cli import cache_cmd, eval_cmd, train_cmd
from saecore.errors import ConfigError
from saecore.sources.cached import CachedSource, CachedSourceConfig, read_cache_info

TOKENS = 1000


def llm_settings(model_dir: Path, text_dir: Path, mixing: float) -> dict[str, Any]:
    return {"model_name": str(model_dir), "model_class_name": "AutoModelForCausalLM", "hook_name": "transformer.h.1",
            "dataset_path": str(text_dir), "context_size": 16, "store_batch_size_prompts": 4,
            "n_batches_in_buffer": 4, "activations_mixing_fraction": mixing, "exclude_special_tokens": True,
            "verbose": False}


def cache_argv(folder: Path, settings: dict[str, Any]) -> list[str]:
    flags = [item for name, value in settings.items() for item in (f"--{name.replace('_', '-')}", str(value))]
    return ["--source", "llm", "--output", str(folder), "--training-tokens", str(TOKENS), "--batch-size-tokens", "64",
            "--shard-size-tokens", "256", *flags]


def cached_rows(folder: Path) -> torch.Tensor:
    return torch.cat([load_file(str(folder / shard.file))["activations"] for shard in read_cache_info(folder).shards])


@pytest.fixture(scope="module")
def ordered_cache(model_dir: Path, text_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("llm-cache") / "ordered"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the tiny dataset is read more than once
        assert cache_cmd.run_from_argv(cache_argv(folder, llm_settings(model_dir, text_dir, mixing=0.0))) == 0
    return folder


def test_training_from_the_cache_sees_the_activations_generated_on_the_fly(
    ordered_cache: Path, model_dir: Path, text_dir: Path
) -> None:
    on_the_fly = LLMSource(LLMSourceConfig(**llm_settings(model_dir, text_dir, mixing=0.0)), seed=42)
    from_cache = CachedSource(CachedSourceConfig(path=ordered_cache, shuffle=False), seed=42)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(10):
            assert torch.equal(from_cache.next_batch(100), on_the_fly.next_batch(100))
    metadata = read_cache_info(ordered_cache).metadata
    assert (metadata["model_name"], metadata["hook_name"], metadata["context_size"]) == (
        str(model_dir), "transformer.h.1", 16)


def test_a_cache_of_two_hooks_keeps_their_rows_and_streams(model_dir: Path, text_dir: Path, tmp_path: Path) -> None:
    settings = {**llm_settings(model_dir, text_dir, mixing=0.5), "additional_hook_names": '["transformer.h.0.mlp"]'}
    argv = cache_argv(tmp_path / "two", settings)
    argv[argv.index("--training-tokens") + 1] = "300"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert cache_cmd.run_from_argv(argv) == 0
        on_the_fly = LLMSource(LLMSourceConfig(**{**settings, "additional_hook_names": ["transformer.h.0.mlp"]}),
                               seed=42)
        expected = torch.cat([on_the_fly.next_batch(size) for size in (64, 64, 64, 64, 44)])  # the command's draws
    from_cache = CachedSource(CachedSourceConfig(path=tmp_path / "two", shuffle=False))
    assert from_cache.streams() == on_the_fly.streams() == {"transformer.h.1": 32, "transformer.h.0.mlp": 32}
    for stream in on_the_fly.streams():
        assert from_cache.stream_metadata(stream) == on_the_fly.stream_metadata(stream)
    assert from_cache.sae_metadata() == on_the_fly.sae_metadata()
    assert from_cache.sae_metadata()["additional_hook_names"] == ["transformer.h.0.mlp"]
    assert torch.equal(from_cache.next_batch(300), expected)


def test_an_interrupted_llm_cache_resumes_to_the_same_shards(
    model_dir: Path, text_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = llm_settings(model_dir, text_dir, mixing=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert cache_cmd.run_from_argv(cache_argv(tmp_path / "whole", settings)) == 0
        calls = {"count": 0}
        original = LLMSource.next_batch

        def interrupted(self: LLMSource, batch_size: int) -> torch.Tensor:
            calls["count"] += 1
            if calls["count"] == 10:  # in the third shard
                raise KeyboardInterrupt
            return original(self, batch_size)

        monkeypatch.setattr(LLMSource, "next_batch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            cache_cmd.run_from_argv(cache_argv(tmp_path / "resumed", settings))
        assert len(read_cache_info(tmp_path / "resumed").shards) == 2
        assert cache_cmd.run_from_argv(cache_argv(tmp_path / "resumed", settings)) == 0
    whole = cached_rows(tmp_path / "whole")
    assert whole.shape == (TOKENS, 32)
    assert torch.equal(cached_rows(tmp_path / "resumed"), whole)


def test_two_architectures_train_from_one_llm_cache(ordered_cache: Path, model_dir: Path, tmp_path: Path) -> None:
    common = ["--source", "cached", "--path", str(ordered_cache), "--training-tokens", "640",
              "--train-batch-size-tokens", "64", "--d-sae", "64", "--n-eval-batches", "1"]
    assert train_cmd.run_from_argv(["--arch", "standard", *common, "--output-path", str(tmp_path / "std")]) == 0
    topk = ["--arch", "topk", "--k", "4", *common, "--output-path", str(tmp_path / "topk")]
    assert train_cmd.run_from_argv(topk) == 0
    for name in ("std", "topk"):
        metadata = json.loads((tmp_path / name / "cfg.json").read_text())["metadata"]
        assert (metadata["model_name"], metadata["hook_name"]) == (str(model_dir), "transformer.h.1")


def test_an_sae_trained_on_the_llm_source_evaluates_with_no_source_flags(
    model_dir: Path, text_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = ["--arch", "topk", "--source", "llm", "--model", str(model_dir), "--hook-name", "blocks.1.hook_resid_post",
             "--dataset-path", str(text_dir), "--context-size", "16", "--store-batch-size-prompts", "4",
             "--n-batches-in-buffer", "4", "--training-tokens", "640", "--train-batch-size-tokens", "64",
             "--d-sae", "64", "--k", "4", "--n-eval-batches", "1", "--output-path", str(tmp_path / "sae")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert train_cmd.run_from_argv(train) == 0
        assert "ce_loss_score" in capsys.readouterr().out  # the training summary prints the scores
        argv = [str(tmp_path / "sae"), "--source", "llm", "--n-eval-batches", "2", "--batch-size-tokens", "64",
                "--store-batch-size-prompts", "4", "--n-batches-in-buffer", "4", "--verbose", "false", "--json"]
        assert eval_cmd.run_from_argv(argv) == 0
    report = json.loads(capsys.readouterr().out)
    config = report["source_config"]
    assert (config["model_name"], config["hook_name"], config["context_size"], config["dataset_path"]) == (
        str(model_dir), "blocks.1.hook_resid_post", 16, str(text_dir))
    assert config["model_class_name"] == "auto"
    assert list(report["source_metrics"]) == list(METRIC_NAMES)
    assert all(torch.isfinite(torch.tensor(value)) for value in report["source_metrics"].values())
    assert report["n_tokens"] == 128 and report["metrics"]["sparsity/l0"] == pytest.approx(4.0)


def test_recorded_settings_become_eval_defaults_portably() -> None:
    sae_lens_metadata = {"model_name": "gpt2", "hook_name": "blocks.3.hook_resid_pre", "context_size": 128,
                         "model_class_name": "HookedTransformer", "hook_head_index": None,
                         "model_from_pretrained_kwargs": {"center_writing_weights": False},
                         "dataset_trust_remote_code": False}
    defaults = LLMSourceConfig.defaults_from_sae_metadata(sae_lens_metadata)
    assert {key: defaults[key] for key in ("model_name", "hook_name", "context_size")} == {
        "model_name": "gpt2", "hook_name": "blocks.3.hook_resid_pre", "context_size": 128}
    assert "model_class_name" not in defaults and "hook_head_index" not in defaults
    assert "dataset_trust_remote_code" not in defaults
    transformers = LLMSourceConfig.defaults_from_sae_metadata({"model_class_name": "AutoModelForCausalLM"})
    assert transformers == {"model_class_name": "AutoModelForCausalLM"}


def test_format_saelens_writes_the_runners_dataset_of_prompts(model_dir: Path, text_dir: Path,
                                                              tmp_path: Path) -> None:
    import datasets

    settings = {**llm_settings(model_dir, text_dir, mixing=0.5), "exclude_special_tokens": False}
    argv = cache_argv(tmp_path / "acts", settings)
    argv[argv.index("--training-tokens") + 1] = "200"  # one buffer: 4 passes of 4 prompts of 16 tokens
    assert cache_cmd.run_from_argv([*argv, "--format", "saelens"]) == 0
    rows = datasets.load_from_disk(str(tmp_path / "acts")).with_format("torch")[:]
    source = LLMSource(LLMSourceConfig(**settings))
    prompts = source.stream.next_prompts(16)
    assert torch.equal(rows["token_ids"].long(), prompts)
    torch.testing.assert_close(rows["transformer.h.1"].reshape(-1, 32), source.activations(prompts))


def test_format_saelens_is_refused_for_a_source_without_prompts(tmp_path: Path) -> None:
    argv = ["--source", "synthetic", "--output", str(tmp_path / "acts"), "--training-tokens", "64", "--format",
            "saelens"]
    with pytest.raises(ConfigError, match="SyntheticSource source cannot write SAELens's cache layout"):
        cache_cmd.run_from_argv(argv)
