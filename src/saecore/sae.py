"""The SAE base class: the contract every inference architecture implements.

An architecture plugin subclasses :class:`SAE`, creates its parameters in
``initialize_weights`` and implements ``encode`` and ``decode``. Everything shared
(input processing, normalisation, hook points, the error term, folding, saving and
loading) lives here so that plugins stay small and behave alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn

from saecore import resolver
from saecore.config.sae_config import SAEConfig
from saecore.dtypes import canonical_dtype_name, dtype_from_name
from saecore.hook_points import HookedModule, HookPoint
from saecore.io.pretrained_loaders import PretrainedSaeDiskLoader, PretrainedSaeHuggingfaceLoader
from saecore.io.sae_files import save_sae_files

C = TypeVar("C", bound=SAEConfig)
S = TypeVar("S", bound="SAE[Any]")

HOOK_POINT_NAMES = (
    "hook_sae_input",
    "hook_sae_acts_pre",
    "hook_sae_acts_post",
    "hook_sae_recons",
    "hook_sae_error",
    "hook_sae_output",
)
LAYER_NORM_EPS = 1e-5


@torch.no_grad()
def fold_decoder_norms(W_enc: torch.Tensor, b_enc: torch.Tensor | None, W_dec: torch.Tensor) -> torch.Tensor:
    """Unit decoder rows, in place: ``W_dec,i /= n_i``, ``W_enc[:, i] *= n_i``, ``b_enc,i *= n_i``; returns ``n``.

    ``n_i = ‖W_dec,i‖`` (at least 1e-8). Scaling latent ``i``'s encoder side by what its
    decoder row loses keeps every ReLU-like SAE's output. One computation for folding a
    live SAE and for folding the tensors a training SAE saves.
    """
    norms = W_dec.norm(dim=-1).clamp(min=1e-8)
    W_dec.div_(norms.unsqueeze(1))
    W_enc.mul_(norms.unsqueeze(0))
    if b_enc is not None:
        b_enc.mul_(norms)
    return norms


class SAE(HookedModule, Generic[C]):
    """A sparse autoencoder for inference: ``forward(x) = decode(encode(x))``.

    Parameters follow SAELens: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``,
    ``b_dec [d_in]`` plus whatever the architecture adds.
    """

    W_enc: nn.Parameter
    W_dec: nn.Parameter
    b_dec: nn.Parameter

    # Which registry table ``load_from_disk`` builds from: inference architectures here,
    # training recipes on ``TrainingSAE``.
    _builds_training_recipe: ClassVar[bool] = False

    def __init__(self, cfg: C, use_error_term: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.use_error_term = use_error_term
        self.hook_sae_input = HookPoint()
        self.hook_sae_acts_pre = HookPoint()
        self.hook_sae_acts_post = HookPoint()
        self.hook_sae_recons = HookPoint()
        self.hook_sae_error = HookPoint()
        self.hook_sae_output = HookPoint()
        self.name_hook_points()
        self.reshape_hook_z = cfg.reshape_activations == "hook_z"
        self._d_head: int | None = None
        self._norm_state: tuple[torch.Tensor, ...] | None = None
        self.initialize_weights()

    # -- properties mirroring SAELens ------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return dtype_from_name(self.cfg.dtype)

    @property
    def device(self) -> torch.device:
        return torch.device(self.cfg.device)

    # -- construction ------------------------------------------------------------------
    def _empty(self, *shape: int) -> torch.Tensor:
        return torch.empty(*shape, dtype=self.dtype, device=self.device)

    def _zeros(self, *shape: int) -> torch.Tensor:
        return torch.zeros(*shape, dtype=self.dtype, device=self.device)

    def initialize_weights(self) -> None:
        """Kaiming-uniform decoder, encoder its transpose, zero decoder bias.

        Architectures call this and then add their own biases.
        """
        self.b_dec = nn.Parameter(self._zeros(self.cfg.d_in))
        w_dec = self._empty(self.cfg.d_sae, self.cfg.d_in)
        if w_dec.device.type != "meta":
            nn.init.kaiming_uniform_(w_dec)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone().contiguous())

    # -- the contract ----------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., d_sae]`` of inputs ``[..., d_in]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement encode()")

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[..., d_in]`` of feature activations ``[..., d_sae]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement decode()")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature_acts = self.encode(x)
        sae_out = self.decode(feature_acts)
        if self.use_error_term:
            with torch.no_grad(), self._hooks_bypassed():
                clean = self.decode(self.encode(x))
            sae_out = sae_out + self.hook_sae_error(x.to(clean.dtype) - clean)
        return self.hook_sae_output(sae_out)

    # -- shared pieces architectures call ---------------------------------------------
    def process_sae_in(self, x: torch.Tensor) -> torch.Tensor:
        """Cast, reshape hook_z inputs, hook, normalise, then subtract ``b_dec`` if configured."""
        x = x.to(self.dtype)
        if self.reshape_hook_z:
            self._d_head = x.shape[-1]
            x = x.flatten(-2)
        x = self.hook_sae_input(x)
        x = self.normalize_in(x)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x

    def finish_decode(self, recons: torch.Tensor) -> torch.Tensor:
        """Hook, undo the input normalisation, and restore the hook_z head shape."""
        recons = self.hook_sae_recons(recons)
        recons = self.normalize_out(recons)
        if self.reshape_hook_z and self._d_head is not None:
            recons = recons.unflatten(-1, (-1, self._d_head))
        return recons

    def normalize_in(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token normalisation; the state it keeps is consumed by ``normalize_out``."""
        mode = self.cfg.normalize_activations
        if mode == "constant_norm_rescale":
            coeff = (self.cfg.d_in**0.5) / x.norm(dim=-1, keepdim=True)
            self._norm_state = (coeff,)
            return x * coeff
        if mode == "layer_norm":
            mu = x.mean(dim=-1, keepdim=True)
            centred = x - mu
            std = centred.std(dim=-1, keepdim=True)
            self._norm_state = (mu, std)
            return centred / (std + LAYER_NORM_EPS)
        return x

    def normalize_out(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.cfg.normalize_activations
        if mode not in ("constant_norm_rescale", "layer_norm"):
            return x
        if self._norm_state is None:
            raise RuntimeError(
                f"decode() with normalize_activations={mode!r} needs the statistics of the "
                "matching encode() call; call encode() on the input first"
            )
        state, self._norm_state = self._norm_state, None
        if mode == "constant_norm_rescale":
            return x / state[0]
        mu, std = state
        return x * std + mu

    # -- hook_z reshaping (SAELens's switches) --------------------------------------------
    def turn_on_forward_pass_hook_z_reshaping(self) -> None:
        """Take attention-head inputs ``[..., n_heads, d_head]`` and return outputs in that shape.

        Only for SAEs trained on a ``hook_z`` point (or with no hook recorded); set by
        ``reshape_activations="hook_z"`` when the SAE is built.
        """
        hook_name = self.cfg.metadata.hook_name
        if hook_name is not None and not str(hook_name).endswith("_z"):
            raise ValueError(f"turn_on_forward_pass_hook_z_reshaping: this SAE reads {hook_name!r}; "
                             "only an SAE on a hook_z point takes per-head inputs")
        self.reshape_hook_z = True

    def turn_off_forward_pass_hook_z_reshaping(self) -> None:
        """Take and return flat ``[..., d_in]`` activations."""
        self.reshape_hook_z = False
        self._d_head = None

    @property
    def hook_z_reshaping_mode(self) -> bool:
        """Whether per-head inputs are flattened (SAELens's name for ``reshape_hook_z``)."""
        return self.reshape_hook_z

    @contextmanager
    def _hooks_bypassed(self) -> Iterator[None]:
        """Swap every hook point for a bare identity (the error term must not see hooks)."""
        points = {name: getattr(self, name) for name in HOOK_POINT_NAMES}
        blank = nn.Identity()
        try:
            for name in points:
                setattr(self, name, blank)
            yield
        finally:
            for name, point in points.items():
                setattr(self, name, point)

    # -- folding -----------------------------------------------------------------------
    @torch.no_grad()
    def get_W_dec_norm(self) -> torch.Tensor:
        return self.W_dec.norm(dim=-1).clamp(min=1e-8)

    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        """Give every decoder row unit norm without changing the SAE's outputs."""
        self.fold_and_get_W_dec_norm()

    @torch.no_grad()
    def fold_and_get_W_dec_norm(self) -> torch.Tensor:
        b_enc = getattr(self, "b_enc", None)
        return fold_decoder_norms(self.W_enc.data, b_enc.data if isinstance(b_enc, nn.Parameter) else None,
                                  self.W_dec.data)

    @torch.no_grad()
    def fold_activation_norm_scaling_factor(
        self, scaling_factor: float, target_scaling_factor: float | None = None
    ) -> None:
        """Fold training-time scales in, so raw activations can be fed and raw targets come out.

        The encoder saw ``s·x`` and the decoder produced ``t·y``; ``t`` is ``s`` for an SAE, whose
        target is its input, and the target's own scale for a transcoder.
        """
        output_scale = scaling_factor if target_scaling_factor is None else target_scaling_factor
        self.W_enc.data.mul_(scaling_factor)
        self.W_dec.data.div_(output_scale)
        self.b_dec.data.div_(output_scale)
        self.cfg.normalize_activations = "none"

    # -- device and dtype ----------------------------------------------------------------
    def to(self: S, *args: Any, **kwargs: Any) -> S:  # type: ignore[override]
        """Move like ``nn.Module.to`` and record the new device and dtype in ``cfg``."""
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        result = super().to(*args, **kwargs)
        if device is not None:
            self.cfg.device = str(device)
        if dtype is not None:
            self.cfg.dtype = canonical_dtype_name(dtype)
        return result

    # -- saving and loading ----------------------------------------------------------
    def process_state_dict_for_saving(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Edit the state dict in place before it is written (architectures override)."""

    def process_state_dict_for_loading(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Edit a state dict read from disk in place before it is loaded (e.g. log_threshold)."""

    def save_model(self, path: str | Path, sparsity: torch.Tensor | None = None) -> tuple[Path, Path]:
        """Write cfg.json and sae_weights.safetensors (and sparsity) atomically; return their paths."""
        state_dict = {k: v.detach().clone() for k, v in self.state_dict().items()}
        self.process_state_dict_for_saving(state_dict)
        return save_sae_files(Path(path), self.cfg.to_dict(), state_dict, sparsity)

    def get_name(self) -> str:
        """``sae_{model_name}_{hook_name}_{d_sae}``, the name SAELens gives an SAE."""
        return f"sae_{self.cfg.metadata.model_name}_{self.cfg.metadata.hook_name}_{self.cfg.d_sae}"

    @classmethod
    def get_sae_class_for_architecture(cls, architecture: str) -> type[SAE[Any]]:
        """The registered class of ``architecture``; a ValueError if it is not a subclass of ``cls``."""
        sae_class: type[SAE[Any]] = resolver.classes_named(architecture, training=cls._builds_training_recipe)[0]
        if not issubclass(sae_class, cls):
            raise ValueError(f"architecture {architecture!r} is a {sae_class.__name__}, not a {cls.__name__}; "
                             f"use {sae_class.__name__} instead")
        return sae_class

    @classmethod
    def get_sae_config_class_for_architecture(cls, architecture: str) -> type[SAEConfig]:
        """The config class registered with ``architecture``."""
        config_class: type[SAEConfig] = resolver.classes_named(architecture, training=cls._builds_training_recipe)[1]
        return config_class

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], use_error_term: bool = False) -> SAE[Any]:
        """Build (with fresh weights) the SAE class named by ``config_dict["architecture"]``."""
        return resolver.sae_from_dict(config_dict, use_error_term=use_error_term)

    @classmethod
    def load_from_disk(
        cls,
        path: str | Path,
        device: str = "cpu",
        dtype: str | None = None,
        converter: str | PretrainedSaeDiskLoader = "sae_lens",
        fold_W_dec_norm: bool = False,
    ) -> SAE[Any]:
        """Load an SAE folder; the class comes from its cfg ``architecture``.

        ``converter`` names the format (``sae_lens``: cfg.json + sae_weights.safetensors;
        plugins add others), or is a SAELens-style disk loader callable
        (``saecore.io.pretrained_loaders``). Formats that publish one file per SAE
        (``qwen_scope``, ``goodfire``, ...) take that file as ``path``.
        """
        return resolver.load_sae_folder(
            Path(path), device=device, dtype=dtype, fold_W_dec_norm=fold_W_dec_norm,
            training=cls._builds_training_recipe, converter=converter,
        )[0]

    @classmethod
    def load_from_pretrained(cls, path: str | Path, device: str = "cpu", dtype: str | None = None) -> SAE[Any]:
        warnings.warn("load_from_pretrained is deprecated; use load_from_disk", DeprecationWarning, stacklevel=2)
        return cls.load_from_disk(path, device=device, dtype=dtype)

    @classmethod
    def from_pretrained(
        cls,
        release: str,
        sae_id: str,
        device: str = "cpu",
        dtype: str = "float32",
        force_download: bool = False,
        converter: str | PretrainedSaeHuggingfaceLoader | None = None,
        fold_W_dec_norm: bool = False,
        revision: str | None = None,
    ) -> SAE[Any]:
        """Load a published SAE by release name (or Hub repo id) and sae_id."""
        return cls.from_pretrained_with_cfg_and_sparsity(
            release, sae_id, device=device, dtype=dtype, force_download=force_download,
            fold_W_dec_norm=fold_W_dec_norm, revision=revision, converter=converter,
        )[0]

    @classmethod
    def from_pretrained_with_cfg_and_sparsity(
        cls,
        release: str,
        sae_id: str,
        device: str = "cpu",
        dtype: str = "float32",
        force_download: bool = False,
        converter: str | PretrainedSaeHuggingfaceLoader | None = None,
        fold_W_dec_norm: bool = False,
        revision: str | None = None,
    ) -> tuple[SAE[Any], dict[str, Any], torch.Tensor | None]:
        """Like ``from_pretrained`` but also return the cfg dict and log10 sparsity (or None).

        ``converter`` overrides the format the release declares (default: SAELens's): a
        registered converter's name or a SAELens-style Hub loader callable
        (``saecore.io.pretrained_loaders``).
        """
        return resolver.load_pretrained(
            release, sae_id, device=device, dtype=dtype, force_download=force_download,
            fold_W_dec_norm=fold_W_dec_norm, revision=revision, converter=converter,
        )

    load_from_pretrained_with_cfg_and_sparsity = from_pretrained_with_cfg_and_sparsity

    # -- SAELens v5 tuple-unpacking compatibility ----------------------------------------
    def _tuple_view(self) -> tuple[SAE[Any], dict[str, Any], None]:
        warnings.warn(
            "SAE.from_pretrained() returns the SAE alone; unpacking it as (sae, cfg_dict, sparsity) "
            "is deprecated. Use SAE.from_pretrained_with_cfg_and_sparsity() for all three.",
            DeprecationWarning,
            stacklevel=3,
        )
        return (self, self.cfg.to_dict(), None)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._tuple_view())

    def __getitem__(self, index: int) -> Any:
        return self._tuple_view()[index]

    def __len__(self) -> int:
        return 3

    def __bool__(self) -> bool:
        return True
