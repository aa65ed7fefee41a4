"""Each kind of model serves the activations the model itself computes at the hook.

Prompts come from a pretokenized dataset and the buffer does not shuffle
(activations_mixing_fraction=0), so the n-th batch must equal the hook's activations for
the n-th group of rows, taken from the model's own full forward pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import LLMSource, LLMSourceConfig
from saecore_source_llm.model_loading import transformer_lens_major

from saecore.errors import ConfigError

CONTEXT = 16
PROMPTS_PER_PASS = 2


@pytest.fixture(scope="module")
def rows(hf_model: Any) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(1, hf_model.config.vocab_size, (8, CONTEXT), generator=generator)


def ordered_source(rows: torch.Tensor, **settings: Any) -> LLMSource:
    from datasets import Dataset

    cfg = LLMSourceConfig(dataset=Dataset.from_dict({"tokens": rows.tolist()}), context_size=CONTEXT,
                          store_batch_size_prompts=PROMPTS_PER_PASS, n_batches_in_buffer=2,
                          activations_mixing_fraction=0.0, verbose=False, **settings)
    return LLMSource(cfg, seed=0)


def assert_serves(source: LLMSource, rows: torch.Tensor, reference: Any, atol: float = 0.0) -> None:
    """Batches of one forward pass each equal ``reference(prompts)`` flattened over positions."""
    for start in (0, PROMPTS_PER_PASS, 2 * PROMPTS_PER_PASS):
        expected = reference(rows[start:start + PROMPTS_PER_PASS])
        served = source.next_batch(PROMPTS_PER_PASS * CONTEXT)
        torch.testing.assert_close(served, expected.reshape(-1, expected.shape[-1]).float(), atol=atol, rtol=0)


def module_output(model: Any, path: str, tokens: torch.Tensor) -> torch.Tensor:
    """The module's output in a complete forward pass of the model (no early stop)."""
    captured: list[torch.Tensor] = []
    handle = dict(model.named_modules())[path].register_forward_hook(
        lambda module, inputs, output: captured.append(output[0] if isinstance(output, tuple) else output)
    )
    try:
        with torch.no_grad():
            model(input_ids=tokens)
    finally:
        handle.remove()
    return captured[0]


# -- plain transformers --------------------------------------------------------------------
def test_transformers_model_by_folder_hooks_module_outputs(model_dir: Path, hf_model: Any, rows: torch.Tensor) -> None:
    source = ordered_source(rows, model_name=str(model_dir), model_class_name="AutoModelForCausalLM",
                            hook_name="transformer.h.1")
    assert source.d_in == 32 and source.model.kind == "AutoModelForCausalLM"
    assert_serves(source, rows, lambda tokens: module_output(hf_model, "transformer.h.1", tokens))


def test_transformers_model_object_stops_after_the_hooked_module(hf_model: Any, rows: torch.Tensor) -> None:
    source = ordered_source(rows, model=hf_model, hook_name="transformer.h.0")
    later_calls: list[int] = []
    handle = hf_model.transformer.h[1].register_forward_hook(lambda *args: later_calls.append(1))
    try:
        hidden = lambda tokens: hf_model(input_ids=tokens, output_hidden_states=True).hidden_states[1]  # noqa: E731
        with torch.no_grad():
            expected = [hidden(rows[i:i + PROMPTS_PER_PASS]) for i in (0, 2, 4)]
        later_calls.clear()
        for reference in expected:
            torch.testing.assert_close(source.next_batch(PROMPTS_PER_PASS * CONTEXT), reference.reshape(-1, 32))
        assert later_calls == []
    finally:
        handle.remove()


# -- TransformerLens ----------------------------------------------------------------------
needs_transformer_lens = pytest.mark.skipif(transformer_lens_major() is None, reason="transformer-lens not installed")
needs_hooked_transformer = pytest.mark.skipif(transformer_lens_major() != 3,
                                              reason="HookedTransformer is tested with transformer-lens 3.x")


def cached(model: Any, hook: str) -> Any:
    def reference(tokens: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, prepend_bos=False)
        return cache[hook]

    return reference


