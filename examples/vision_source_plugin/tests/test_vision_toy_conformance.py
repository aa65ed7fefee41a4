"""The saecore source conformance kit, run against the vision_toy source."""

from __future__ import annotations

from typing import Any, ClassVar

from saecore.testing import SourceConformance


class TestVisionToySource(SourceConformance):
    source = "vision_toy"
    config: ClassVar[dict[str, Any]] = {"image_size": 8, "images_per_chunk": 4}
    batch_size = 48
