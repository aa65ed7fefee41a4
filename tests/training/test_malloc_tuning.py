"""tune_malloc: applied once per process on CPU under glibc, a no-op that says why everywhere else.

The settings are process-wide, so the test that applies them runs in a child process;
whether they pay off is a timing question for benchmarks/train_step_throughput.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from saecore_sae_standard.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from training_helpers import ToySource, ToySourceConfig

from saecore.training import SAETrainer, TrainerConfig, allocator
from saecore.training.allocator import glibc_version, tune_malloc

needs_glibc = pytest.mark.skipif(glibc_version() is None, reason="mallopt tuning exists only on glibc systems")

# Applies the tuning twice, then checks with glibc's own statistics that a 64 MiB block
# now comes from the heap (arena) instead of a private mapping (hblkhd).
CHILD = textwrap.dedent("""
    import ctypes, json
    import torch
    from saecore.training.allocator import tune_malloc

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    first, second = tune_malloc(torch.device("cpu")), tune_malloc(torch.device("cpu"))
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(64 << 20)
    mapped = libc.mallinfo2().hblkhd - before
    libc.free(block)
    print(json.dumps({"first": [first.applied, first.reason], "second": [second.applied, second.reason],
                      "mapped_bytes": mapped}))
""")


def _clean_environment() -> dict[str, str]:
    dropped = ("LD_PRELOAD", "GLIBC_TUNABLES")
    return {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in dropped}


@needs_glibc
def test_applied_once_on_this_glibc_machine_and_large_blocks_stay_on_the_heap() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], env=_clean_environment(), capture_output=True, text=True,
                          check=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["first"][0] is True and result["first"][1].startswith("glibc")
    assert result["second"] == result["first"]
    assert result["mapped_bytes"] == 0


@pytest.fixture
def untuned(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if this process had not been tuned yet (the reasons below never call mallopt)."""
    monkeypatch.setattr(allocator, "_applied", None)
    for name in (*allocator.ENVIRONMENT_SETTINGS, "GLIBC_TUNABLES", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("untuned")
def test_cuda_is_left_alone() -> None:
    result = tune_malloc(torch.device("cuda", 0))
    assert not result.applied
    assert "cuda:0" in result.reason and "caching allocator" in result.reason


@pytest.mark.usefixtures("untuned")
@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch, platform: str) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    result = tune_malloc(torch.device("cpu"))
    assert not result.applied
    assert platform in result.reason and "glibc" in result.reason


@pytest.mark.usefixtures("untuned")
@needs_glibc
@pytest.mark.parametrize(
    ("variable", "value"), [("MALLOC_TOP_PAD_", "0"), ("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")]
)
def test_settings_from_the_environment_are_kept(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    result = tune_malloc(torch.device("cpu"))
    assert not result.applied
    assert variable in result.reason


@pytest.mark.usefixtures("untuned")
@needs_glibc
def test_a_preloaded_allocator_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "libjemalloc.so.2")
    result = tune_malloc(torch.device("cpu"))
    assert not result.applied
    assert "libjemalloc.so.2" in result.reason


@pytest.mark.parametrize("enabled", [True, False])
def test_the_trainer_reports_what_it_did(tmp_path: Path, enabled: bool) -> None:
    cfg = TrainerConfig(training_tokens=64, train_batch_size_tokens=32, tune_malloc=enabled, output_path=None,
                        checkpoint_path=tmp_path, verbose=False)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=8, d_sae=16))
    trainer = SAETrainer(cfg, sae, ToySource(ToySourceConfig()))
    if not enabled:
        assert trainer.malloc_tuning is None
    else:
        assert trainer.malloc_tuning == tune_malloc(torch.device("cpu"))


def test_the_python_api_leaves_malloc_alone_unless_asked(tmp_path: Path) -> None:
    cfg = TrainerConfig(training_tokens=64, train_batch_size_tokens=32, output_path=None, checkpoint_path=tmp_path,
                        verbose=False)
    assert cfg.tune_malloc is False
    trainer = SAETrainer(cfg, StandardTrainingSAE(StandardTrainingSAEConfig(d_in=8, d_sae=16)),
                         ToySource(ToySourceConfig()))
    assert trainer.malloc_tuning is None
