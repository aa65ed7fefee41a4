"""SAELens 6's ``MultiSAEEvaluator``: ``run_evals`` for each SAE of a run that trains several SAEs at once.

Each SAE is spliced in at its own hook (``sae.cfg.metadata.hook_name``) on prompts drawn
from one shared store; the store only supplies prompts here. A user's per-SAE evaluator
can run after the built-in evals, on that SAE's hook's column of each batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from saecore_source_llm.activations_store import ActivationsStore
from saecore_source_llm.evals import EvalConfig, run_evals

PerSAEEvaluator = Callable[[Any, Iterator[torch.Tensor], Any], dict[str, Any]]
"""``(sae, batches of its hook's activations, activation scaler) → metrics``."""


@dataclass
class MultiSAEEvaluator:
    """Metrics of several SAEs, each under its name: ``"<name>/<metric group>"``."""

    model: Any
    activations_store: ActivationsStore
    eval_batch_size_prompts: int | None
    n_eval_batches: int
    model_kwargs: Mapping[str, Any]
    user_evaluator: PerSAEEvaluator | None = None

    def __call__(
        self,
        saes: dict[str, Any],
        data_provider: Iterator[dict[str, torch.Tensor]],
        activation_scalers: dict[str, Any],
        hook_names: dict[str, str],
    ) -> dict[str, Any]:
        """CE-loss, shrinkage, sparsity and reconstruction metrics of each SAE, then the user evaluator's.

        ``data_provider`` yields batches as ``{hook name: activations}``; only the user
        evaluator reads it.
        """
        store_excludes = self.activations_store.exclude_special_tokens
        exclude: bool | list[int] = store_excludes.tolist() if store_excludes is not None else False
        eval_config = EvalConfig(
            batch_size_prompts=self.eval_batch_size_prompts,
            n_eval_reconstruction_batches=self.n_eval_batches,
            n_eval_sparsity_variance_batches=self.n_eval_batches,
            compute_ce_loss=True,
            compute_l2_norms=True,
            compute_sparsity_metrics=True,
            compute_variance_metrics=True,
        )
        results: dict[str, Any] = {}
        for name, sae in saes.items():
            metrics, _ = run_evals(sae, self.activations_store, self.model, activation_scalers[name], eval_config,
                                   model_kwargs=self.model_kwargs, exclude_special_tokens=exclude)
            results |= {f"{name}/{group}": values for group, values in metrics.items()}
        if self.user_evaluator is not None:
            for name, sae in saes.items():
                column = (batch[hook_names[name]] for batch in data_provider)
                metrics = self.user_evaluator(sae, column, activation_scalers[name])
                results |= {f"{name}/{key}": value for key, value in metrics.items()}
        return results
