"""Each TransformerLens major version has its own SAE model class; importing the other one names what is needed."""

from __future__ import annotations

from importlib.metadata import version

import pytest

TL_MAJOR = int(version("transformer-lens").split(".")[0])


@pytest.mark.skipif(TL_MAJOR < 4, reason="the refusal is for transformer-lens 4")
def test_with_transformer_lens_4_hooked_sae_transformer_points_to_the_bridge() -> None:
    with pytest.raises(ImportError, match=r"needs transformer-lens<4 \(3.x\) and transformer-lens 4\..* is installed; "
                                          r"with TransformerLens 4 use SAETransformerBridge"):
        import saecore_source_llm.hooked_sae_transformer  # noqa: F401


@pytest.mark.skipif(TL_MAJOR >= 4, reason="the refusal is for transformer-lens 3")
def test_with_transformer_lens_3_the_bridge_points_to_hooked_sae_transformer() -> None:
    with pytest.raises(ImportError, match=r"^saecore's SAETransformerBridge needs transformer-lens>=4 and "
                                          r"transformer-lens 3\..* is installed; with TransformerLens 3 use "
                                          r"HookedSAETransformer, or pip install 'transformer-lens>=4'$"):
        import saecore_source_llm.sae_transformer_bridge  # noqa: F401
