"""CE-loss and KL scores with the SAE spliced in, against a computation written here.

The reference runs the Hugging Face model itself with a forward hook that does the
replacement (a standard SAE's formula in float64), and computes cross-entropy and KL
divergence in float64 from the logits. TransformerLens models are checked against the
same reference (the bridge and a folder-loaded HookedTransformer reproduce the HF model),
and per-head hooks against the TransformerLens model's own hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import LLMSource, LLMSourceConfig, spliced_evals
from saecore_source_llm.model_loading import transformer_lens_major
from saecore_source_llm.spliced_evals import METRIC_NAMES

from saecore import StandardSAE, StandardSAEConfig
from saecore.errors import ConfigError

CONTEXT = 16
needs_transformer_lens = pytest.mark.skipif(transformer_lens_major() is None, reason="transformer-lens not installed")
needs_hooked_transformer = pytest.mark.skipif(transformer_lens_major() != 3,
                                              reason="HookedTransformer is tested with transformer-lens 3.x")


def make_source(text_dir: Path, **settings: Any) -> LLMSource:
    values: dict[str, Any] = {"dataset_path": str(text_dir), "context_size": CONTEXT, "store_batch_size_prompts": 4,
                              "n_batches_in_buffer": 3, "n_eval_batches": 2, "eval_batch_size_prompts": 3,
                              "verbose": False}
    values.update(settings)
    return LLMSource(LLMSourceConfig(**values), seed=0)


def random_sae(d_in: int, seed: int = 0) -> StandardSAE:
    """A standard SAE whose reconstruction is far from perfect but not zero."""
    torch.manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=64))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.5)
        sae.b_dec.normal_(0, 0.1)
    return sae


def standard_reconstruction(sae: StandardSAE, scaling_factor: float | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``relu((s·x − b_dec) W_enc + b_enc) W_dec + b_dec``, divided by ``s``, in float64."""
    w_enc, b_enc, w_dec, b_dec = (p.detach().double() for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))
    s = 1.0 if scaling_factor is None else scaling_factor

    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        features = torch.relu((x.double() * s - b_dec) @ w_enc + b_enc)
        return ((features @ w_dec + b_dec) / s).to(x.dtype)

    return reconstruct


