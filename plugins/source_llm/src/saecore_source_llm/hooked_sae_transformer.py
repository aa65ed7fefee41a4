"""``HookedSAETransformer``: a TransformerLens 3 ``HookedTransformer`` that runs SAEs at its hook points.

An attached SAE replaces the model's activation at ``sae.cfg.metadata.hook_name`` with its
reconstruction (plus the reconstruction error when ``use_error_term`` is on, which keeps the
model's output exact while the features stay computed and differentiable). The SAE's own hook
points join the model's as ``<hook>.hook_sae_input``, ``.hook_sae_acts_pre``,
``.hook_sae_acts_post``, ``.hook_sae_recons``, ``.hook_sae_error`` and ``.hook_sae_output``, so
``run_with_cache`` and ``run_with_hooks`` reach the features like any other activation.

A transcoder reads at ``hook_name`` and writes at ``cfg.metadata.hook_name_out``: its site
replaces the output hook point, a forward hook on the input hook point hands it the input, and its
hook points are ``<hook_name_out>.hook_sae_*``, as in SAELens.

The ``SplicedSAE`` takes the hook point's place in the module tree for as long as the SAE is
attached. The SAE is not a registered submodule: the model's ``parameters()``, ``state_dict()``
and ``to()`` leave it alone, and it must already sit on the model's device and dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

from saecore.sae import SAE
from saecore_source_llm.hook_widths import transformer_lens_hook_width
from saecore_source_llm.sae_splicing import SAESplicingMixin, SplicedSAE

_TL_VERSION = version("transformer-lens")
if int(_TL_VERSION.split(".")[0]) >= 4:
    raise ImportError(
        f"saecore's HookedSAETransformer needs transformer-lens<4 (3.x) and transformer-lens {_TL_VERSION} is "
        "installed; with TransformerLens 4 use SAETransformerBridge, or pip install 'transformer-lens<4'"
    )

from transformer_lens import HookedTransformer  # noqa: E402 - only once the version is known to fit


class HookedSAETransformer(SAESplicingMixin, HookedTransformer):
    """A ``HookedTransformer`` with SAEs spliced in at their hook points (SAELens's API)."""

    def __init__(self, *model_args: Any, **model_kwargs: Any) -> None:
        super().__init__(*model_args, **model_kwargs)
        self._spliced_saes: dict[str, SplicedSAE] = {}
        self._replaced_hook_points: dict[str, nn.Module] = {}
        self._capture_handles: dict[str, RemovableHandle] = {}

    def _hook_names(self) -> Sequence[str]:
        return list(self.hook_dict)

    def _hook_width(self, hook_name: str, sae: SAE[Any]) -> int | None:
        return transformer_lens_hook_width(self.cfg, hook_name, sae)

    def _install(self, site: SplicedSAE) -> None:
        if site.reads_elsewhere:
            capture = self.get_submodule(site.hook_name).register_forward_hook(
                lambda module, inputs, output: site.capture(output))
            self._capture_handles[site.hook_name] = capture
        self._replaced_hook_points[site.output_name] = self.get_submodule(site.output_name)
        self._replace_module(site.output_name, site)
        self.setup()

    def _uninstall(self, site: SplicedSAE) -> None:
        self._replace_module(site.output_name, self._replaced_hook_points.pop(site.output_name))
        if site.reads_elsewhere:
            self._capture_handles.pop(site.hook_name).remove()
        site.sae.name_hook_points()
        self.setup()

    def _replace_module(self, hook_name: str, module: nn.Module) -> None:
        parent_name, _, child_name = hook_name.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        setattr(parent, child_name, module)
