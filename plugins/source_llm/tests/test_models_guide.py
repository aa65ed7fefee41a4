"""docs/models.md stays true: its ```python blocks run in order, as one script.

The blocks of the "Hugging Face models" section need only transformers and run with any
TransformerLens; those of "TransformerLens 4" use SAETransformerBridge and run on TransformerLens 4;
the others use HookedSAETransformer and run on TransformerLens 3.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "models.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
HF_SECTION = re.compile(r"^## Hugging Face models\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
BRIDGE_SECTION = re.compile(r"^## TransformerLens 4: SAETransformerBridge\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
TL_MAJOR = int(version("transformer-lens").split(".")[0])


def run_blocks(text: str, at_least: int) -> None:
    blocks = FENCE.findall(text)
    assert len(blocks) >= at_least, f"expected the guide's examples in {GUIDE}"
    namespace: dict[str, Any] = {"__name__": "models_guide"}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"models.md block {number}", "exec"), namespace)


@pytest.mark.skipif(TL_MAJOR >= 4, reason="HookedSAETransformer is built for transformer-lens 3.x")
def test_the_models_guide_runs() -> None:
    run_blocks(BRIDGE_SECTION.sub("", HF_SECTION.sub("", GUIDE.read_text(encoding="utf-8"))), at_least=4)


@pytest.mark.skipif(TL_MAJOR < 4, reason="SAETransformerBridge is built for transformer-lens 4.x")
def test_the_bridge_section_runs() -> None:
    section = BRIDGE_SECTION.search(GUIDE.read_text(encoding="utf-8"))
    assert section is not None, f"expected a '## TransformerLens 4: SAETransformerBridge' section in {GUIDE}"
    run_blocks(section.group(), at_least=1)


def test_the_hugging_face_section_runs() -> None:
    section = HF_SECTION.search(GUIDE.read_text(encoding="utf-8"))
    assert section is not None, f"expected a '## Hugging Face models' section in {GUIDE}"
    run_blocks(section.group(), at_least=3)
