"""One interface over the three kinds of model the source can run.

Every kind reads several hooks in one forward pass, which stops after the deepest of them.

* TransformerLens 3.x ``HookedTransformer`` and the ``TransformerBridge`` (3.x and 4.x)
  share ``run_with_cache``, ``hook_dict`` and ``stop_at_layer``: hook names are
  TransformerLens's (``blocks.1.hook_resid_post``, ``blocks.0.attn.hook_z``), and the
  forward pass stops after the deepest hooked block.
* A plain Hugging Face ``transformers`` model has no hook points. Its hook names are
  module paths from ``model.named_modules()`` and the activation is that module's output
  (the first element when it returns a tuple or a ModelOutput): in a GPT-2
  ``GPT2LMHeadModel``, ``transformer.h.1`` is the residual stream after block 1 and
  ``transformer.h.1.mlp`` the MLP's output. The forward pass stops by raising a private
  exception from a forward hook once every hooked module's output is captured.

``logits(tokens, hook_name, edit)`` runs the whole model with ``edit`` applied to the
hook's activation (``run_with_hooks`` for TransformerLens, a forward hook that returns the
edited output for transformers); the evaluations splice the SAE in this way.
"""

from __future__ import annotations

import difflib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch

from saecore.errors import ConfigError

LAYER_PATTERN = re.compile(r"^blocks\.(\d+)\.")
Edit = Callable[[torch.Tensor], torch.Tensor]
"""A function from a hook's activation to the activation the rest of the model sees instead."""
CONTEXT_FIELDS = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length", "seq_length")


