"""Evaluations of trained SAEs (reconstruction, sparsity, recovery of known features).

SAELens's ``sae_lens.evals`` names (``run_evals``, ``EvalConfig``, ...) import from here
too; they run a language model, so ``saecore-source-llm`` provides them.
"""

from saecore.plugin_exports import plugin_exports

SAELENS_EVALS_NAMES = (
    "EvalConfig",
    "all_loadable_saes",
    "get_downstream_reconstruction_metrics",
    "get_eval_everything_config",
    "get_featurewise_weight_based_metrics",
    "get_git_hash",
    "get_library_version",
    "get_recons_loss",
    "get_saes_from_regex",
    "get_sparsity_and_variance_metrics",
    "multiple_evals",
    "nested_dict",
    "process_args",
    "process_results",
    "replace_nans_with_negative_one",
    "run_evals",
    "run_evals_cli",
    "run_evaluations",
)

__getattr__, __dir__ = plugin_exports(__name__, SAELENS_EVALS_NAMES, "saecore-source-llm")
