"""State dicts published as ``torch.save`` pickles (``.pt``/``.pth``), read without running their code.

``torch.load(weights_only=True)`` refuses anything but tensors and plain containers, so a
published file cannot run code on load.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from saecore.errors import SAEFileError


def load_pickled_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The file's ``{name: tensor}`` dict; an error naming the file if it is anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SAEFileError(f"{path}: not a loadable tensor state dict ({message})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SAEFileError(f"{path}: expected a dict of tensors (a state_dict), found {type(state).__name__}")
    return state
