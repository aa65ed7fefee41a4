"""SAELens's ActivationsStore and run_evals on saecore's llm source: the behaviour saecore defines itself.

Equality with SAELens's values is tested in tests/saelens_compat; here the store and the
evals run on a plain transformers GPT-2 (hook names are module paths), and the tests cover
what differs from SAELens or is saecore's own: rewinding, epoch ends, model arguments,
the training config path and the special tokens the evals ignore.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import ActivationsStore, LanguageModelSAERunnerConfig, run_evals
from saecore_source_llm.evals import EvalConfig, get_eval_everything_config
from saecore_source_llm.model_loading import transformer_lens_major

from saecore import SAE
from saecore.errors import ConfigError
from saecore.training.activation_scaler import ActivationScaler

HOOK = "transformer.h.0"
CONTEXT = 16


@pytest.fixture(scope="module")
def sae(hf_model: Any) -> Any:
    torch.manual_seed(0)
    sae = SAE.from_dict({"architecture": "standard", "d_in": 32, "d_sae": 64,
                         "metadata": {"hook_name": HOOK, "context_size": CONTEXT, "prepend_bos": True}})
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.5)
    return sae


def make_store(hf_model: Any, sae: Any, text_dir: Path, **options: Any) -> ActivationsStore:
    return ActivationsStore.from_sae(hf_model, sae, dataset=str(text_dir), streaming=False,
                                     store_batch_size_prompts=4, **options)


def test_reset_input_dataset_reads_the_first_prompts_again(hf_model: Any, sae: Any, text_dir: Path) -> None:
    store = make_store(hf_model, sae, text_dir, train_batch_size_tokens=32)
    first = store.get_batch_tokens()
    assert not torch.equal(store.get_batch_tokens(), first)
    store.reset_input_dataset()
    torch.testing.assert_close(store.get_batch_tokens(), first, rtol=0, atol=0)


def test_a_reset_keeps_the_buffered_activations_resumable(hf_model: Any, sae: Any, text_dir: Path) -> None:
    store = make_store(hf_model, sae, text_dir, train_batch_size_tokens=32)
    store.next_batch()
    store.reset_input_dataset()
    state = store.source.state_dict()
    assert len(state["chunk_ids"]) == len(state["chunk_tokens"]) > 0


def test_raise_at_epoch_end_stops_the_batch_that_reaches_the_end(hf_model: Any, sae: Any, text_dir: Path) -> None:
    store = make_store(hf_model, sae, text_dir)
    first = store.get_batch_tokens()
    with pytest.raises(StopIteration), pytest.warns(UserWarning, match="the dataset ran out"):
        for _ in range(1000):
            store.get_batch_tokens(raise_at_epoch_end=True)
    torch.testing.assert_close(store.get_batch_tokens(), first, rtol=0, atol=0)
    assert store.source.stream.position.epoch == 1


def test_batches_and_activations_have_saelens_shapes(hf_model: Any, sae: Any, text_dir: Path,
                                                     tokenizer: Any) -> None:
    store = make_store(hf_model, sae, text_dir, train_batch_size_tokens=32)
    assert store.next_batch().shape == next(store).shape == (32, 32)
    tokens = store.get_batch_tokens(3)
    assert tokens.shape == (3, CONTEXT) and (tokens[:, 0] == tokenizer.bos_token_id).all()
    assert store.get_activations(tokens).shape == (3, CONTEXT, 32)
    store.exclude_special_tokens = torch.tensor([tokenizer.bos_token_id])
    activations, token_ids = store.get_raw_llm_batch()
    kept = int((token_ids != tokenizer.bos_token_id).sum())
    assert activations.shape == (4 * CONTEXT, 32) and kept < 4 * CONTEXT
    assert store.get_filtered_llm_batch().shape[0] < 4 * CONTEXT


def test_model_kwargs_and_chat_formatting_reach_the_llm_source(hf_model: Any, text_dir: Path) -> None:
    store = ActivationsStore(hf_model, str(text_dir), False, HOOK, None, CONTEXT, 32, 8, 10**6, 4, 64, True, "none",
                             "cpu", "float32", model_kwargs={"use_cache": False})
    assert store.model_kwargs == store.source.cfg.model_kwargs == {"use_cache": False}
    assert store.get_activations(store.get_batch_tokens(2)).shape == (2, CONTEXT, 32)
    # The prompts go through the tokenizer's chat template, which the tiny tokenizer lacks.
    with pytest.raises(ValueError, match=r"tokenizer\.chat_template is not set"):
        ActivationsStore(hf_model, str(text_dir), False, HOOK, None, CONTEXT, 32, 8, 10**6, 4, 64, True, "none",
                         "cpu", "float32", use_chat_formatting=True).get_batch_tokens()


def test_trusting_remote_code_warns_that_it_has_no_effect(hf_model: Any, sae: Any, text_dir: Path) -> None:
    with pytest.warns(UserWarning, match="dataset_trust_remote_code=True has no effect"):
        make_store(hf_model, sae, text_dir, dataset_trust_remote_code=True)


def test_a_wrong_d_in_names_the_hook_width(hf_model: Any, text_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"d_in=8 but 'transformer\.h\.0' of the model gives activations of width 32"):
        ActivationsStore(hf_model, str(text_dir), False, HOOK, None, CONTEXT, 8, 8, 10**6, 4, 64, True, "none",
                         "cpu", "float32")


def test_from_config_builds_the_store_a_training_config_describes(hf_model: Any, text_dir: Path) -> None:
    cfg = LanguageModelSAERunnerConfig(
        sae={"architecture": "standard", "d_in": 32, "d_sae": 64}, hook_name=HOOK, context_size=CONTEXT,
        dataset_path="unused", store_batch_size_prompts=2, n_batches_in_buffer=4, train_batch_size_tokens=16,
        seqpos_slice=(1, None), exclude_special_tokens=True,
    )
    from datasets import load_dataset

    dataset = load_dataset("json", data_dir=str(text_dir), split="train")
    store = ActivationsStore.from_config(hf_model, cfg, override_dataset=dataset)
    assert (store.hook_name, store.context_size, store.train_batch_size_tokens) == (HOOK, CONTEXT, 16)
    assert store.dataset is dataset and store.training_context_size == CONTEXT - 1
    assert store.get_activations(store.get_batch_tokens()).shape == (2, CONTEXT - 1, 32)
    assert store.exclude_special_tokens is not None and store.next_batch().shape == (16, 32)


def test_run_evals_ignores_the_tokenizers_special_tokens(hf_model: Any, sae: Any, text_dir: Path) -> None:
    config = get_eval_everything_config(batch_size_prompts=3, n_eval_reconstruction_batches=2)
    results = {}
    for exclude in (True, False):
        store = make_store(hf_model, sae, text_dir)
        results[exclude] = run_evals(sae, store, hf_model, ActivationScaler(), config, exclude_special_tokens=exclude)
    (ignoring, features), (counting, _) = results[True], results[False]
    assert set(ignoring) == {"model_behavior_preservation", "model_performance_preservation",
                             "reconstruction_quality", "shrinkage", "sparsity", "token_stats"}
    assert ignoring["sparsity"]["l0"] != counting["sparsity"]["l0"]
    assert ignoring["token_stats"] == {"total_tokens_eval_reconstruction": 2 * 3 * CONTEXT,
                                       "total_tokens_eval_sparsity_variance": 3 * CONTEXT}
    assert len(features["feature_density"]) == len(features["encoder_norm"]) == 64


def test_verbose_run_evals_shows_progress(hf_model: Any, sae: Any, text_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = EvalConfig(compute_ce_loss=True, compute_sparsity_metrics=True, n_eval_reconstruction_batches=1)
    run_evals(sae, make_store(hf_model, sae, text_dir), hf_model, ActivationScaler(), config, verbose=True)
    shown = capsys.readouterr().err
    assert "Reconstruction batches" in shown and "Sparsity and variance batches" in shown


def test_run_evals_refuses_what_it_cannot_do(hf_model: Any, sae: Any, text_dir: Path) -> None:
    store = make_store(hf_model, sae, text_dir)
    no_batches = EvalConfig(compute_kl=True, n_eval_reconstruction_batches=0)
    with pytest.raises(ConfigError, match="n_eval_reconstruction_batches=0 must be at least 1"):
        run_evals(sae, store, hf_model, ActivationScaler(), no_batches)
    with pytest.raises(ConfigError, match=r"model_kwargs=.*not supported"):
        run_evals(sae, store, hf_model, ActivationScaler(), EvalConfig(compute_ce_loss=True),
                  model_kwargs={"attention_mask": None})
    assert run_evals(sae, store, hf_model, ActivationScaler(), EvalConfig()) == (
        {"token_stats": {"total_tokens_eval_reconstruction": 10 * 4 * CONTEXT,
                         "total_tokens_eval_sparsity_variance": 4 * CONTEXT}}, {})


def test_a_saved_position_resumes_after_the_documents_used(hf_model: Any, sae: Any, tmp_path: Path) -> None:
    from datasets import Dataset

    rows = torch.arange(40 * CONTEXT).reshape(40, CONTEXT) % 200
    dataset = Dataset.from_dict({"tokens": rows.tolist()})
    store = ActivationsStore.from_sae(hf_model, sae, dataset=dataset, streaming=False, store_batch_size_prompts=4)
    for _ in range(3):
        store.get_batch_tokens()
    store.save(str(tmp_path / "state.safetensors"))
    resumed = ActivationsStore.from_sae(hf_model, sae, dataset=dataset, streaming=False, store_batch_size_prompts=4)
    resumed.load(str(tmp_path / "state.safetensors"))
    assert resumed.n_dataset_processed == store.n_dataset_processed == 12
    torch.testing.assert_close(resumed.get_batch_tokens(), store.get_batch_tokens(), rtol=0, atol=0)
    torch.testing.assert_close(resumed.get_batch_tokens(1), rows[16:17], rtol=0, atol=0)


def test_a_multi_hook_store_checks_its_hooks(hf_model: Any, text_dir: Path) -> None:
    hooks = ["transformer.h.0", "transformer.h.1"]
    options: dict[str, Any] = {"dataset": str(text_dir), "hook_names": hooks, "streaming": False,
                               "context_size": CONTEXT, "store_batch_size_prompts": 4}
    with pytest.raises(ConfigError, match=r"hook_d_ins has no width for \['transformer\.h\.1'\]"):
        ActivationsStore.from_config_multi_hook(hf_model, hook_d_ins={hooks[0]: 32}, **options)
    wrong_width = r"hook_d_ins gives \{'transformer\.h\.1': 8\}.*widths \{'transformer\.h\.1': 32\}"
    with pytest.raises(ConfigError, match=wrong_width):
        ActivationsStore.from_config_multi_hook(hf_model, hook_d_ins={hooks[0]: 32, hooks[1]: 8}, **options)
    with pytest.raises(ConfigError, match="reads heads flattened"):
        ActivationsStore.from_config_multi_hook(hf_model, hook_d_ins=dict.fromkeys(hooks, 32),
                                                hook_head_indices={hooks[1]: 0}, **options)
    store = ActivationsStore.from_config_multi_hook(hf_model, hook_d_ins=dict.fromkeys(hooks, 32), **options)
    activations = store.get_multi_hook_activations(store.get_batch_tokens(2))
    assert {hook: tuple(values.shape) for hook, values in activations.items()} == dict.fromkeys(hooks, (2, CONTEXT, 32))


@pytest.mark.skipif(transformer_lens_major() is None, reason="transformer-lens not installed")
def test_run_evals_gives_the_same_metrics_on_a_transformer_bridge(
    hf_model: Any, model_dir: Path, text_dir: Path, sae: Any
) -> None:
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(model_dir), device="cpu")
    on_bridge = SAE.from_dict({**sae.cfg.to_dict(), "metadata": {**sae.cfg.metadata.to_dict(),
                                                                "hook_name": "blocks.0.hook_resid_post"}})
    on_bridge.load_state_dict(sae.state_dict())
    config = get_eval_everything_config(batch_size_prompts=3, n_eval_reconstruction_batches=2)
    results = [run_evals(evaluated, make_store(model, evaluated, text_dir), model, ActivationScaler(), config)[0]
               for model, evaluated in ((hf_model, sae), (bridge, on_bridge))]
    for group, values in results[0].items():
        assert results[1][group] == pytest.approx(values, rel=1e-4, abs=1e-6), group



def test_the_evals_command_line_evaluates_a_pretrained_release(
    model_dir: Path, text_dir: Path, sae: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fixtures.hub_cache import add_repo_snapshot, offline_hub_cache
    from fixtures.in_process import ReleasePlugin
    from saecore_source_llm.evals import run_evals_cli

    from saecore.registry import add_in_process_plugin, remove_in_process_plugin

    published = SAE.from_dict({**sae.cfg.to_dict(), "metadata": {
        **sae.cfg.metadata.to_dict(), "model_name": str(model_dir), "hook_name": "blocks.0.hook_resid_post"}})
    published.load_state_dict(sae.state_dict())
    published.save_model(tmp_path / "sae")
    cache = offline_hub_cache(tmp_path, monkeypatch)
    add_repo_snapshot(cache, "org/tiny-saes", {f"layer_0/{f.name}": f for f in (tmp_path / "sae").iterdir()})
    add_in_process_plugin(ReleasePlugin("tiny-res", "org/tiny-saes", {"blocks.0": {"path": "layer_0"}}), "tiny")
    try:
        run_evals_cli(["tiny-res", "blocks\\.0", "--batch_size_prompts", "2", "--n_eval_reconstruction_batches", "1",
                       "--datasets", str(text_dir), "--ctx_lens", "16", "--output_dir", str(tmp_path / "out")])
    finally:
        remove_in_process_plugin("tiny")
    assert "Total number of SAE IDs: 1" in capsys.readouterr().out
    [result] = json.loads((tmp_path / "out" / "all_eval_results.json").read_text())
    assert result["unique_id"] == "tiny-res-blocks.0" and result["eval_cfg"]["context_size"] == 16
    assert set(result["metrics"]) == {"model_behavior_preservation", "model_performance_preservation",
                                      "reconstruction_quality", "shrinkage", "sparsity", "token_stats"}
    assert (tmp_path / "out" / "all_eval_results.csv").is_file()
