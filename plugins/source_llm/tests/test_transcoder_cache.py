"""``saecore cache --source llm --hook-name-out``: a cache of (input, target) pairs a transcoder trains from.

The cached rows must be the pairs the source serves on the fly, the ``cached`` source must
serve them as pairs (its ``target_width``, the output hook in its metadata), and a
transcoder must train from the cache through the CLI with its widths and hooks taken from
it. A cache of inputs only is refused for a transcoder, naming the source.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import LLMSource, LLMSourceConfig

from saecore import get_registry
from saecore.cli import cache_cmd, train_cmd
from saecore.errors import ConfigError
from saecore.sources.cached import CachedSource, CachedSourceConfig, read_cache_info

MLP_IN, MLP_OUT = "transformer.h.0.ln_2", "transformer.h.0.mlp"
TOKENS = 640


def settings(model_dir: Path, text_dir: Path, **extra: str) -> dict[str, Any]:
    return {"model_name": str(model_dir), "model_class_name": "AutoModelForCausalLM", "hook_name": MLP_IN,
            "dataset_path": str(text_dir), "context_size": 16, "store_batch_size_prompts": 4,
            "n_batches_in_buffer": 4, "activations_mixing_fraction": 0.0, "verbose": False, **extra}


def cache_argv(folder: Path, values: dict[str, Any]) -> list[str]:
    flags = [item for name, value in values.items() for item in (f"--{name.replace('_', '-')}", str(value))]
    return ["--source", "llm", "--output", str(folder), "--training-tokens", str(TOKENS), "--batch-size-tokens", "64",
            "--shard-size-tokens", "256", *flags]


def train_argv(cache: Path, output: Path) -> list[str]:
    return ["--arch", "topk_transcoder", "--source", "cached", "--path", str(cache), "--training-tokens", "256",
            "--train-batch-size-tokens", "64", "--d-sae", "32", "--k", "4", "--n-eval-batches", "1",
            "--output-path", str(output)]


@pytest.fixture(scope="module")
def pair_cache(model_dir: Path, text_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pair-cache") / "pairs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the tiny dataset is read more than once
        assert cache_cmd.run_from_argv(cache_argv(folder, settings(model_dir, text_dir, hook_name_out=MLP_OUT))) == 0
    return folder


def test_the_cache_holds_the_pairs_the_source_serves(pair_cache: Path, model_dir: Path, text_dir: Path) -> None:
    on_the_fly = LLMSource(LLMSourceConfig(**settings(model_dir, text_dir, hook_name_out=MLP_OUT)), seed=42)
    from_cache = CachedSource(CachedSourceConfig(path=pair_cache, shuffle=False), seed=42)
    assert (from_cache.d_in, from_cache.target_width) == (on_the_fly.d_in, on_the_fly.target_width) == (64, 32)
    assert from_cache.streams() == on_the_fly.streams()
    assert from_cache.sae_metadata() == on_the_fly.sae_metadata()
    assert from_cache.sae_metadata()["hook_name_out"] == MLP_OUT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(TOKENS // 64):
            assert torch.equal(from_cache.next_batch(64), on_the_fly.next_batch(64))


def test_a_transcoder_trains_from_the_cache_of_pairs(pair_cache: Path, tmp_path: Path) -> None:
    if "topk_transcoder" not in get_registry().training_recipes:
        pytest.skip("needs saecore-transcoders")
    assert train_cmd.run_from_argv(train_argv(pair_cache, tmp_path / "tc")) == 0
    cfg = json.loads((tmp_path / "tc" / "cfg.json").read_text())
    assert (cfg["architecture"], cfg["d_in"], cfg["d_out"]) == ("topk_transcoder", 32, 32)
    assert (cfg["metadata"]["hook_name"], cfg["metadata"]["hook_name_out"]) == (MLP_IN, MLP_OUT)


def test_a_cache_of_inputs_only_is_refused_for_a_transcoder(model_dir: Path, text_dir: Path, tmp_path: Path) -> None:
    if "topk_transcoder" not in get_registry().training_recipes:
        pytest.skip("needs saecore-transcoders")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert cache_cmd.run_from_argv(cache_argv(tmp_path / "inputs", settings(model_dir, text_dir))) == 0
    assert read_cache_info(tmp_path / "inputs").target_width == 0
    with pytest.raises(ConfigError, match=r"topk_transcoder: it trains on \(input, target\) pairs, but the source "
                                          r"\(CachedSource\) serves inputs only"):
        train_cmd.run_from_argv(train_argv(tmp_path / "inputs", tmp_path / "tc"))


def test_saelens_layout_refuses_pairs(model_dir: Path, text_dir: Path, tmp_path: Path) -> None:
    argv = cache_argv(tmp_path / "acts", settings(model_dir, text_dir, hook_name_out=MLP_OUT))
    with pytest.raises(ConfigError, match=r"hook_name_out='transformer\.h\.0\.mlp': SAELens's cache layout holds"):
        cache_cmd.run_from_argv([*argv, "--format", "saelens"])


def test_a_cache_of_a_pair_beside_a_plain_hook_records_each_streams_target(
    model_dir: Path, text_dir: Path, tmp_path: Path
) -> None:
    values = settings(model_dir, text_dir, additional_hook_names='["transformer.h.1", "transformer.h.1.ln_2"]',
                      additional_hook_names_out='{"transformer.h.1.ln_2": "transformer.h.1.mlp"}')
    argv = cache_argv(tmp_path / "mixed", values)
    argv[argv.index("--training-tokens") + 1] = "128"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert cache_cmd.run_from_argv(argv) == 0
    from_cache = CachedSource(CachedSourceConfig(path=tmp_path / "mixed"))
    assert from_cache.streams() == {MLP_IN: 32, "transformer.h.1": 32, "transformer.h.1.ln_2": 64}
    assert [from_cache.stream_target_width(stream) for stream in from_cache.streams()] == [0, 0, 32]
    assert from_cache.target_width == 0
    assert from_cache.stream_metadata("transformer.h.1.ln_2")["hook_name_out"] == "transformer.h.1.mlp"
