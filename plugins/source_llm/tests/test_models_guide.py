"""docs/models.md stays true: its ```python blocks run in order, as one script, on TransformerLens 3."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "models.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.skipif(int(version("transformer-lens").split(".")[0]) >= 4,
                    reason="HookedSAETransformer is built for transformer-lens 3.x")
def test_the_models_guide_runs() -> None:
    blocks = FENCE.findall(GUIDE.read_text(encoding="utf-8"))
    assert len(blocks) >= 4, f"expected the guide's examples in {GUIDE}"
    namespace: dict[str, Any] = {"__name__": "models_guide"}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"models.md block {number}", "exec"), namespace)
