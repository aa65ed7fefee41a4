"""The saecore source conformance kit, run against the llm source reading a pair and a plain hook.

One forward pass of the tiny GPT-2 serves two streams: an (input, target) pair for a
transcoder (``ln_2`` → ``mlp`` of block 0) and block 1's output; each read alone must
serve the same columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from saecore.testing import SourceConformance

PAIR_IN, PAIR_OUT, PLAIN = "transformer.h.0.ln_2", "transformer.h.0.mlp", "transformer.h.1"


@pytest.mark.filterwarnings("ignore:.*read more than once:UserWarning")
class TestLLMSourceOfSeveralStreams(SourceConformance):
    source = "llm"
    stream_alone: ClassVar[dict[str, dict[str, Any]]] = {
        PAIR_IN: {"additional_hook_names": []},
        PLAIN: {"hook_name": PLAIN, "hook_name_out": None, "additional_hook_names": []},
    }

    @pytest.fixture(autouse=True)
    def _tiny_model_and_text(self, model_dir: Path, text_dir: Path) -> None:
        self.config = {  # type: ignore[misc]
            "model_name": str(model_dir), "model_class_name": "AutoModelForCausalLM", "dataset_path": str(text_dir),
            "context_size": 16, "store_batch_size_prompts": 4, "n_batches_in_buffer": 4,
            "hook_name": PAIR_IN, "hook_name_out": PAIR_OUT, "additional_hook_names": [PLAIN],
            "eval_batch_size_prompts": 4, "n_eval_batches": 1, "verbose": False,
        }
