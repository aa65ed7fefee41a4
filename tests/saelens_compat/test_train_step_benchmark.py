"""benchmarks/train_step_throughput.py at a tiny shape on CPU: every library's row, each against its own floor.

The realistic GPU shape can only be timed on a GPU (benchmarks/gpu_check.sh); here the
same code runs at d_in 64, d_sae 512, k 8, batch 256, under ``--autocast``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "train_step_throughput.py"


def _benchmark() -> ModuleType:
    """The script as a module (registered first: its dataclasses look their module up by name)."""
    if SCRIPT.stem in sys.modules:
        return sys.modules[SCRIPT.stem]
    spec = importlib.util.spec_from_file_location(SCRIPT.stem, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[SCRIPT.stem] = module
    spec.loader.exec_module(module)
    return module


def test_realistic_is_the_gpu_shape() -> None:
    args = _benchmark().parse_args(["--realistic", "--device", "cuda", "--autocast"])
    assert (args.d_in, args.d_sae, args.k, args.batch, args.warmup, args.repeats) == (2304, 65536, 64, 4096, 1, 3)
    with pytest.raises(SystemExit):
        _benchmark().parse_args(["--realistic", "--large"])


def test_tiny_cpu_run_under_autocast_rates_bf16_rows_against_the_bf16_floor(tmp_path: Path) -> None:
    pytest.importorskip("sae_lens")
    out = tmp_path / "bench.json"
    _benchmark().main([
        "--device", "cpu", "--d-in", "64", "--d-sae", "512", "--k", "8", "--batch", "256", "--arch", "topk",
        "--impl", "saecore", "--impl", "sae_lens", "--autocast", "--variant", "support_route", "--warmup", "1",
        "--repeats", "1",
        "--threads", "1", "--no-memory", "--json", str(out),
    ])
    result = json.loads(out.read_text())
    precisions = {row["impl"]: row["precision"] for row in result["rows"]}
    assert precisions == {"saecore+autocast": "bf16", "saecore+support_route": "fp32", "sae_lens": "bf16"}
    assert result["floor"]["bf16_gflops_best"] > 0 and result["floor"]["gflops_best"] > 0
    for row in result["rows"]:
        assert row["tok_s_best"] > 0 and 0 < row["floor_fraction_best"]
