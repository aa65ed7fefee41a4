"""Fuzzed checkpoint files: reading a checkpoint folder succeeds, or fails with a saecore error naming the file."""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from fixtures.saes import randomized_sae
from hypothesis import given
from hypothesis import strategies as st

from fuzz.inputs import raises_only_named_errors
from saecore.training.checkpoint import SOURCE_STATE_FILENAME, TRAINER_STATE_FILENAME, read_checkpoint

pytest.importorskip("saecore_sae_standard")

STATE = {"step": 3, "n_tokens": 4096,
         "optimizer": {"state": {0: {"exp_avg": torch.ones(4)}}, "param_groups": [{"lr": 0.1}]},
         "rng": torch.zeros(8, dtype=torch.uint8), "names": ["a", "b"]}


def _template() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-checkpoint-")) / "4096"
    randomized_sae().save_model(folder, sparsity=torch.zeros(16))
    for name in (TRAINER_STATE_FILENAME, SOURCE_STATE_FILENAME):
        buffer = io.BytesIO()
        torch.save(STATE, buffer)
        (folder / name).write_bytes(buffer.getvalue())
    return folder


TEMPLATE = _template()
FILES = [TRAINER_STATE_FILENAME, SOURCE_STATE_FILENAME, "cfg.json", "sae_weights.safetensors"]


def _copy(tmp: Path) -> Path:
    folder = tmp / "4096"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(TEMPLATE, folder)
    return folder


@given(which=st.sampled_from(FILES), cut=st.integers(0, 2000),
       flips=st.lists(st.tuples(st.integers(0, 100_000), st.integers(1, 255)), max_size=6))
def test_fuzzed_checkpoint_bytes(tmp_path: Path, which: str, cut: int, flips: list[tuple[int, int]]) -> None:
    folder = _copy(tmp_path)
    data = bytearray((folder / which).read_bytes())
    for position, mask in flips:
        data[position % len(data)] ^= mask
    (folder / which).write_bytes(bytes(data[:max(len(data) - cut, 0)]))
    raises_only_named_errors(lambda: read_checkpoint(folder, "cpu"), str(folder / which))


@given(which=st.sampled_from([TRAINER_STATE_FILENAME, SOURCE_STATE_FILENAME]), raw=st.binary(max_size=200))
def test_random_bytes_as_state(tmp_path: Path, which: str, raw: bytes) -> None:
    folder = _copy(tmp_path)
    (folder / which).write_bytes(raw)
    raises_only_named_errors(lambda: read_checkpoint(folder, "cpu"), str(folder / which))
