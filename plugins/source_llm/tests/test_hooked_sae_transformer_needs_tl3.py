"""With transformer-lens 4 installed, HookedSAETransformer's import names the version it needs."""

from __future__ import annotations

from importlib.metadata import version

import pytest

TL_MAJOR = int(version("transformer-lens").split(".")[0])



@pytest.mark.skipif(TL_MAJOR < 4, reason="the refusal is for transformer-lens 4")
def test_with_transformer_lens_4_the_import_says_what_is_needed() -> None:
    with pytest.raises(ImportError, match=r"needs transformer-lens<4 \(3.x\) and transformer-lens 4\..* is installed; "
                                          r"the TransformerLens 4 bridge \(SAETransformerBridge\) is not built yet"):
        import saecore_source_llm.hooked_sae_transformer  # noqa: F401
