"""LanguageModelSAERunnerConfig against SAELens 6.54's: the same kwargs, the same SAE config dict,
the same LR schedule with warm restarts, and SAELens's behaviours of the training SAEs.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import pytest
import torch

pytest.importorskip("sae_lens")
pytest.importorskip("saecore_source_llm")

# Values for every SAELens field that has no default or whose default does not fit these tiny sizes.
KWARGS: dict[str, Any] = {
    "model_name": "gpt2", "hook_name": "blocks.2.hook_resid_post", "dataset_path": "org/data",
    "is_dataset_tokenized": True, "context_size": 64, "n_batches_in_buffer": 8, "store_batch_size_prompts": 4,
    "train_batch_size_tokens": 256, "training_tokens": 256 * 40, "lr": 1e-3, "lr_scheduler_name": "cosineannealing",
    "lr_warm_up_steps": 4, "lr_decay_steps": 6, "n_restart_cycles": 3, "use_cached_activations": False,
    "compile_llm": False, "compile_sae": False, "act_store_device": "cpu", "model_kwargs": {},
    "dataset_trust_remote_code": False, "hook_eval": "NOT_IN_USE", "checkpoint_path": None, "seed": 7,
}
SAE_FIELDS: dict[str, Any] = {"d_in": 32, "d_sae": 64, "l1_coefficient": 2.5, "l1_warm_up_steps": 3,
                              "normalize_activations": "expected_average_only_in", "apply_b_dec_to_input": False}


def configs(**overrides: Any) -> tuple[Any, Any]:
    import sae_lens

    import saecore

    values = {**KWARGS, **overrides}
    theirs = sae_lens.LanguageModelSAERunnerConfig(
        sae=sae_lens.StandardTrainingSAEConfig(**SAE_FIELDS), logger=sae_lens.LoggingConfig(log_to_wandb=False),
        verbose=False, **values,
    )
    ours = saecore.LanguageModelSAERunnerConfig(
        sae=saecore.StandardTrainingSAEConfig(**SAE_FIELDS), logger=saecore.LoggingConfig(log_to_wandb=False),
        verbose=False, **values,
    )
    return theirs, ours


def test_every_saelens_field_is_a_field_here() -> None:
    import sae_lens

    import saecore

    theirs = {f.name for f in dataclasses.fields(sae_lens.LanguageModelSAERunnerConfig) if f.init}
    assert theirs <= set(saecore.LanguageModelSAERunnerConfig.model_fields)
    assert {f.name for f in dataclasses.fields(sae_lens.LoggingConfig)} <= set(saecore.LoggingConfig.model_fields)


def test_the_same_kwargs_give_the_same_training_sae_cfg_dict() -> None:
    theirs, ours = configs()
    expected = theirs.get_training_sae_cfg_dict()
    got = ours.get_training_sae_cfg_dict()
    shared = set(expected) - {"metadata"}
    assert {key: got[key] for key in shared} == {key: expected[key] for key in shared}
    assert {key: getattr(ours, key) for key in KWARGS} == {key: getattr(theirs, key) for key in KWARGS}
    assert ours.total_training_steps == theirs.total_training_steps


def test_the_sae_built_from_the_cfg_dict_is_the_same_class_and_config() -> None:
    import sae_lens

    import saecore

    theirs, ours = configs()
    their_sae = sae_lens.TrainingSAE.from_dict(theirs.get_training_sae_cfg_dict())
    our_sae = saecore.TrainingSAE.from_dict(ours.get_training_sae_cfg_dict())
    assert type(their_sae).__name__ == type(our_sae).__name__ == "StandardTrainingSAE"
    assert our_sae.cfg.l1_coefficient == their_sae.cfg.l1_coefficient


def test_the_config_is_subscriptable_as_in_saelens() -> None:
    import sae_lens

    import saecore

    theirs = sae_lens.LanguageModelSAERunnerConfig[sae_lens.StandardTrainingSAEConfig]
    ours = saecore.LanguageModelSAERunnerConfig[saecore.StandardTrainingSAEConfig]
    assert ours(sae=saecore.StandardTrainingSAEConfig(d_in=8, d_sae=16)).sae.d_sae == theirs(
        sae=sae_lens.StandardTrainingSAEConfig(d_in=8, d_sae=16), verbose=False).sae.d_sae


def test_cosine_warm_restarts_follow_saelens_schedule() -> None:
    from sae_lens.training.optim import get_lr_scheduler

    from saecore.training.lr_schedule import LRSchedule

    total, warm_up, decay, cycles, lr, lr_end = 40, 4, 6, 3, 1e-3, 1e-4
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = get_lr_scheduler("cosineannealingwarmrestarts", optimizer, training_steps=total, lr=lr,
                                     warm_up_steps=warm_up, decay_steps=decay, lr_end=lr_end, num_cycles=cycles)
        expected = []
        for _ in range(total):
            expected.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    ours = LRSchedule(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr),
                      name="cosineannealingwarmrestarts", lr=lr, total_steps=total, warm_up_steps=warm_up,
                      decay_steps=decay, lr_end=lr_end, restart_cycles=cycles)
    assert [ours.lr_at(step) for step in range(total)] == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_batchtopk_training_encode_matches_saelens_at_init() -> None:
    import sae_lens

    batchtopk = pytest.importorskip("saecore_sae_batchtopk")
    fields = {"d_in": 16, "d_sae": 128, "k": 4}
    their_sae = sae_lens.BatchTopKTrainingSAE(sae_lens.BatchTopKTrainingSAEConfig(**fields))
    our_sae = batchtopk.BatchTopKTrainingSAE(batchtopk.BatchTopKTrainingSAEConfig(**fields))
    with torch.no_grad():
        for name, parameter in their_sae.named_parameters():
            dict(our_sae.named_parameters())[name].copy_(parameter)
        x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(our_sae.encode(x), their_sae.encode(x))
    assert float((our_sae.encode(x) > 0).sum(-1).float().mean()) == 4.0


def test_topk_training_forward_pass_on_3d_input_matches_saelens() -> None:
    import sae_lens

    import saecore

    fields = {"d_in": 8, "d_sae": 32, "k": 3}
    their_sae = sae_lens.TopKTrainingSAE(sae_lens.TopKTrainingSAEConfig(**fields))
    our_sae = saecore.TopKTrainingSAE(saecore.TopKTrainingSAEConfig(**fields))
    with torch.no_grad():
        for name, parameter in their_sae.named_parameters():
            dict(our_sae.named_parameters())[name].copy_(parameter)
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))
    dead = torch.zeros(32, dtype=torch.bool)
    theirs = their_sae.training_forward_pass(sae_lens.saes.sae.TrainStepInput(
        sae_in=x, coefficients={}, dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False))
    ours = our_sae.training_forward_pass(saecore.TrainStepInput(x, {}, dead, n_training_steps=0))
    torch.testing.assert_close(ours.sae_out, theirs.sae_out)
    torch.testing.assert_close(ours.loss, theirs.loss)


def test_unknown_release_is_a_value_error_in_both() -> None:
    import sae_lens

    import saecore

    for sae_class in (sae_lens.SAE, saecore.SAE):
        with pytest.raises(ValueError):
            sae_class.from_pretrained("wrong", "x")


def test_metadata_version_fields_are_filled_in_both() -> None:
    import sae_lens

    import saecore

    theirs = sae_lens.StandardSAEConfig(d_in=4, d_sae=8).metadata
    ours = saecore.StandardSAEConfig(d_in=4, d_sae=8).metadata
    for key in ("sae_lens_version", "sae_lens_training_version"):
        assert isinstance(getattr(theirs, key), str) and isinstance(getattr(ours, key), str)


def test_load_weights_from_checkpoint_reads_a_saelens_checkpoint(tmp_path: Any) -> None:
    import sae_lens

    import saecore

    theirs = sae_lens.StandardTrainingSAE(sae_lens.StandardTrainingSAEConfig(d_in=8, d_sae=16))
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.normal_()
    theirs.save_model(tmp_path)  # what SAELens's trainer writes into a checkpoint folder
    ours = saecore.StandardTrainingSAE(saecore.StandardTrainingSAEConfig(d_in=8, d_sae=16))
    ours.load_weights_from_checkpoint(tmp_path)
    for name, parameter in theirs.named_parameters():
        torch.testing.assert_close(dict(ours.named_parameters())[name], parameter, msg=name)


def test_the_multi_sae_config_takes_saelens_fields_and_kwargs() -> None:
    import sae_lens

    import saecore

    theirs = {f.name for f in dataclasses.fields(sae_lens.MultiSAETrainingRunnerConfig)
              if f.init and not f.name.startswith("_")}
    ours = saecore.MultiSAETrainingRunnerConfig
    assert theirs <= {*ours.model_fields, "hook_names"}
    shared = {key: value for key, value in KWARGS.items() if key in theirs}
    values = {**shared, "hook_names": {"a": "blocks.1.hook_resid_post", "b": "blocks.2.hook_resid_post"}}
    their_cfg = sae_lens.MultiSAETrainingRunnerConfig(
        saes={name: sae_lens.StandardTrainingSAEConfig(**SAE_FIELDS) for name in "ab"},
        logger=sae_lens.LoggingConfig(log_to_wandb=False), **values)
    our_cfg = ours(saes={name: saecore.StandardTrainingSAEConfig(**SAE_FIELDS) for name in "ab"},
                   logger=saecore.LoggingConfig(log_to_wandb=False), **values)
    assert our_cfg.hook_names_per_sae == their_cfg.hook_names_per_sae
    assert our_cfg.total_training_steps == their_cfg.total_training_steps


def test_a_saelens_runner_cfg_dict_loads_here() -> None:
    import saecore

    theirs, ours = configs()
    loaded = saecore.LanguageModelSAERunnerConfig.from_dict(theirs.to_dict())
    assert {key: getattr(loaded, key) for key in KWARGS if key != "checkpoint_path"} == {
        key: getattr(ours, key) for key in KWARGS if key != "checkpoint_path"}
    assert loaded.get_training_sae_cfg_dict()["l1_coefficient"] == theirs.sae.l1_coefficient