@pytest.fixture(scope="module")
def bridge_source(model_dir: Path, rows: torch.Tensor) -> LLMSource:
    return ordered_source(rows, model_name=str(model_dir), model_class_name="TransformerBridge",
                          hook_name="blocks.1.hook_resid_post")


@needs_transformer_lens
def test_transformer_bridge_from_a_local_folder(bridge_source: LLMSource, hf_model: Any, rows: torch.Tensor) -> None:
    bridge = bridge_source.model.model
    assert bridge_source.model.kind == "TransformerBridge" and bridge_source.d_in == 32
    assert_serves(bridge_source, rows, cached(bridge, "blocks.1.hook_resid_post"))
    expected = module_output(hf_model, "transformer.h.1", rows[:2])  # the bridge runs the HF weights unchanged
    torch.testing.assert_close(bridge_source.activations(rows[:2]), expected.reshape(-1, 32), atol=1e-5, rtol=0)


@needs_transformer_lens
def test_transformer_bridge_object_with_one_head_and_all_heads(bridge_source: LLMSource, rows: torch.Tensor) -> None:
    bridge = bridge_source.model.model
    z = cached(bridge, "blocks.0.attn.hook_z")
    head = ordered_source(rows, model=bridge, hook_name="blocks.0.attn.hook_z", hook_head_index=1)
    assert head.d_in == 16
    assert_serves(head, rows, lambda tokens: z(tokens)[:, :, 1])
    flat = ordered_source(rows, model=bridge, hook_name="blocks.0.attn.hook_z")
    assert flat.d_in == 32
    assert_serves(flat, rows, lambda tokens: z(tokens).flatten(2))


@needs_transformer_lens
def test_transformer_lens_hooks_of_two_layers_side_by_side(bridge_source: LLMSource, rows: torch.Tensor) -> None:
    bridge = bridge_source.model.model
    source = ordered_source(rows, model=bridge, hook_name="blocks.1.attn.hook_z",
                            additional_hook_names=["blocks.0.hook_resid_post"])
    assert source.streams() == {"blocks.1.attn.hook_z": 32, "blocks.0.hook_resid_post": 32}
    z, resid = cached(bridge, "blocks.1.attn.hook_z"), cached(bridge, "blocks.0.hook_resid_post")
    assert_serves(source, rows, lambda tokens: torch.cat([z(tokens).flatten(2), resid(tokens)], dim=-1), atol=1e-6)


@pytest.fixture(scope="module")
def hooked_transformer_source(model_dir: Path, rows: torch.Tensor) -> LLMSource:
    return ordered_source(rows, model_name=str(model_dir), hook_name="blocks.0.hook_resid_post")


@needs_hooked_transformer
def test_hooked_transformer_from_a_local_folder(hooked_transformer_source: LLMSource, hf_model: Any,
                                                 rows: torch.Tensor) -> None:
    source = hooked_transformer_source
    model = source.model.model
    assert source.model.kind == "HookedTransformer" and type(model).__name__ == "HookedTransformer"
    assert_serves(source, rows, cached(model, "blocks.0.hook_resid_post"))
    with torch.no_grad():  # our config conversion + TransformerLens's weight conversion reproduce the model
        hidden = hf_model(input_ids=rows[:2], output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(source.activations(rows[:2]), hidden.reshape(-1, 32), atol=1e-5, rtol=1e-5)


@needs_hooked_transformer
def test_hooked_transformer_object_per_head(hooked_transformer_source: LLMSource, rows: torch.Tensor) -> None:
    model = hooked_transformer_source.model.model
    z = cached(model, "blocks.1.attn.hook_z")
    head = ordered_source(rows, model=model, hook_name="blocks.1.attn.hook_z", hook_head_index=0)
    assert head.model.kind == "HookedTransformer" and head.d_in == 16
    assert_serves(head, rows, lambda tokens: z(tokens)[:, :, 0])


@needs_transformer_lens
def test_a_head_index_beyond_the_heads_is_refused(bridge_source: LLMSource, rows: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match=r"hook_head_index=2 but '.*hook_z' has 2 heads \(allowed: 0 to 1"):
        ordered_source(rows, model=bridge_source.model.model, hook_name="blocks.0.attn.hook_z", hook_head_index=2)