class HookedModel(ABC):
    """A language model that returns the activations at some hooks and runs no further.

    For evaluations it also runs in full (``logits``), with one hook's activation edited.
    """

    kind: str

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.forward_kwargs: dict[str, Any] = {}

    def compile(self, *, mode: str | None, backend: str) -> None:
        """Run ``activations`` (the forward passes that feed training) under torch.compile."""
        self.activations = torch.compile(self.activations, mode=mode, backend=backend)  # type: ignore[method-assign]

    @property
    @abstractmethod
    def n_ctx(self) -> int | None:
        """The longest input the model accepts (None when the model does not say)."""

    @property
    @abstractmethod
    def vocab_size(self) -> int | None:
        """How many token ids the model embeds (None when the model does not say)."""

    @abstractmethod
    def hook_names(self) -> list[str]:
        """Every name ``activations`` accepts."""

    @abstractmethod
    def activations(self, tokens: torch.Tensor, hook_names: Sequence[str]) -> list[torch.Tensor]:
        """The activation at each of ``hook_names`` for ``tokens [batch, pos]``: ``[batch, pos, ...]`` each.

        One forward pass serves all hooks; it stops once the deepest has run.
        """

    @abstractmethod
    def logits(self, tokens: torch.Tensor, edits: Sequence[tuple[str, Edit]] = ()) -> torch.Tensor:
        """The full forward pass's logits ``[batch, pos, vocab]``, with each ``(hook_name, edit)`` applied there."""

    @property
    def input_device(self) -> torch.device:
        parameter = next(iter(self.model.parameters()), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def check_hook_name(self, hook_name: str, field: str = "hook_name") -> None:
        """ConfigError naming ``field`` and listing close matches unless the model has ``hook_name``."""
        names = self.hook_names()
        if hook_name in names:
            return
        close = difflib.get_close_matches(hook_name, names, n=5, cutoff=0.6)
        hint = f"close matches: {', '.join(close)}" if close else f"for example: {', '.join(names[:8])}"
        raise ConfigError(f"{field}={hook_name!r} is not a hook of this {self.kind} model ({hint})")


class TransformerLensModel(HookedModel):
    """A HookedTransformer or TransformerBridge, run through ``run_with_cache``."""

    def __init__(self, model: Any, tokenizer: Any, name: str, kind: str) -> None:
        super().__init__(model, tokenizer, name)
        self.kind = kind

    @property
    def n_ctx(self) -> int | None:
        value = getattr(self.model.cfg, "n_ctx", None)
        return int(value) if value is not None else None

    @property
    def vocab_size(self) -> int | None:
        value = getattr(self.model.cfg, "d_vocab", None)
        return int(value) if isinstance(value, int) and value > 0 else None

    def hook_names(self) -> list[str]:
        return list(self.model.hook_dict)

    def activations(self, tokens: torch.Tensor, hook_names: Sequence[str]) -> list[torch.Tensor]:
        _, cache = self.model.run_with_cache(
            tokens, names_filter=list(hook_names), stop_at_layer=deepest_stop(hook_names), prepend_bos=False,
            **self.forward_kwargs,
        )
        return [cache[name] for name in hook_names]

    def logits(self, tokens: torch.Tensor, edits: Sequence[tuple[str, Edit]] = ()) -> torch.Tensor:
        hooks = [(hook_name, _as_hook_function(edit)) for hook_name, edit in edits]
        logits: torch.Tensor = self.model.run_with_hooks(tokens, fwd_hooks=hooks, return_type="logits",
                                                         prepend_bos=False, **self.forward_kwargs)
        return logits


class TransformersModel(HookedModel):
    """A plain transformers model; hook names are module paths, the activation their output."""

    kind = "AutoModelForCausalLM"

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        super().__init__(model, tokenizer, name)
        self._modules = {path: module for path, module in model.named_modules() if path}

    @property
    def n_ctx(self) -> int | None:
        config = getattr(self.model, "config", None)
        for field in CONTEXT_FIELDS:
            value = getattr(config, field, None)
            if isinstance(value, int):
                return value
        return None

    @property
    def vocab_size(self) -> int | None:
        embeddings = self.model.get_input_embeddings() if hasattr(self.model, "get_input_embeddings") else None
        value = getattr(embeddings, "num_embeddings", None)
        return int(value) if isinstance(value, int) else None

    def hook_names(self) -> list[str]:
        return list(self._modules)

    def activations(self, tokens: torch.Tensor, hook_names: Sequence[str]) -> list[torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}

        def capturing(name: str) -> Callable[[torch.nn.Module, Any, Any], None]:
            def capture(module: torch.nn.Module, inputs: Any, output: Any) -> None:
                captured.setdefault(name, first_tensor(output))
                if len(captured) == len(hook_names):
                    raise _StopForward

            return capture

        handles = [self._modules[name].register_forward_hook(capturing(name)) for name in hook_names]
        try:
            self.model(input_ids=tokens, **self.forward_kwargs)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in hook_names if name not in captured]
        if missing:
            raise ConfigError(f"hook {missing[0]!r}: this module did not run in the model's forward pass")
        return [captured[name] for name in hook_names]

    def logits(self, tokens: torch.Tensor, edits: Sequence[tuple[str, Edit]] = ()) -> torch.Tensor:
        handles = [self._modules[hook_name].register_forward_hook(_as_forward_hook(edit)) for hook_name, edit in edits]
        try:
            output = self.model(input_ids=tokens, **self.forward_kwargs)
        finally:
            for handle in handles:
                handle.remove()
        logits = getattr(output, "logits", None)
        return logits if isinstance(logits, torch.Tensor) else first_tensor(output)


def _as_hook_function(edit: Edit) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    return lambda activation, hook: edit(activation)


def _as_forward_hook(edit: Edit) -> Callable[[Any, Any, Any], Any]:
    return lambda module, inputs, output: replace_first_tensor(output, edit(first_tensor(output)))


class _StopForward(Exception):
    """Raised by the capturing hook so the layers after it never run."""


def first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "to_tuple"):
        output = output.to_tuple()
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ConfigError(f"the hooked module returned {type(output).__name__}, not a tensor or a tuple starting with one")


def replace_first_tensor(output: Any, new: torch.Tensor) -> Any:
    """``output`` (as ``first_tensor`` reads it) with its first tensor swapped for ``new``."""
    if isinstance(output, torch.Tensor):
        return new
    if hasattr(output, "to_tuple"):
        output[next(iter(output.keys()))] = new
        return output
    return (new, *output[1:]) if isinstance(output, tuple) else [new, *output[1:]]


def stop_at_layer(hook_name: str) -> int | None:
    """The TransformerLens ``stop_at_layer`` that still runs the hook's block (None: run everything)."""
    match = LAYER_PATTERN.match(hook_name)
    return int(match.group(1)) + 1 if match else None


def deepest_stop(hook_names: Sequence[str]) -> int | None:
    """The ``stop_at_layer`` that runs every hook's block (None: run everything)."""
    stops = [stop_at_layer(name) for name in hook_names]
    return None if None in stops else max(stop for stop in stops if stop is not None)
