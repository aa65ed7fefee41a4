"""``SAETransformerBridge``: a TransformerLens 4 ``TransformerBridge`` that runs SAEs at its hook points.

The same methods and semantics as ``HookedSAETransformer`` (SAELens's API): an attached SAE
replaces the activation at ``sae.cfg.metadata.hook_name`` with its output, its hook points are
reachable as ``<hook>.hook_sae_*`` by ``run_with_cache`` and ``run_with_hooks``, and
``use_error_term`` keeps the model's output exact.

The bridge wraps a Hugging Face model, so the ``SplicedSAE`` runs as a forward hook on the hook point
(first among its hooks) instead of replacing it; the hook point stays and shows what flows on.
Where TransformerLens reshapes a hook's activation for hook functions (``attn.hook_z`` becomes
``[..., n_heads, d_head]``) the SAE sees that shape too, so a ``hook_z`` SAE runs as it does in
``HookedSAETransformer``. The SAE is not a submodule of the model and must already sit on the
model's device and dtype. A transcoder's site runs at ``hook_name_out`` and a second hook at its
``hook_name`` hands it the input; its hook points are ``<hook_name_out>.hook_sae_*``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from saecore.sae import SAE
from saecore_source_llm.hook_widths import transformer_lens_hook_width
from saecore_source_llm.sae_splicing import SAESplicingMixin, SplicedSAE, sae_output_hook

_TL_VERSION = version("transformer-lens")
if int(_TL_VERSION.split(".")[0]) < 4:
    raise ImportError(
        f"saecore's SAETransformerBridge needs transformer-lens>=4 and transformer-lens {_TL_VERSION} is installed; "
        "with TransformerLens 3 use HookedSAETransformer, or pip install 'transformer-lens>=4'"
    )

from transformer_lens.model_bridge import TransformerBridge  # noqa: E402 - only once the version is known to fit


class SAETransformerBridge(SAESplicingMixin, TransformerBridge):  # type: ignore[misc]
    """A TransformerLens 4 ``TransformerBridge`` with SAEs spliced in at their hook points (SAELens's API)."""

    def __init__(self, *bridge_args: Any, **bridge_kwargs: Any) -> None:
        super().__init__(*bridge_args, **bridge_kwargs)
        self._start_splicing()

    def _start_splicing(self) -> None:
        self._spliced_saes: dict[str, SplicedSAE] = {}
        self._splice_handles: dict[str, list[RemovableHandle]] = {}

    @classmethod
    def boot_transformers(cls, model_name: str, **boot_kwargs: Any) -> SAETransformerBridge:  # type: ignore[override]
        """``TransformerBridge.boot_transformers`` (a Hub name or a local folder), returning this class."""
        return cls.from_bridge(TransformerBridge.boot_transformers(model_name, **boot_kwargs))

    @classmethod
    def from_bridge(cls, bridge: TransformerBridge) -> SAETransformerBridge:
        """Give a booted ``TransformerBridge`` the SAE methods; it is the same object afterwards, not a copy.

        TransformerLens builds bridges in factory functions that return the base class, so this
        changes the object's class rather than wrapping a model it has already wrapped.
        """
        if not isinstance(bridge, TransformerBridge):
            raise TypeError(f"from_bridge takes a transformer_lens TransformerBridge, got a {type(bridge).__name__}")
        bridge.__class__ = cls
        spliced: SAETransformerBridge = bridge  # type: ignore[assignment]
        spliced._start_splicing()
        return spliced

    def get_sae_hook_name(self, sae: SAE[Any], internal: str = "hook_sae_acts_post") -> str:
        """The name of one of ``sae``'s hook points in this model's ``hook_dict`` and caches.

        It is the SAE's own ``hook_name`` (the spelling it was given, alias or not) plus ``internal``; a
        transcoder's is its ``hook_name_out``, where it writes.
        """
        return f"{sae_output_hook(sae)}.{internal}"

    def _hook_names(self) -> Sequence[str]:
        return list(self.hook_dict)

    def _hook_width(self, hook_name: str, sae: SAE[Any]) -> int | None:
        return transformer_lens_hook_width(self.cfg, hook_name, sae)

    def _install(self, site: SplicedSAE) -> None:
        handles = [self._hook_with(site.output_name, site)]
        if site.reads_elsewhere:
            handles.append(self._hook_with(site.hook_name, site.capture))
        self._splice_handles[site.hook_name] = handles
        for name, sae_point in site.sae.hook_dict.items():
            sae_point.name = f"{site.output_name}.{name}"
            self._hook_registry[sae_point.name] = sae_point

    def _hook_with(self, hook_name: str, run: Callable[[torch.Tensor], torch.Tensor]) -> RemovableHandle:
        """Run ``run`` first on the activation at ``hook_name``, in the shape hook functions see there."""
        point = self.hook_dict[hook_name]
        conversion = getattr(point, "hook_conversion", None)

        def run_site(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            if conversion is None:
                return run(output)
            return conversion.revert(run(conversion.convert(output)))  # type: ignore[no-any-return]

        return point.register_forward_hook(run_site, prepend=True)

    def _uninstall(self, site: SplicedSAE) -> None:
        for handle in self._splice_handles.pop(site.hook_name):
            handle.remove()
        for name in site.sae.hook_dict:
            self._hook_registry.pop(f"{site.output_name}.{name}")
        site.sae.name_hook_points()
