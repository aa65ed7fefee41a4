"""SAELens 6's ``sae_lens.evals`` API: ``run_evals`` and ``EvalConfig`` over an :class:`ActivationsStore`.

The metric names, their groups (``model_behavior_preservation``, ``shrinkage``, ...) and the
prompts each metric is measured on are SAELens's: the reconstruction batches are drawn
from the store first, the sparsity and variance batches after them. The computations are
saecore's own: the spliced forward passes and per-position CE/KL of
:mod:`saecore_source_llm.spliced_evals` and the reconstruction sums of
:mod:`saecore.evals.reconstruction` (float64 sums; KL from logit differences).

As in SAELens, the SAE replaces the hook's activations at every position whose token is
not ignored, and the zero ablation replaces every position; the averages skip ignored
tokens. Where the values differ from SAELens 6.54, on purpose:

* ``feature_density`` and ``consistent_activation_heuristic`` are measured whenever the
  sparsity batches run (SAELens returns NaN lists unless
  ``compute_featurewise_density_statistics`` is set);
* ``model_kwargs`` must be empty: the model runs with its default arguments.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from saecore.errors import ConfigError
from saecore.evals.reconstruction import ReconstructionAccumulator
from saecore.loading.pretrained_saes_directory import get_pretrained_saes_directory
from saecore.sae import SAE
from saecore.training.activation_scaler import ActivationScaler
from saecore_source_llm.activations_store import ActivationsStore, hooked_model, special_token_ids
from saecore_source_llm.config import LLMSourceConfig
from saecore_source_llm.hooked_model import HookedModel
from saecore_source_llm.model_loading import HOOKED_TRANSFORMER, load_model, resolve_model_class
from saecore_source_llm.spliced_evals import (
    SpliceSite,
    divergences,
    next_token_losses,
    replacing,
    sae_reconstruction,
    zeros,
)


def get_library_version() -> str:
    """The installed saecore version ("unknown" without package metadata)."""
    try:
        return version("saecore")
    except PackageNotFoundError:
        return "unknown"


@functools.cache
def get_git_hash() -> str:
    """The short commit of the checkout saecore runs from ("unknown" outside a git checkout)."""
    import saecore

    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(saecore.__file__).parent,
                                capture_output=True, text=True, check=True)
    except (subprocess.CalledProcessError, OSError):
        return "unknown"
    return result.stdout.strip()


@dataclass
class EvalConfig:
    """Which metrics ``run_evals`` computes, on how many batches; every metric is off by default."""

    batch_size_prompts: int | None = None
    n_eval_reconstruction_batches: int = 10
    compute_kl: bool = False
    compute_ce_loss: bool = False
    n_eval_sparsity_variance_batches: int = 1
    compute_l2_norms: bool = False
    compute_sparsity_metrics: bool = False
    compute_variance_metrics: bool = False
    compute_featurewise_density_statistics: bool = False
    compute_featurewise_weight_based_metrics: bool = False
    library_version: str = field(default_factory=get_library_version)
    git_hash: str = field(default_factory=get_git_hash)


def get_eval_everything_config(
    batch_size_prompts: int | None = None,
    n_eval_reconstruction_batches: int = 10,
    n_eval_sparsity_variance_batches: int = 1,
) -> EvalConfig:
    """An EvalConfig with every metric on."""
    return EvalConfig(
        batch_size_prompts=batch_size_prompts,
        n_eval_reconstruction_batches=n_eval_reconstruction_batches,
        n_eval_sparsity_variance_batches=n_eval_sparsity_variance_batches,
        compute_kl=True,
        compute_ce_loss=True,
        compute_l2_norms=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=True,
        compute_featurewise_weight_based_metrics=True,
    )


@torch.no_grad()
def run_evals(
    sae: Any,
    activation_store: ActivationsStore,
    model: Any,
    activation_scaler: Any,
    eval_config: EvalConfig | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    exclude_special_tokens: Iterable[int] | bool = True,
    verbose: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics grouped as SAELens groups them, per-feature metrics)`` of ``sae`` on prompts from the store.

    ``exclude_special_tokens``: True ignores the tokenizer's special tokens, a list ignores
    those ids, False ignores none. ``verbose`` shows a progress bar per kind of batch.
    """
    eval_config = eval_config if eval_config is not None else EvalConfig()
    model = activation_store.source.model if model is activation_store.model else hooked_model(model)
    ignore_tokens = _ignored_tokens(model, exclude_special_tokens)
    batch_size = eval_config.batch_size_prompts or activation_store.store_batch_size_prompts
    reconstruction = eval_config.compute_kl or eval_config.compute_ce_loss
    if reconstruction and eval_config.n_eval_reconstruction_batches <= 0:
        raise ConfigError(f"eval_config.n_eval_reconstruction_batches={eval_config.n_eval_reconstruction_batches} "
                          "must be at least 1 when compute_kl or compute_ce_loss is set")
    sparsity_variance = (eval_config.compute_l2_norms or eval_config.compute_sparsity_metrics
                         or eval_config.compute_variance_metrics or eval_config.compute_featurewise_density_statistics)
    if sparsity_variance and eval_config.n_eval_sparsity_variance_batches <= 0:
        raise ConfigError(f"eval_config.n_eval_sparsity_variance_batches={eval_config.n_eval_sparsity_variance_batches}"
                          " must be at least 1 when an l2, sparsity, variance or density metric is set")
    groups: dict[str, dict[str, Any]] = {name: {} for name in (
        "model_behavior_preservation", "model_performance_preservation", "reconstruction_quality", "shrinkage",
        "sparsity", "token_stats")}
    feature_metrics: dict[str, Any] = {}
    with _hook_z_reshaping_off(sae):
        if reconstruction:
            downstream = get_downstream_reconstruction_metrics(
                sae, model, activation_store, activation_scaler, compute_kl=eval_config.compute_kl,
                compute_ce_loss=eval_config.compute_ce_loss, n_batches=eval_config.n_eval_reconstruction_batches,
                eval_batch_size_prompts=batch_size, ignore_tokens=ignore_tokens, verbose=verbose,
                model_kwargs=model_kwargs,
            )
            groups["model_behavior_preservation"] = _pick(downstream, "kl_div_score", "kl_div_with_ablation",
                                                          "kl_div_with_sae")
            groups["model_performance_preservation"] = _pick(downstream, "ce_loss_score", "ce_loss_with_ablation",
                                                             "ce_loss_with_sae", "ce_loss_without_sae")
        if sparsity_variance:
            scalars, feature_metrics = get_sparsity_and_variance_metrics(
                sae, model, activation_store, activation_scaler,
                n_batches=eval_config.n_eval_sparsity_variance_batches,
                compute_l2_norms=eval_config.compute_l2_norms,
                compute_sparsity_metrics=eval_config.compute_sparsity_metrics,
                compute_variance_metrics=eval_config.compute_variance_metrics,
                compute_featurewise_density_statistics=eval_config.compute_featurewise_density_statistics,
                eval_batch_size_prompts=batch_size, model_kwargs=model_kwargs, ignore_tokens=ignore_tokens,
                verbose=verbose,
            )
            groups["shrinkage"] = _pick(scalars, "l2_norm_in", "l2_norm_out", "l2_ratio",
                                        "relative_reconstruction_bias")
            groups["sparsity"] = _pick(scalars, "l0", "l1")
            groups["reconstruction_quality"] = _pick(scalars, "explained_variance", "explained_variance_legacy",
                                                     "mse", "cossim")
    if eval_config.compute_featurewise_weight_based_metrics:
        feature_metrics |= get_featurewise_weight_based_metrics(sae)
    tokens_per_batch = activation_store.context_size * batch_size
    groups["token_stats"] = {
        "total_tokens_eval_reconstruction": tokens_per_batch * eval_config.n_eval_reconstruction_batches,
        "total_tokens_eval_sparsity_variance": tokens_per_batch * eval_config.n_eval_sparsity_variance_batches,
    }
    return {name: values for name, values in groups.items() if values}, feature_metrics