def reference_metrics(
    run: Callable[[torch.Tensor, Callable[[torch.Tensor], torch.Tensor] | None], torch.Tensor],
    tokens: torch.Tensor,
    keep: torch.Tensor,
    new_values: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, float]:
    """``run(tokens, edit)`` gives logits with ``edit`` applied to the hook's ``[batch, pos, d]`` activations."""

    def replace_with(values: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: torch.where(keep[..., None], values(x), x)

    with torch.no_grad():
        clean = torch.log_softmax(run(tokens, None).double(), -1)
        spliced = torch.log_softmax(run(tokens, replace_with(new_values)).double(), -1)
        ablated = torch.log_softmax(run(tokens, replace_with(torch.zeros_like)).double(), -1)
    targets = tokens[:, 1:, None]
    ce_keep = keep[:, :-1]

    def ce(log_probs: torch.Tensor) -> float:
        return float((-log_probs[:, :-1].gather(-1, targets).squeeze(-1))[ce_keep].mean())

    def kl(log_probs: torch.Tensor) -> float:
        return float((clean.exp() * (clean - log_probs)).sum(-1)[keep].mean())

    ce_clean, ce_sae, ce_zero = ce(clean), ce(spliced), ce(ablated)
    kl_sae, kl_zero = kl(spliced), kl(ablated)
    return {
        "ce_loss_score": (ce_zero - ce_sae) / (ce_zero - ce_clean),
        "ce_loss_with_sae": ce_sae,
        "ce_loss_without_sae": ce_clean,
        "ce_loss_with_ablation": ce_zero,
        "kl_div_score": (kl_zero - kl_sae) / kl_zero,
        "kl_div_with_sae": kl_sae,
        "kl_div_with_ablation": kl_zero,
    }


def hf_runner(hf_model: Any, module_path: str) -> Callable[..., torch.Tensor]:
    module = dict(hf_model.named_modules())[module_path]

    def run(tokens: torch.Tensor, edit: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        def hook(module: Any, inputs: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (edit(output[0]), *output[1:])
            return edit(output)

        handle = module.register_forward_hook(hook) if edit is not None else None
        try:
            return hf_model(input_ids=tokens).logits
        finally:
            if handle is not None:
                handle.remove()

    return run


def special_ids(tokenizer: Any) -> torch.Tensor:
    return torch.tensor(sorted({tokenizer.bos_token_id, tokenizer.eos_token_id}))


def assert_metrics_close(found: dict[str, float], expected: dict[str, float], rtol: float, atol: float) -> None:
    assert list(found) == list(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert found[name] == pytest.approx(expected[name], rel=rtol, abs=atol), name


def test_a_transformers_model_matches_a_manual_splice(hf_model: Any, tokenizer: Any, text_dir: Path) -> None:
    source = make_source(text_dir, model=hf_model, hook_name="transformer.h.0")
    tokens = source.eval_tokens()
    assert tokens.shape == (6, CONTEXT)
    keep = ~torch.isin(tokens, special_ids(tokenizer))
    assert (~keep).sum() >= 6  # every prompt starts with BOS, and documents are separated by it
    sae = random_sae(32)
    found = source.evaluate_sae(sae, scaling_factor=2.5)
    expected = reference_metrics(hf_runner(hf_model, "transformer.h.0"), tokens, keep,
                                 standard_reconstruction(sae, 2.5))
    assert_metrics_close(found, expected, rtol=1e-5, atol=1e-7)
    assert 0 < found["kl_div_with_sae"] and found["ce_loss_with_ablation"] != found["ce_loss_without_sae"]


def test_seqpos_slice_and_listed_tokens_narrow_the_positions(hf_model: Any, tokenizer: Any, text_dir: Path) -> None:
    source = make_source(text_dir, model=hf_model, hook_name="transformer.h.1", seqpos_slice=[3, None],
                         exclude_special_tokens=[17, 42])
    tokens = source.eval_tokens()
    keep = ~torch.isin(tokens, torch.tensor([tokenizer.bos_token_id, 17, 42]))
    keep[:, :3] = False
    sae = random_sae(32, seed=1)
    expected = reference_metrics(hf_runner(hf_model, "transformer.h.1"), tokens, keep,
                                 standard_reconstruction(sae, None))
    assert_metrics_close(source.evaluate_sae(sae), expected, rtol=1e-5, atol=1e-7)


def test_a_perfect_reconstruction_scores_one(hf_model: Any, text_dir: Path) -> None:
    """relu(x) − relu(−x) = x: with W_enc = [I, −I] and W_dec = [I; −I] the SAE is the identity."""
    source = make_source(text_dir, model=hf_model, hook_name="transformer.h.1")
    sae = StandardSAE(StandardSAEConfig(d_in=32, d_sae=64))
    eye = torch.eye(32)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_dec.zero_()
        sae.b_enc.zero_()
    metrics = source.evaluate_sae(sae, scaling_factor=3.0)
    assert metrics["ce_loss_with_sae"] == pytest.approx(metrics["ce_loss_without_sae"], abs=1e-5)
    assert metrics["ce_loss_score"] == pytest.approx(1.0, abs=1e-3)
    assert metrics["kl_div_with_sae"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["kl_div_score"] == pytest.approx(1.0, abs=1e-4)


def test_evaluating_does_not_move_the_training_stream(hf_model: Any, text_dir: Path) -> None:
    evaluated = make_source(text_dir, model=hf_model, hook_name="transformer.h.0")
    untouched = make_source(text_dir, model=hf_model, hook_name="transformer.h.0")
    first = evaluated.next_batch(40)
    assert torch.equal(first, untouched.next_batch(40))
    evaluated.evaluate_sae(random_sae(32))
    assert all(torch.equal(evaluated.next_batch(40), untouched.next_batch(40)) for _ in range(4))
    stream = evaluated._token_stream(type(evaluated.stream.position)(), None)
    assert torch.equal(evaluated.eval_tokens(), stream.next_prompts(6))  # the dataset's first prompts


def test_an_sae_is_spliced_in_at_the_hook_its_metadata_names(hf_model: Any, tokenizer: Any, text_dir: Path) -> None:
    source = make_source(text_dir, model=hf_model, hook_name="transformer.h.0", additional_hook_names=[
        "transformer.h.0.attn.c_attn", "transformer.h.1"])
    tokens = source.eval_tokens()
    keep = ~torch.isin(tokens, special_ids(tokenizer))
    sae = random_sae(32, seed=6)
    for hook in ("transformer.h.1", "transformer.h.0"):
        sae.cfg.metadata.hook_name = hook
        expected = reference_metrics(hf_runner(hf_model, hook), tokens, keep, standard_reconstruction(sae, 1.5))
        assert_metrics_close(source.evaluate_sae(sae, 1.5), expected, rtol=1e-5, atol=1e-7)


def test_an_sae_a_several_hook_source_cannot_place_is_refused_or_skipped(hf_model: Any, text_dir: Path) -> None:
    source = make_source(text_dir, model=hf_model, hook_name="transformer.h.0",
                         additional_hook_names=["transformer.h.1"])
    unplaced = random_sae(32)
    with pytest.raises(ConfigError, match=r"reads 2 hooks \(transformer.h.0, transformer.h.1\) .*hook_name is None"):
        source.evaluate_sae(unplaced)
    whole_row = random_sae(64)
    whole_row.cfg.metadata.hook_name = "transformer.h.0"  # what the trainer records for an SAE on the whole row
    with pytest.warns(UserWarning, match="reads all 2 hooks side by side"):
        assert source.evaluate_sae(whole_row) == {}


def test_an_sae_of_another_width_is_refused(hf_model: Any, text_dir: Path) -> None:
    source = make_source(text_dir, model=hf_model, hook_name="transformer.h.0")
    with pytest.raises(ConfigError, match=r"SAE has d_in=16 but 'transformer.h.0' .* width 32"):
        source.evaluate_sae(random_sae(16))


@pytest.fixture(scope="module")
def bridge_source(model_dir: Path, text_dir: Path) -> LLMSource:
    return make_source(text_dir, model_name=str(model_dir), model_class_name="TransformerBridge",
                       hook_name="blocks.1.hook_resid_post")


@needs_transformer_lens
def test_a_transformer_bridge_matches_the_manual_splice_of_the_hf_model(
    bridge_source: LLMSource, hf_model: Any, tokenizer: Any
) -> None:
    tokens = bridge_source.eval_tokens()
    sae = random_sae(32, seed=2)
    expected = reference_metrics(hf_runner(hf_model, "transformer.h.1"), tokens,
                                 ~torch.isin(tokens, special_ids(tokenizer)), standard_reconstruction(sae, 0.5))
    assert_metrics_close(bridge_source.evaluate_sae(sae, 0.5), expected, rtol=1e-4, atol=1e-6)


@needs_hooked_transformer
def test_a_hooked_transformer_matches_the_manual_splice_of_the_hf_model(
    model_dir: Path, text_dir: Path, hf_model: Any, tokenizer: Any
) -> None:
    source = make_source(text_dir, model_name=str(model_dir), hook_name="blocks.0.hook_resid_post")
    assert source.model.kind == "HookedTransformer"
    tokens = source.eval_tokens()
    sae = random_sae(32, seed=3)
    expected = reference_metrics(hf_runner(hf_model, "transformer.h.0"), tokens,
                                 ~torch.isin(tokens, special_ids(tokenizer)), standard_reconstruction(sae, None))
    assert_metrics_close(source.evaluate_sae(sae), expected, rtol=1e-4, atol=1e-6)


def transformer_lens_runner(model: Any, hook_name: str, head_index: int | None) -> Callable[..., torch.Tensor]:
    """Runs the TransformerLens model with the edit applied to one head, or to all heads flattened."""

    def run(tokens: torch.Tensor, edit: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
            assert edit is not None
            if head_index is None:
                return edit(z.flatten(2)).reshape(z.shape)
            z = z.clone()
            z[:, :, head_index] = edit(z[:, :, head_index])
            return z

        hooks = [(hook_name, hook)] if edit is not None else []
        logits: torch.Tensor = model.run_with_hooks(tokens, fwd_hooks=hooks, return_type="logits", prepend_bos=False)
        return logits

    return run


@needs_transformer_lens
@pytest.mark.parametrize("head_index", [None, 1])
def test_per_head_hooks_replace_one_head_or_all(bridge_source: LLMSource, text_dir: Path, tokenizer: Any,
                                                head_index: int | None) -> None:
    bridge = bridge_source.model.model
    source = make_source(text_dir, model=bridge, hook_name="blocks.0.attn.hook_z", hook_head_index=head_index)
    sae = random_sae(source.d_in, seed=4)
    tokens = source.eval_tokens()
    expected = reference_metrics(transformer_lens_runner(bridge, "blocks.0.attn.hook_z", head_index), tokens,
                                 ~torch.isin(tokens, special_ids(tokenizer)), standard_reconstruction(sae, 2.0))
    assert_metrics_close(source.evaluate_sae(sae, 2.0), expected, rtol=1e-4, atol=1e-6)


class RecordingLogger:
    """Stands in for the wandb logger: keeps what the trainer logs."""

    def __init__(self) -> None:
        self.logged: list[dict[str, float]] = []

    def log(self, metrics: dict[str, float], step: int, histograms: Any = None) -> None:
        self.logged.append(dict(metrics))


def test_training_logs_the_scores_and_the_summary_prints_them(hf_model: Any, text_dir: Path) -> None:
    from saecore import StandardTrainingSAE, StandardTrainingSAEConfig
    from saecore.training import LoggingConfig, SAETrainer, TrainerConfig

    source = make_source(text_dir, model=hf_model, hook_name="transformer.h.0")
    sae_cfg = StandardTrainingSAEConfig(d_in=32, d_sae=64, normalize_activations="expected_average_only_in")
    sae = StandardTrainingSAE(sae_cfg)
    cfg = TrainerConfig(training_tokens=64 * 4, train_batch_size_tokens=64, n_eval_batches=1,
                        n_batches_for_norm_estimate=2, output_path=None, verbose=False)
    logger = RecordingLogger()
    trainer = SAETrainer(cfg, sae, source, logging=LoggingConfig(wandb_log_frequency=2, eval_every_n_wandb_logs=1),
                         metrics_logger=logger)  # type: ignore[arg-type]
    trainer.fit()
    evaluations = [entry for entry in logger.logged if "metrics/ce_loss_score" in entry]
    assert len(evaluations) == 3  # at steps 2 and 4, and the final one
    assert set(trainer.final_source_metrics) == set(METRIC_NAMES)
    assert evaluations[-1]["metrics/ce_loss_score"] == trainer.final_source_metrics["ce_loss_score"]


@needs_transformer_lens
def test_an_sae_that_reshapes_hook_z_itself_gets_the_heads(bridge_source: LLMSource, text_dir: Path) -> None:
    source = make_source(text_dir, model=bridge_source.model.model, hook_name="blocks.0.attn.hook_z")
    flat = random_sae(32, seed=5)
    reshaping = StandardSAE(StandardSAEConfig(d_in=32, d_sae=64, reshape_activations="hook_z"))
    reshaping.load_state_dict(flat.state_dict())
    assert reshaping.reshape_hook_z and not flat.reshape_hook_z
    assert_metrics_close(source.evaluate_sae(reshaping, 1.5), source.evaluate_sae(flat, 1.5), rtol=1e-6, atol=1e-9)


def test_prompts_per_forward_keeps_one_logits_tensor_within_the_chunk_budget() -> None:
    budget = spliced_evals.CHUNK_ELEMENTS
    assert spliced_evals.prompts_per_forward(8, 128, 50_257) == budget // (128 * 50_257) == 2
    assert spliced_evals.prompts_per_forward(8, 16, 1000) == 8
    assert spliced_evals.prompts_per_forward(8, 4096, 262_144) == 1
    assert spliced_evals.prompts_per_forward(8, 128, None) == 8


def test_evaluating_in_smaller_model_passes_gives_the_same_metrics(
    hf_model: Any, tokenizer: Any, text_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_source(text_dir, model=hf_model, hook_name="transformer.h.0")
    monkeypatch.setattr(spliced_evals, "CHUNK_ELEMENTS", 2 * CONTEXT * source.model.vocab_size)
    passes: list[int] = []
    logits = source.model.logits

    def counted(tokens: torch.Tensor, edits: Any = ()) -> torch.Tensor:
        passes.append(tokens.shape[0])
        return logits(tokens, edits)

    monkeypatch.setattr(source.model, "logits", counted)
    tokens = source.eval_tokens()
    keep = ~torch.isin(tokens, special_ids(tokenizer))
    sae = random_sae(32)
    found = source.evaluate_sae(sae, scaling_factor=2.5)
    assert passes == [2] * 9  # 6 prompts (eval_batch_size_prompts 3) in passes of 2: clean, spliced, ablated
    expected = reference_metrics(hf_runner(hf_model, "transformer.h.0"), tokens, keep,
                                 standard_reconstruction(sae, 2.5))
    assert_metrics_close(found, expected, rtol=1e-5, atol=1e-7)
