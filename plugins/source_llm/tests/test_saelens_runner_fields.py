"""Every SAELens 6.54 field of LanguageModelSAERunnerConfig is accepted and does what it says."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from saecore_source_llm import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LLMSourceConfig
from saecore_source_llm.dataset_reader import DatasetColumn, hub_loading_options
from saecore_source_llm.hooked_model import TransformersModel
from saecore_source_llm.source import LLMSource
from saecore_source_llm.token_stream import TokenStream

from saecore import StandardTrainingSAE, StandardTrainingSAEConfig, TrainingSAE
from saecore.sources.cached import CachedActivationsWriter, CachedSourceConfig
from saecore.training import LoggingConfig
from saecore.version import SAELENS_VERSION

# The 16 fields SAELens 6.54 has that this config lacked, with values a SAELens script might give.
SAELENS_FIELDS: dict[str, Any] = {
    "act_store_device": "cpu", "cached_activations_path": None, "use_cached_activations": False,
    "compile_llm": False, "compile_sae": False, "llm_compilation_mode": None, "sae_compilation_mode": None,
    "dataset_trust_remote_code": True, "dead_feature_threshold": 1e-8, "from_pretrained_path": None,
    "hook_eval": "NOT_IN_USE", "model_kwargs": {}, "n_restart_cycles": 1, "sae_lens_version": "6.54.12",
    "sae_lens_training_version": "6.54.12", "use_chat_formatting": False,
}


def sae_config(**fields: Any) -> StandardTrainingSAEConfig:
    return StandardTrainingSAEConfig(d_in=32, d_sae=64, **fields)


def tiny_run(output: Path, **fields: Any) -> LanguageModelSAERunnerConfig[Any]:
    values: dict[str, Any] = {
        "sae": sae_config(), "context_size": 16, "store_batch_size_prompts": 4, "n_batches_in_buffer": 4,
        "train_batch_size_tokens": 64, "training_tokens": 64 * 6, "n_batches_for_norm_estimate": 2,
        "n_eval_batches": 1, "output_path": str(output), "checkpoint_path": None, "verbose": False,
        "logger": LoggingConfig(log_to_wandb=False), "hook_name": "transformer.h.1",
    }
    values.update(fields)
    return LanguageModelSAERunnerConfig(**values)


def test_every_saelens_field_is_accepted_and_a_typo_still_names_close_fields() -> None:
    cfg = LanguageModelSAERunnerConfig(sae=sae_config(), checkpoint_path=None, **SAELENS_FIELDS)
    assert cfg.checkpoint_path is None
    assert {name: getattr(cfg, name) for name in SAELENS_FIELDS} == SAELENS_FIELDS
    with pytest.raises(ValidationError, match=r"unknown field 'dead_feature_treshold' \(did you mean "
                                              r"'dead_feature_threshold'"):
        LanguageModelSAERunnerConfig(sae=sae_config(), dead_feature_treshold=1e-6)


def test_the_config_is_generic_and_gives_the_training_sae_cfg_dict() -> None:
    cfg = LanguageModelSAERunnerConfig[StandardTrainingSAEConfig](sae=sae_config(l1_coefficient=3.0), dtype="float64")
    assert isinstance(cfg, LanguageModelSAERunnerConfig)
    cfg_dict = cfg.get_training_sae_cfg_dict()
    assert (cfg_dict["architecture"], cfg_dict["l1_coefficient"], cfg_dict["dtype"]) == ("standard", 3.0, "float64")
    assert isinstance(TrainingSAE.from_dict(cfg_dict), StandardTrainingSAE)
    assert cfg.to_dict()["sae_lens_version"] == SAELENS_VERSION


def test_fields_without_effect_warn_in_one_line() -> None:
    with pytest.warns(UserWarning, match="dead_feature_threshold=1e-06 has no effect") as caught:
        LanguageModelSAERunnerConfig(sae=sae_config(), dead_feature_threshold=1e-6)
    assert all("\n" not in str(w.message) for w in caught)
    with pytest.warns(DeprecationWarning, match="hook_eval='blocks.0.hook_resid_pre' has no effect"):
        LanguageModelSAERunnerConfig(sae=sae_config(), hook_eval="blocks.0.hook_resid_pre")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LanguageModelSAERunnerConfig(sae=sae_config(), **SAELENS_FIELDS)


def test_cached_activations_train_from_the_cache_folder(tmp_path: Path) -> None:
    default = LanguageModelSAERunnerConfig(sae=sae_config(), use_cached_activations=True, dataset_path="org/data",
                                           model_name="org/model", hook_name="blocks.0.hook_z", hook_head_index=2)
    source = default.to_runner_config().source
    assert isinstance(source, CachedSourceConfig)
    assert source.path == Path("activations/org_data/org_model/blocks.0.hook_z_2")

    cache = tmp_path / "cache"
    with CachedActivationsWriter(cache, 32, shard_size_tokens=128) as writer:
        writer.append(torch.randn(512, 32, generator=torch.Generator().manual_seed(0)))
    cfg = tiny_run(tmp_path / "out", use_cached_activations=True, cached_activations_path=str(cache))
    runner = LanguageModelSAETrainingRunner(cfg)
    runner.run()
    assert runner.summary is not None and runner.summary.n_tokens == 64 * 6
    saved = json.loads((tmp_path / "out" / "runner_cfg.json").read_text())
    assert saved["source"]["name"] == "cached" and saved["source"]["path"] == str(cache)


def test_from_pretrained_path_fine_tunes_the_saved_sae(hf_model: Any, text_dir: Path, tmp_path: Path) -> None:
    first = LanguageModelSAETrainingRunner(tiny_run(tmp_path / "first", dataset_path=str(text_dir)),
                                           override_model=hf_model).run()
    cfg = tiny_run(tmp_path / "tuned", dataset_path=str(text_dir), from_pretrained_path=str(tmp_path / "first"),
                   lr=1e-12, sae=sae_config(l1_coefficient=9.0))
    tuned = LanguageModelSAETrainingRunner(cfg, override_model=hf_model).run()
    torch.testing.assert_close(tuned.W_dec, first.W_dec)  # started from the saved weights (lr ~ 0)
    assert tuned.cfg.l1_coefficient == first.cfg.l1_coefficient == 1.0  # the saved SAE's own config


def test_override_sae_is_the_sae_trained(hf_model: Any, text_dir: Path, tmp_path: Path) -> None:
    given = StandardTrainingSAE(sae_config(l1_coefficient=2.0))
    runner = LanguageModelSAETrainingRunner(tiny_run(tmp_path / "out", dataset_path=str(text_dir)),
                                            override_model=hf_model, override_sae=given)
    assert runner.run() is given
    assert given.cfg.metadata.hook_name == "transformer.h.1"  # the source's facts fill its metadata
    assert runner.runner_cfg.sae.l1_coefficient == 2.0


def test_compile_sae_and_compile_llm_install_compiled_callables(hf_model: Any, text_dir: Path,
                                                               tmp_path: Path) -> None:
    cfg = tiny_run(tmp_path / "out", dataset_path=str(text_dir), compile_sae=True, sae_compilation_mode="default",
                   compile_backend="eager", compile_llm=True, llm_compilation_backend="eager")
    runner_cfg = LanguageModelSAETrainingRunner(cfg, override_model=hf_model).runner_cfg
    assert (runner_cfg.compile_training_step, runner_cfg.compile_mode, runner_cfg.compile_backend) == (
        True, "default", "eager")
    # Tracing GPT-2 takes seconds even for the eager backend; torch's force_eager stance runs the
    # installed compiled callable without tracing, which is what this wiring test needs.
    with torch.compiler.set_stance("force_eager"):
        source = LLMSource(cfg.source_config(model=hf_model))
        assert hasattr(source.model.activations, "_torchdynamo_orig_callable")
        assert source.next_batch(8).shape == (8, 32)
    source.close()


def test_act_store_device_with_model_is_the_llm_device(hf_model: Any, text_dir: Path) -> None:
    cfg = LLMSourceConfig(model=hf_model, dataset_path=str(text_dir), hook_name="transformer.h.0", context_size=16,
                          store_batch_size_prompts=2, n_batches_in_buffer=2, llm_device="cpu",
                          act_store_device="with_model", verbose=False)
    assert cfg.buffer_device == "cpu"
    source = LLMSource(cfg, device="cpu")
    assert source.buffer.device == torch.device("cpu") and source.next_batch(8).device == torch.device("cpu")
    source.close()
    assert LLMSourceConfig(act_store_device=None).buffer_device is None


def test_model_kwargs_reach_every_forward_pass(hf_model: Any, text_dir: Path) -> None:
    position_ids = torch.full((1, 1), 7)  # broadcast over every batch and position
    cfg = LLMSourceConfig(model=hf_model, dataset_path=str(text_dir), hook_name="transformer.h.0", context_size=4,
                          model_kwargs={"position_ids": position_ids}, verbose=False)
    source = LLMSource(cfg)
    assert source.model.forward_kwargs == {"position_ids": position_ids}
    tokens = source.eval_tokens()[:2]
    shifted = source.model.activations(tokens, ["transformer.h.0"])[0]
    plain = TransformersModel(hf_model, None, "m").activations(tokens, ["transformer.h.0"])[0]
    expected = hf_model(input_ids=tokens, position_ids=position_ids, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(shifted, expected)
    assert not torch.allclose(shifted, plain)
    source.close()


def test_dataset_trust_remote_code_reaches_only_datasets_that_run_scripts() -> None:
    assert hub_loading_options(True, major=3) == {"trust_remote_code": True}
    assert hub_loading_options(False, major=3) == {"trust_remote_code": False}
    assert hub_loading_options(True, major=4) == {}


def test_chat_formatting_tokenizes_with_the_chat_template(tokenizer: Any) -> None:
    from datasets import Dataset

    chat_tokenizer = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    chat_tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    rows = [[{"role": "user", "content": "the cat sat"}, {"role": "assistant", "content": "on a mat"}],
            [{"role": "user", "content": "a red bird"}]]
    stream = TokenStream(Dataset.from_list([{"messages": row} for row in rows]),
                         DatasetColumn("messages", tokenized=False, chat=True), chat_tokenizer,
                         context_size=8, bos=None, separator=None, disable_concat_sequences=False)
    expected = [token for row in rows for token in
                chat_tokenizer.apply_chat_template(row, tokenize=True, return_dict=False)]
    assert stream.next_prompts(2).flatten().tolist() == expected[:16]
    with pytest.raises(ValidationError, match="use_chat_formatting=True tokenizes conversations"):
        LLMSourceConfig(use_chat_formatting=True, is_dataset_tokenized=True)


def test_chat_formatting_picks_the_conversation_column(hf_model: Any, tokenizer: Any) -> None:
    from datasets import Dataset

    chat_tokenizer = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    chat_tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    dataset = Dataset.from_list([{"id": i, "conversation": [{"role": "user", "content": "the big dog ran " * 3}]}
                                 for i in range(8)])
    source = LLMSource(LLMSourceConfig(model=hf_model, tokenizer=chat_tokenizer, dataset=dataset,
                                       hook_name="transformer.h.0", context_size=8, use_chat_formatting=True,
                                       verbose=False))
    assert source.column == DatasetColumn("conversation", tokenized=False, chat=True)
    assert source.eval_tokens().shape[1] == 8
    source.close()


def test_saelens_logging_fields_that_saelens_does_not_read_are_accepted_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="log_optimizer_state_to_wandb=True has no effect"):
        logger = LoggingConfig(log_optimizer_state_to_wandb=True, log_activations_store_to_wandb=False)
    assert logger.log_optimizer_state_to_wandb is True


def test_the_activations_store_warns_about_trust_remote_code_only_when_it_is_given(hf_model: Any,
                                                                                   corpus: list[str]) -> None:
    from datasets import Dataset
    from saecore_source_llm import ActivationsStore

    dataset = Dataset.from_list([{"text": text} for text in corpus])
    fields: dict[str, Any] = {"sae": sae_config(), "hook_name": "transformer.h.0", "context_size": 16,
                              "store_batch_size_prompts": 2, "n_batches_in_buffer": 4, "train_batch_size_tokens": 16}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ActivationsStore.from_config(hf_model, LanguageModelSAERunnerConfig(**fields), override_dataset=dataset)
    with pytest.warns(UserWarning, match="dataset_trust_remote_code=True has no effect"):
        ActivationsStore.from_config(hf_model, LanguageModelSAERunnerConfig(**fields, dataset_trust_remote_code=True),
                                     override_dataset=dataset)