def get_featurewise_weight_based_metrics(sae: Any) -> dict[str, Any]:
    """Per latent: encoder norm, cosine similarity of its encoder and decoder directions, encoder bias."""
    w_enc, w_dec = sae.W_enc.detach(), sae.W_dec.detach()
    metrics: dict[str, Any] = {
        "encoder_norm": w_enc.norm(dim=0).cpu().tolist(),
        "encoder_decoder_cosine_sim": torch.nn.functional.cosine_similarity(w_enc.T, w_dec, dim=-1).cpu().tolist(),
    }
    b_enc = getattr(sae, "b_enc", None)
    if b_enc is not None:
        metrics["encoder_bias"] = b_enc.detach().cpu().tolist()
    return metrics


def get_downstream_reconstruction_metrics(
    sae: Any,
    model: Any,
    activation_store: ActivationsStore,
    activation_scaler: Any,
    compute_kl: bool,
    compute_ce_loss: bool,
    n_batches: int,
    eval_batch_size_prompts: int,
    ignore_tokens: list[int] | None = None,
    verbose: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """CE-loss and KL metrics, averaged over the non-ignored positions of ``n_batches`` batches from the store."""
    per_position: dict[str, list[torch.Tensor]] = defaultdict(list)
    model = hooked_model(model)
    for _ in _batches(n_batches, "Reconstruction batches", verbose):
        tokens = activation_store.get_batch_tokens(eval_batch_size_prompts)
        keep = _kept(tokens, ignore_tokens)
        losses = get_recons_loss(sae, model, activation_scaler, tokens, compute_kl=compute_kl,
                                 compute_ce_loss=compute_ce_loss, ignore_tokens=ignore_tokens,
                                 model_kwargs=model_kwargs)
        for name, values in losses.items():
            per_position[name].append(values[keep[:, :values.shape[1]].to(values.device)])
    metrics = {name: float(torch.cat(values).mean()) for name, values in per_position.items()}
    if compute_kl:
        metrics["kl_div_score"] = _score(metrics["kl_div_with_ablation"] - metrics["kl_div_with_sae"],
                                         metrics["kl_div_with_ablation"])
    if compute_ce_loss:
        metrics["ce_loss_score"] = _score(metrics["ce_loss_with_ablation"] - metrics["ce_loss_with_sae"],
                                          metrics["ce_loss_with_ablation"] - metrics["ce_loss_without_sae"])
    return metrics


@torch.no_grad()
def get_recons_loss(
    sae: Any,
    model: Any,
    activation_scaler: Any,
    batch_tokens: torch.Tensor,
    compute_kl: bool,
    compute_ce_loss: bool,
    ignore_tokens: list[int] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    hook_name: str | None = None,
) -> dict[str, torch.Tensor]:
    """Per-position metrics of one batch: CE losses ``[prompts, pos - 1]`` and KL divergences ``[prompts, pos]``.

    The SAE replaces the activations at the positions whose token is not in
    ``ignore_tokens``; the zero ablation replaces every position.
    """
    _refuse_model_kwargs(model_kwargs)
    hooked = hooked_model(model)
    hook_name = hook_name or sae.cfg.metadata.hook_name
    if hook_name is None:
        raise ConfigError("the SAE's metadata has no hook_name; pass hook_name")
    site = SpliceSite(hook_name, sae.cfg.metadata.hook_head_index)
    tokens = batch_tokens.to(hooked.input_device)
    keep = _kept(tokens, ignore_tokens)
    everywhere = torch.ones_like(keep)
    reconstruct = sae_reconstruction(sae, getattr(activation_scaler, "scaling_factor", None))
    takes_heads = getattr(sae, "reshape_hook_z", False)
    clean = hooked.logits(tokens)
    spliced = hooked.logits(tokens, [(hook_name, replacing(site, keep, reconstruct, sae_takes_heads=takes_heads))])
    ablated = hooked.logits(tokens, [(hook_name, replacing(site, everywhere, zeros, sae_takes_heads=takes_heads))])
    ce_increase_sae, kl_sae = divergences(clean, spliced, tokens)
    ce_increase_ablation, kl_ablation = divergences(clean, ablated, tokens)
    metrics: dict[str, torch.Tensor] = {}
    if compute_kl:
        metrics["kl_div_with_sae"] = kl_sae
        metrics["kl_div_with_ablation"] = kl_ablation
    if compute_ce_loss:
        clean_ce = next_token_losses(clean, tokens)[:, :-1]
        metrics["ce_loss_with_sae"] = clean_ce + ce_increase_sae[:, :-1]
        metrics["ce_loss_without_sae"] = clean_ce
        metrics["ce_loss_with_ablation"] = clean_ce + ce_increase_ablation[:, :-1]
    return metrics


@torch.no_grad()
def get_sparsity_and_variance_metrics(
    sae: Any,
    model: Any,
    activation_store: ActivationsStore,
    activation_scaler: Any,
    n_batches: int,
    compute_l2_norms: bool,
    compute_sparsity_metrics: bool,
    compute_variance_metrics: bool,
    compute_featurewise_density_statistics: bool,
    eval_batch_size_prompts: int,
    model_kwargs: Mapping[str, Any] | None = None,
    ignore_tokens: list[int] | None = None,
    verbose: bool = False,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Reconstruction, shrinkage and sparsity scalars, and per-latent density, over ``n_batches`` store batches.

    Every position of each prompt is evaluated except those at ``ignore_tokens``.
    """
    _refuse_model_kwargs(model_kwargs)
    hooked = hooked_model(model)
    hook_name, head_index = sae.cfg.metadata.hook_name, sae.cfg.metadata.hook_head_index
    d_sae = sae.cfg.d_sae
    overall = ReconstructionAccumulator(d_sae)
    batch_biases: list[float] = []
    firing_tokens = torch.zeros(d_sae, dtype=torch.float64)
    firing_prompts = torch.zeros(d_sae, dtype=torch.float64)
    for _ in _batches(n_batches, "Sparsity and variance batches", verbose):
        tokens = activation_store.get_batch_tokens(eval_batch_size_prompts)
        raw = hooked.activations(tokens.to(hooked.input_device), [hook_name])[0]
        if raw.ndim == 4:
            raw = raw[:, :, head_index] if head_index is not None else raw.flatten(2)
        feature_acts = sae.encode(activation_scaler.scale(raw).to(sae.device))
        if feature_acts.is_sparse:
            feature_acts = feature_acts.to_dense()
        sae_out = activation_scaler.unscale(sae.decode(feature_acts).to(raw.device))
        keep = _kept(tokens, ignore_tokens)
        rows = keep.reshape(-1)
        sae_in = raw.reshape(-1, raw.shape[-1])[rows.to(raw.device)]
        kept_out = sae_out.reshape(-1, sae_out.shape[-1])[rows.to(sae_out.device)]
        kept_acts = feature_acts.reshape(-1, d_sae)[rows.to(feature_acts.device)]
        overall.add_batch(sae_in, kept_out, kept_acts)
        batch = ReconstructionAccumulator(d_sae)
        batch.add_batch(sae_in, kept_out, kept_acts)
        batch_biases.append(batch.compute().relative_reconstruction_bias)
        per_prompt = ((feature_acts != 0) & keep.to(feature_acts.device)[..., None]).sum(dim=1).double().cpu()
        firing_tokens += per_prompt.sum(dim=0)
        firing_prompts += (per_prompt > 0).sum(dim=0)
    result = overall.compute()
    metrics: dict[str, float] = {}
    if compute_l2_norms:
        metrics |= {"l2_norm_in": result.l2_norm_in, "l2_norm_out": result.l2_norm_out, "l2_ratio": result.l2_ratio,
                    "relative_reconstruction_bias": sum(batch_biases) / len(batch_biases)}
    if compute_sparsity_metrics:
        metrics |= {"l0": result.l0, "l1": result.l1}
    if compute_variance_metrics:
        metrics |= {"explained_variance": result.explained_variance,
                    "explained_variance_legacy": result.explained_variance_legacy,
                    "mse": result.mse, "cossim": result.cossim}
    feature_metrics = {
        "feature_density": result.feature_density.tolist(),
        "consistent_activation_heuristic": (firing_tokens / firing_prompts).tolist(),
    }
    return metrics, feature_metrics


def all_loadable_saes() -> list[tuple[str, str, float, float]]:
    """``(release, sae_id, expected explained variance, expected L0)`` of every SAE in the pretrained directory."""
    return [
        (release, sae_id, lookup.expected_var_explained[sae_id], lookup.expected_l0[sae_id])
        for release, lookup in get_pretrained_saes_directory().items()
        for sae_id in lookup.saes_map
    ]


def get_saes_from_regex(sae_regex_pattern: str, sae_block_pattern: str) -> list[tuple[str, str, float, float]]:
    """The ``all_loadable_saes`` entries whose release and SAE id fully match the two patterns."""
    release_pattern, sae_pattern = re.compile(sae_regex_pattern), re.compile(sae_block_pattern)
    return [entry for entry in all_loadable_saes()
            if release_pattern.fullmatch(entry[0]) and sae_pattern.fullmatch(entry[1])]


UNPROCESSED_HOOKED_TRANSFORMER = {"fold_ln": False, "center_writing_weights": False, "center_unembed": False,
                                  "fold_value_biases": False, "refactor_factored_attn_matrices": False}
"""HookedTransformer options that keep the weights as published (SAELens's ``from_pretrained_no_processing``)."""


def multiple_evals(
    sae_regex_pattern: str,
    sae_block_pattern: str,
    n_eval_reconstruction_batches: int,
    n_eval_sparsity_variance_batches: int,
    eval_batch_size_prompts: int = 8,
    datasets: Sequence[str] = ("Skylion007/openwebtext",),
    dataset_trust_remote_code: bool = False,
    ctx_lens: Sequence[int] = (128,),
    output_dir: str = "eval_results",
    verbose: bool = False,
) -> list[dict[str, Any]]:
    """Every metric of each pretrained SAE whose release and id match the patterns, per dataset and context size.

    Each SAE comes from its release (the Hub or its cache) and runs on the model its
    metadata names, loaded with its weights as published; the store reads the dataset
    shuffled with seed 42. ``output_dir`` is created; ``process_results`` writes there.
    """
    selected = get_saes_from_regex(sae_regex_pattern, sae_block_pattern)
    if not selected:
        raise ConfigError(f"no pretrained SAE matches the release pattern {sae_regex_pattern!r} and the SAE id "
                          f"pattern {sae_block_pattern!r} (all_loadable_saes() lists them)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    eval_config = get_eval_everything_config(eval_batch_size_prompts, n_eval_reconstruction_batches,
                                             n_eval_sparsity_variance_batches)
    results: list[dict[str, Any]] = []
    model, model_name = None, None
    for release, sae_id, _, _ in selected:
        sae = SAE.from_pretrained(release, sae_id, device=device)
        if model is None or sae.cfg.metadata.model_name != model_name:
            model_name = sae.cfg.metadata.model_name
            model = _unprocessed_model(sae.cfg.metadata.to_dict(), device)
        for context_size in ctx_lens:
            for dataset in datasets:
                store = ActivationsStore.from_sae(model, sae, context_size=context_size, dataset=dataset,
                                                  dataset_trust_remote_code=dataset_trust_remote_code, device=device)
                store.shuffle_input_dataset(seed=42)
                result = nested_dict()
                result["unique_id"] = f"{release}-{sae_id}"
                result["sae_set"] = release
                result["sae_id"] = sae_id
                result["eval_cfg"] |= {"context_size": context_size, "dataset": dataset,
                                       "library_version": eval_config.library_version,
                                       "git_hash": eval_config.git_hash}
                metrics, feature_metrics = run_evals(sae, store, model, ActivationScaler(), eval_config,
                                                     verbose=verbose)
                result["metrics"] = metrics
                result["feature_metrics"] = feature_metrics
                result["sae_cfg"] = sae.cfg.to_dict()
                result["eval_cfg"] |= vars(eval_config)
                results.append(result)
    return results


def _unprocessed_model(metadata: Mapping[str, Any], device: str) -> Any:
    """The model an SAE's metadata names, with a HookedTransformer's weights left unprocessed."""
    values = LLMSourceConfig.defaults_from_sae_metadata(metadata)
    if resolve_model_class(values.get("model_class_name", "auto")) == HOOKED_TRANSFORMER:
        values["model_from_pretrained_kwargs"] = {**UNPROCESSED_HOOKED_TRANSFORMER,
                                                  **(values.get("model_from_pretrained_kwargs") or {})}
    return load_model(LLMSourceConfig(**values, verbose=False), torch.device(device)).model


def run_evaluations(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``multiple_evals`` with the options ``process_args`` parses, after printing how many SAEs match."""
    selected = get_saes_from_regex(args.sae_regex_pattern, args.sae_block_pattern)
    print("Filtered SAEs based on provided patterns:")
    print(f"Number of SAE sets: {len({release for release, _, _, _ in selected})}")
    print(f"Total number of SAE IDs: {len(selected)}")
    return multiple_evals(
        sae_regex_pattern=args.sae_regex_pattern, sae_block_pattern=args.sae_block_pattern,
        n_eval_reconstruction_batches=args.n_eval_reconstruction_batches,
        n_eval_sparsity_variance_batches=args.n_eval_sparsity_variance_batches,
        eval_batch_size_prompts=args.batch_size_prompts, datasets=args.datasets,
        dataset_trust_remote_code=args.dataset_trust_remote_code, ctx_lens=args.ctx_lens,
        output_dir=args.output_dir, verbose=args.verbose,
    )


def process_args(args: list[str]) -> argparse.Namespace:
    """SAELens's evals command-line options."""
    parser = argparse.ArgumentParser(description="Run evaluations on pretrained SAEs")
    parser.add_argument("sae_regex_pattern", help="Regex the release name must fully match.")
    parser.add_argument("sae_block_pattern", help="Regex the SAE id must fully match.")
    parser.add_argument("--batch_size_prompts", type=int, default=16, help="Prompts per eval batch.")
    parser.add_argument("--n_eval_reconstruction_batches", type=int, default=10,
                        help="Batches for the CE-loss and KL metrics.")
    parser.add_argument("--n_eval_sparsity_variance_batches", type=int, default=1,
                        help="Batches for the sparsity, variance and shrinkage metrics.")
    for flag in ("compute_kl", "compute_ce_loss", "compute_l2_norms", "compute_sparsity_metrics",
                 "compute_variance_metrics", "compute_featurewise_density_statistics",
                 "compute_featurewise_weight_based_metrics"):
        parser.add_argument(f"--{flag}", action="store_true",
                            help="Accepted as SAELens accepts it; every metric is computed.")
    parser.add_argument("--datasets", nargs="+", default=["Skylion007/openwebtext"],
                        help="Datasets to evaluate on (Hub names or local data).")
    parser.add_argument("--dataset_trust_remote_code", action="store_true",
                        help="Accepted; it has no effect (datasets 4 and later run no dataset scripts).")
    parser.add_argument("--ctx_lens", nargs="+", type=int, default=[128], help="Context sizes to evaluate at.")
    parser.add_argument("--output_dir", default="eval_results", help="Folder the results are written to.")
    parser.add_argument("--verbose", action="store_true", help="Show progress bars.")
    return parser.parse_args(args)


def run_evals_cli(args: list[str]) -> None:
    """Parse ``args``, evaluate the matching SAEs and write the results to ``--output_dir``."""
    options = process_args(args)
    written = process_results(run_evaluations(options), options.output_dir)
    print("Evaluation complete. Output files:")
    print(f"Individual JSONs: {len(written['individual_jsons'])}")
    print(f"Combined JSON: {written['combined_json']}")
    print(f"CSV: {written['csv']}")


def nested_dict() -> defaultdict[Any, Any]:
    """A dict whose missing keys are nested dicts of the same kind."""
    return defaultdict(nested_dict)


def replace_nans_with_negative_one(obj: Any) -> Any:
    """``obj`` with every float NaN inside dicts and lists replaced by -1 (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {key: replace_nans_with_negative_one(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [replace_nans_with_negative_one(item) for item in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return -1
    return obj


def process_results(eval_results: list[dict[str, Any]], output_dir: str) -> dict[str, list[Path] | Path]:
    """Write each result (with ``unique_id`` and ``eval_cfg.context_size``/``dataset``) as JSON, all of them as
    one JSON and one CSV; NaNs become -1."""
    import pandas as pd

    output_path = Path(output_dir)
    output_path.mkdir(parents=True, exist_ok=True)
    cleaned = [replace_nans_with_negative_one(result) for result in eval_results]
    for result in cleaned:
        name = f"{result['unique_id']}_{result['eval_cfg']['context_size']}_{result['eval_cfg']['dataset']}.json"
        (output_path / name.replace("/", "_")).write_text(json.dumps(result, indent=2))
    combined = output_path / "all_eval_results.json"
    combined.write_text(json.dumps(cleaned, indent=2))
    csv = output_path / "all_eval_results.csv"
    pd.json_normalize(cleaned).to_csv(csv, index=False)
    return {"individual_jsons": list(output_path.glob("*.json")), "combined_json": combined, "csv": csv}


# -- helpers ---------------------------------------------------------------------------------
def _ignored_tokens(model: HookedModel, exclude_special_tokens: Iterable[int] | bool) -> list[int] | None:
    if exclude_special_tokens is True:
        return special_token_ids(model.tokenizer) if model.tokenizer is not None else None
    if exclude_special_tokens is False:
        return None
    return list(exclude_special_tokens) or None


def _kept(tokens: torch.Tensor, ignore_tokens: list[int] | None) -> torch.Tensor:
    """``[prompts, pos]`` bool: positions whose token is not ignored."""
    if not ignore_tokens:
        return torch.ones(tokens.shape, dtype=torch.bool)
    return ~torch.isin(tokens.cpu(), torch.tensor(ignore_tokens, dtype=tokens.dtype))


def _batches(count: int, description: str, verbose: bool) -> Iterable[int]:
    """``range(count)``, with a progress bar when ``verbose``."""
    from tqdm.auto import tqdm

    return tqdm(range(count), desc=description, leave=False, disable=not verbose)


def _pick(metrics: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {name: metrics[name] for name in names if name in metrics}


def _score(gain: float, gap: float) -> float:
    return gain / gap if gap != 0 else float("nan")


def _refuse_model_kwargs(model_kwargs: Mapping[str, Any] | None) -> None:
    if model_kwargs:
        raise ConfigError(f"model_kwargs={dict(model_kwargs)!r} is not supported: saecore's evals run the model with "
                          "its default arguments; leave model_kwargs empty")


@contextmanager
def _hook_z_reshaping_off(sae: Any) -> Iterator[None]:
    """The evals feed per-head activations flattened, so an SAE that reshapes hook_z inputs stops for the duration."""
    if not getattr(sae, "reshape_hook_z", False):
        yield
        return
    sae.reshape_hook_z = False
    try:
        yield
    finally:
        sae.reshape_hook_z = True
