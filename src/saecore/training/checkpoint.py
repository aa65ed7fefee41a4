"""Checkpoint folders: everything needed to continue a run exactly where it stopped.

``{checkpoint_path}/{n_tokens}/`` holds

* ``cfg.json`` + ``sae_weights.safetensors`` (+ ``sparsity.safetensors``): the training
  SAE as ``save_model`` writes it (SAELens's checkpoint layout);
* ``trainer_state.pt``: optimizer, LR schedule, step and token counters, feature
  statistics, the activation scale and the global RNG states;
* ``source_state.pt``: the source's ``state_dict()`` (position and RNG);
* ``runner_cfg.json``: the run's configuration.

A folder is built beside its final name and renamed into place, so a crash or a second
Ctrl-C mid-write never leaves a half checkpoint. Both ``.pt`` files are checked to load
with ``torch.load(weights_only=True)`` before anything is written: resuming never
unpickles code, and a state that could not be resumed fails now, not at resume time.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saecore.errors import SAEFileError
from saecore.io.atomic import replace_directory_atomically
from saecore.io.format import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME
from saecore.io.sae_files import read_cfg_json, read_safetensors

TRAINER_STATE_FILENAME = "trainer_state.pt"
SOURCE_STATE_FILENAME = "source_state.pt"
RUNNER_CFG_FILENAME = "runner_cfg.json"


@dataclass(frozen=True)
class CheckpointContents:
    folder: Path
    sae_cfg: dict[str, Any]
    sae_state_dict: dict[str, torch.Tensor]
    trainer_state: dict[str, Any]
    source_state: dict[str, Any]


def serialize_weights_only(value: Any, what: str) -> bytes:
    """``torch.save`` bytes of ``value``, verified to load back with ``weights_only=True``."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    data = buffer.getvalue()
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except pickle.UnpicklingError as error:
        raise TypeError(
            f"{what} holds objects torch.load(weights_only=True) refuses ({error}); a resumable state may "
            "contain only tensors, numbers, strings, None and lists/tuples/dicts of them"
        ) from None
    return data


def write_checkpoint(
    folder: Path,
    *,
    sae: Any,
    sparsity: torch.Tensor,
    trainer_state: dict[str, Any],
    source_state: dict[str, Any],
    source_name: str,
    run_config: dict[str, Any],
) -> Path:
    """Write one complete checkpoint folder atomically and return its path."""
    trainer_bytes = serialize_weights_only(trainer_state, "the trainer state")
    source_bytes = serialize_weights_only(source_state, f"{source_name}.state_dict()")
    config_text = json.dumps(run_config, indent=2)

    def build(staging: Path) -> None:
        sae.save_model(staging, sparsity=sparsity)
        (staging / TRAINER_STATE_FILENAME).write_bytes(trainer_bytes)
        (staging / SOURCE_STATE_FILENAME).write_bytes(source_bytes)
        (staging / RUNNER_CFG_FILENAME).write_text(config_text)

    replace_directory_atomically(folder, build)
    return folder


def _load_state(path: Path, device: torch.device | str) -> dict[str, Any]:
    if not path.is_file():
        raise SAEFileError(f"{path}: no such file (a checkpoint folder needs it to resume)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
        # A damaged file fails anywhere inside torch's zip and unpickling code, with any exception type.
        raise SAEFileError(f"{path}: the checkpoint is unreadable, not a weights-only torch file "
                           f"({type(error).__name__}: {' '.join(str(error).split())})") from None
    if not isinstance(state, dict):
        raise SAEFileError(f"{path}: expected a dict, found {type(state).__name__}")
    return state


def read_checkpoint(folder: Path, device: torch.device | str) -> CheckpointContents:
    """Read a checkpoint folder written by ``write_checkpoint`` (nothing is unpickled)."""
    if not folder.is_dir():
        raise SAEFileError(f"resume_from_checkpoint={str(folder)!r}: no such checkpoint folder")
    return CheckpointContents(
        folder=folder,
        sae_cfg=read_cfg_json(folder / SAE_CFG_FILENAME),
        sae_state_dict=read_safetensors(folder / SAE_WEIGHTS_FILENAME, device=str(device)),
        trainer_state=_load_state(folder / TRAINER_STATE_FILENAME, device),
        source_state=_load_state(folder / SOURCE_STATE_FILENAME, "cpu"),
    )
