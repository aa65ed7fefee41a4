"""SAELens's evals API and ActivationsStore give SAELens 6.54's values on saecore.

A SAELens user's evals script, written from SAELens's docs (build a store from the SAE,
take the eval-everything config, call ``run_evals``), runs once with ``sae_lens`` and once
with ``saecore`` as the only change, on the same tiny TransformerLens 3 model, text
dataset and SAE folder; every metric must agree to 1e-4 relative. The model has a real
tokenizer, so prompts carry BOS and separator tokens that the evals must ignore.
"""

from __future__ import annotations

import importlib
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from saelens_compat_support import randomize_parameters

sae_lens = pytest.importorskip("sae_lens")
transformer_lens = pytest.importorskip("transformer_lens")
datasets = pytest.importorskip("datasets")
saecore = pytest.importorskip("saecore")
pytest.importorskip("saecore_source_llm")

END_OF_TEXT = "<|endoftext|>"
WORDS = "the cat dog bird sat ran on under a mat tree river house big small red".split()
D_MODEL, N_HEADS, CONTEXT = 16, 4, 12
REL_TOL = 1e-4


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(80)]


@pytest.fixture(scope="module")
def model(corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A 2-layer HookedTransformer with random weights and a BPE tokenizer trained on the corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=END_OF_TEXT))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=[END_OF_TEXT],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    folder = tmp_path_factory.mktemp("tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                            unk_token=END_OF_TEXT).save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)  # TransformerLens needs the tokenizer's name_or_path
    cfg = transformer_lens.HookedTransformerConfig(n_layers=2, d_model=D_MODEL, n_ctx=32, d_head=D_MODEL // N_HEADS,
                                                   n_heads=N_HEADS, d_vocab=len(tokenizer), act_fn="gelu", seed=0)
    return transformer_lens.HookedTransformer(cfg, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def dataset(corpus: list[str]) -> Any:
    return datasets.Dataset.from_list([{"text": text} for text in corpus])


def save_sae(folder: Path, architecture: str, hook_name: str, **options: Any) -> Path:
    head_index = options.pop("hook_head_index", None)
    d_in = D_MODEL // N_HEADS if head_index is not None else D_MODEL
    sae = saecore.SAE.from_dict({
        "architecture": architecture, "d_in": d_in, "d_sae": 32, **options,
        "metadata": {"hook_name": hook_name, "hook_head_index": head_index, "context_size": CONTEXT,
                     "prepend_bos": True, "model_name": "tiny"},
    })
    randomize_parameters(sae)
    sae.save_model(folder)
    return folder


def saelens_evals_script(library: str, sae_folder: Path, model: Any, dataset: Any,
                         scaling_factor: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """SAELens's documented evals workflow; ``library`` is the only thing that changes."""
    imported = importlib.import_module(library)
    evals = importlib.import_module(f"{library}.evals")
    ActivationScaler = importlib.import_module(f"{library}.training.activation_scaler").ActivationScaler

    sae = imported.SAE.load_from_disk(sae_folder, device="cpu")
    activation_store = imported.ActivationsStore.from_sae(
        model=model, sae=sae, dataset=dataset, streaming=False, store_batch_size_prompts=4, n_batches_in_buffer=8,
        device="cpu",
    )
    eval_config = evals.get_eval_everything_config(
        batch_size_prompts=4, n_eval_reconstruction_batches=3, n_eval_sparsity_variance_batches=1,
    )
    return imported.run_evals(
        sae=sae, activation_store=activation_store, model=model,
        activation_scaler=ActivationScaler(scaling_factor=scaling_factor), eval_config=eval_config,
    )


def assert_close(ours: Any, theirs: Any, where: str) -> None:
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs), where
        for key in theirs:
            assert_close(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), where
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_close(a, b, f"{where}[{index}]")
    elif isinstance(theirs, str):
        assert ours == theirs, where
    elif isinstance(theirs, float) and math.isnan(theirs):
        assert math.isnan(ours), where
    else:
        assert ours == pytest.approx(theirs, rel=REL_TOL, abs=1e-6), where


CASES = [
    pytest.param("standard", "blocks.0.hook_resid_post", {}, None, id="standard-resid"),
    pytest.param("topk", "blocks.1.hook_mlp_out", {"k": 5}, 0.5, id="topk-mlp-scaled"),
    pytest.param("jumprelu", "blocks.0.attn.hook_z", {"reshape_activations": "hook_z"}, None, id="jumprelu-hook-z"),
    pytest.param("standard", "blocks.1.attn.hook_z", {"hook_head_index": 2}, None, id="standard-one-head"),
    # SAELens's run_evals takes a transcoder for an SAE at its input hook; saecore's does the same
    pytest.param("transcoder", "blocks.1.hook_resid_mid", {"apply_b_dec_to_input": False}, None, id="transcoder"),
]


@pytest.mark.parametrize(("architecture", "hook_name", "options", "scaling_factor"), CASES)
def test_the_saelens_evals_script_gives_saelens_metrics_on_saecore(
    architecture: str, hook_name: str, options: dict[str, Any], scaling_factor: float | None,
    model: Any, dataset: Any, tmp_path: Path,
) -> None:
    folder = save_sae(tmp_path, architecture, hook_name, **options)

    their_metrics, their_features = saelens_evals_script("sae_lens", folder, model, dataset, scaling_factor)
    our_metrics, our_features = saelens_evals_script("saecore", folder, model, dataset, scaling_factor)

    assert set(their_metrics) == {"model_behavior_preservation", "model_performance_preservation",
                                  "reconstruction_quality", "shrinkage", "sparsity", "token_stats"}
    assert_close(our_metrics, their_metrics, "metrics")
    assert_close(our_features, their_features, "feature_metrics")
    assert their_metrics["sparsity"]["l0"] > 0


def test_the_store_serves_saelens_prompts_and_activations(model: Any, dataset: Any, tmp_path: Path) -> None:
    folder = save_sae(tmp_path, "standard", "blocks.1.hook_resid_pre")

    def stores() -> list[Any]:
        return [importlib.import_module(library).ActivationsStore.from_sae(
            model=model, sae=importlib.import_module(library).SAE.load_from_disk(folder), dataset=dataset,
            streaming=False, store_batch_size_prompts=3) for library in ("sae_lens", "saecore")]

    in_order = stores()
    for _ in range(4):
        theirs, ours = (store.get_batch_tokens() for store in in_order)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.testing.assert_close(in_order[1].get_activations(theirs), in_order[0].get_activations(theirs))
    shuffled = stores()
    for store in shuffled:
        store.shuffle_input_dataset(seed=7)
    theirs, ours = (store.get_batch_tokens(5) for store in shuffled)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert ours.shape == (5, CONTEXT) and (ours[:, 0] == model.tokenizer.bos_token_id).all()
    assert not torch.equal(ours, in_order[1].source.eval_tokens()[:5])


def test_get_recons_loss_gives_saelens_per_position_values(model: Any, dataset: Any, tmp_path: Path) -> None:
    folder = save_sae(tmp_path, "standard", "blocks.0.hook_resid_post")
    tokens = saecore.ActivationsStore.from_sae(model, saecore.SAE.load_from_disk(folder), dataset=dataset,
                                               streaming=False).get_batch_tokens(3)
    bos = model.tokenizer.bos_token_id
    results = []
    for library in ("sae_lens", "saecore"):
        imported = importlib.import_module(library)
        scaler = importlib.import_module(f"{library}.training.activation_scaler").ActivationScaler()
        results.append(importlib.import_module(f"{library}.evals").get_recons_loss(
            imported.SAE.load_from_disk(folder), model, scaler, tokens, compute_kl=True, compute_ce_loss=True,
            ignore_tokens=[bos]))
    theirs, ours = results
    assert set(ours) == set(theirs)
    for name, values in theirs.items():
        torch.testing.assert_close(ours[name].float(), values.float(), rtol=REL_TOL, atol=1e-5, msg=name)


def test_multi_sae_evaluator_gives_saelens_metrics(model: Any, dataset: Any, tmp_path: Path) -> None:
    hooks = {"resid": "blocks.0.hook_resid_post", "mlp": "blocks.1.hook_mlp_out"}
    folders = {name: save_sae(tmp_path / name, "standard", hook) for name, hook in hooks.items()}
    batch = {hook: torch.full((2, D_MODEL), float(index)) for index, hook in enumerate(hooks.values())}

    def user_evaluator(sae: Any, batches: Any, scaler: Any) -> dict[str, Any]:
        return {"first_batch_mean": float(next(batches).mean()), "hook": sae.cfg.metadata.hook_name}

    results = []
    for library in ("sae_lens", "saecore"):
        imported = importlib.import_module(library)
        scaler_class = importlib.import_module(f"{library}.training.activation_scaler").ActivationScaler
        saes = {name: imported.SAE.load_from_disk(folder) for name, folder in folders.items()}
        store = imported.ActivationsStore.from_sae(model=model, sae=saes["resid"], dataset=dataset, streaming=False,
                                                   store_batch_size_prompts=4)
        evaluator = imported.MultiSAEEvaluator(model=model, activations_store=store, eval_batch_size_prompts=3,
                                               n_eval_batches=2, model_kwargs={}, user_evaluator=user_evaluator)
        results.append(evaluator(saes, iter([batch, batch]), {name: scaler_class() for name in saes}, hooks))
    theirs, ours = results
    assert "mlp/model_performance_preservation" in theirs and theirs["mlp/first_batch_mean"] == 1.0
    assert_close(ours, theirs, "multi-SAE metrics")


def test_raw_and_filtered_batches_are_saelens(model: Any, dataset: Any, tmp_path: Path) -> None:
    folder = save_sae(tmp_path, "standard", "blocks.0.hook_mlp_out")
    batches = []
    for library in ("sae_lens", "saecore"):
        imported = importlib.import_module(library)
        store = imported.ActivationsStore.from_sae(model=model, sae=imported.SAE.load_from_disk(folder),
                                                   dataset=dataset, streaming=False, store_batch_size_prompts=3)
        store.exclude_special_tokens = torch.tensor([model.tokenizer.bos_token_id])
        batches.append((*store.get_raw_llm_batch(), store.get_filtered_llm_batch()))
    for theirs, ours in zip(*batches):
        torch.testing.assert_close(ours, theirs)
    assert batches[1][2].shape[0] < batches[1][0].shape[0]


def test_result_files_are_saelens(tmp_path: Path) -> None:
    results = [{"unique_id": "release-blocks.0", "eval_cfg": {"context_size": 128, "dataset": "org/data"},
                "metrics": {"sparsity": {"l0": 3.5, "l1": float("nan")}}, "feature_metrics": {"density": [0.5, 1.0]}}]
    written = {}
    for library in ("sae_lens", "saecore"):
        evals = importlib.import_module(f"{library}.evals")
        assert evals.replace_nans_with_negative_one(results) == [
            {**results[0], "metrics": {"sparsity": {"l0": 3.5, "l1": -1}}}]
        files = evals.process_results(results, str(tmp_path / library))
        written[library] = {path.name: path.read_text() for path in (*files["individual_jsons"], files["csv"])}
        tree = evals.nested_dict()
        tree["a"]["b"]["c"] = 1
        assert tree["a"]["b"] == {"c": 1}
    assert written["saecore"] == written["sae_lens"]
    assert set(written["saecore"]) == {"release-blocks.0_128_org_data.json", "all_eval_results.json",
                                       "all_eval_results.csv"}


def test_the_saved_position_counts_documents_and_loads_in_saelens(model: Any, dataset: Any, tmp_path: Path) -> None:
    folder = save_sae(tmp_path / "sae", "standard", "blocks.0.hook_resid_post")

    def stores() -> list[Any]:
        return [importlib.import_module(library).ActivationsStore.from_sae(
            model=model, sae=importlib.import_module(library).SAE.load_from_disk(folder), dataset=dataset,
            streaming=False, store_batch_size_prompts=4) for library in ("sae_lens", "saecore")]

    theirs, ours = stores()
    boundaries = 0
    for _ in range(40):  # more than one pass over the 80 documents
        theirs.get_batch_tokens()
        ours.get_batch_tokens()
        # SAELens counts a document once the next one is started, saecore once a prompt ends it
        assert ours.n_dataset_processed - theirs.n_dataset_processed in (0, 1)
        boundaries += ours.n_dataset_processed - theirs.n_dataset_processed
    assert boundaries < 10
    assert ours.n_dataset_processed > len(dataset)
    ours.save_to_checkpoint(tmp_path)
    fresh_theirs, fresh_ours = stores()
    fresh_theirs.load_from_checkpoint(tmp_path)
    fresh_ours.load_from_checkpoint(tmp_path)
    target = ours.n_dataset_processed
    assert fresh_theirs.n_dataset_processed >= target
    assert fresh_ours.n_dataset_processed == target % len(dataset)


def test_a_multi_hook_store_serves_saelens_activations_aligned(model: Any, dataset: Any) -> None:
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_pre", "blocks.1.attn.hook_z"]
    widths = dict.fromkeys(hooks, D_MODEL)
    stores = [importlib.import_module(library).ActivationsStore.from_config_multi_hook(
        model, dataset=dataset, hook_names=hooks, hook_d_ins=widths, streaming=False, context_size=CONTEXT,
        store_batch_size_prompts=4, n_batches_in_buffer=8, train_batch_size_tokens=64)
        for library in ("sae_lens", "saecore")]

    theirs, ours = stores
    tokens = theirs.get_batch_tokens()
    torch.testing.assert_close(ours.get_batch_tokens(), tokens, rtol=0, atol=0)
    their_activations = theirs.get_multi_hook_activations(tokens)
    our_activations = ours.get_multi_hook_activations(tokens)
    assert list(our_activations) == hooks
    for hook in hooks:
        torch.testing.assert_close(our_activations[hook], their_activations[hook], msg=hook)
    batch = next(ours.get_multi_hook_data_loader())
    assert {hook: tuple(values.shape) for hook, values in batch.items()} == dict.fromkeys(hooks, (64, D_MODEL))
    # the residual stream after block 0 is the one entering block 1: rows stay aligned across hooks
    torch.testing.assert_close(batch[hooks[0]], batch[hooks[1]])
    assert ours.next_batch().shape == (64, D_MODEL)


def test_the_norm_scaling_estimate_is_saelens(model: Any, dataset: Any, tmp_path: Path) -> None:
    folder = save_sae(tmp_path, "standard", "blocks.0.hook_resid_post")
    store = saecore.ActivationsStore.from_sae(model=model, sae=saecore.SAE.load_from_disk(folder), dataset=dataset,
                                              streaming=False, store_batch_size_prompts=4, train_batch_size_tokens=48)
    batches = [store.next_batch() for _ in range(3)]
    factors = []
    for library in ("sae_lens", "saecore"):
        scaler = importlib.import_module(f"{library}.training.activation_scaler").ActivationScaler()
        scaler.estimate_scaling_factor(D_MODEL, iter(batches), n_batches_for_norm_estimate=3)
        factors.append(scaler.scaling_factor)
    assert factors[1] == pytest.approx(factors[0], rel=1e-6)


def test_the_directory_listings_of_loadable_saes_are_saelens() -> None:
    patterns = ("gpt2-small-res-jb", r"blocks\.[0-5]\.hook_resid_pre")
    theirs = importlib.import_module("sae_lens.evals").get_saes_from_regex(*patterns)
    ours = importlib.import_module("saecore.evals").get_saes_from_regex(*patterns)
    assert ours == theirs and len(ours) == 6
    their_all = set(importlib.import_module("sae_lens.evals").all_loadable_saes())
    assert their_all <= set(importlib.import_module("saecore.evals").all_loadable_saes())


def test_the_end_of_the_dataset_stops_a_batch_as_in_saelens(model: Any, dataset: Any, tmp_path: Path) -> None:
    folder = save_sae(tmp_path, "standard", "blocks.0.hook_resid_post")
    outcomes = []
    for library in ("sae_lens", "saecore"):
        imported = importlib.import_module(library)
        store = imported.ActivationsStore.from_sae(model=model, sae=imported.SAE.load_from_disk(folder),
                                                   dataset=dataset, streaming=False, store_batch_size_prompts=5)
        batches = 0
        with pytest.raises(StopIteration):
            while True:
                store.get_batch_tokens(raise_at_epoch_end=True)
                batches += 1
        outcomes.append((batches, store.get_batch_tokens()))
    (their_batches, their_next), (our_batches, our_next) = outcomes
    assert our_batches == their_batches > 0
    torch.testing.assert_close(our_next, their_next, rtol=0, atol=0)
