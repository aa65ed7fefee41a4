"""The SAELens v6 folder format: cfg.json + sae_weights.safetensors (+ sparsity.safetensors).

Reading never unpickles (safetensors only); every failure names the file that caused
it. ``saecore.resolver.build_sae`` builds the SAE on the meta device and assigns the
tensors read here, so memory holds one copy of the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from saecore.errors import SAEFileError
from saecore.io.atomic import write_atomically, write_text_atomically
from saecore.io.format import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME, SPARSITY_KEY
from saecore.io.legacy_config import is_pre_v6_config, upgrade_pre_v6_config
from saecore.version import __version__


def save_sae_files(
    folder: Path, cfg_dict: dict[str, Any], state_dict: dict[str, torch.Tensor], sparsity: torch.Tensor | None
) -> tuple[Path, Path]:
    """Write the three files of an SAE folder, each atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg_dict = dict(cfg_dict)
    metadata = dict(cfg_dict.get("metadata") or {})
    metadata.setdefault("saecore_version", __version__)
    cfg_dict["metadata"] = metadata
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    weights_path = folder / SAE_WEIGHTS_FILENAME
    cfg_path = folder / SAE_CFG_FILENAME
    write_atomically(weights_path, lambda tmp: save_file(tensors, str(tmp)))
    write_text_atomically(cfg_path, json.dumps(cfg_dict, indent=2))
    if sparsity is not None:
        log_sparsity = {SPARSITY_KEY: sparsity.detach().float().contiguous().cpu()}
        write_atomically(folder / SPARSITY_FILENAME, lambda tmp: save_file(log_sparsity, str(tmp)))
    return weights_path, cfg_path


def read_cfg_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SAEFileError(f"{path}: no such file (an SAE folder needs {SAE_CFG_FILENAME})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SAEFileError(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise SAEFileError(f"{path}: JSON nested too deeply to read (cfg.json is a flat object of settings)") from None
    if not isinstance(data, dict):
        raise SAEFileError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_safetensors(path: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise SAEFileError(f"{path}: no such file")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise SAEFileError(f"{path}: corrupt or truncated safetensors file ({error})") from None


def read_sparsity_file(path: Path, d_sae: Any = None) -> torch.Tensor:
    """The log10 firing frequency of each latent: a float tensor of shape [d_sae] (``d_sae`` from cfg.json)."""
    tensors = read_safetensors(path)
    if SPARSITY_KEY not in tensors:
        raise SAEFileError(f"{path}: has no tensor named {SPARSITY_KEY!r} (found {sorted(tensors)})")
    sparsity = tensors[SPARSITY_KEY]
    expected = [d_sae] if isinstance(d_sae, int) else ["d_sae"]
    if sparsity.dim() != 1 or (isinstance(d_sae, int) and sparsity.shape[0] != d_sae):
        raise SAEFileError(f"{path}: tensor {SPARSITY_KEY!r} has shape {list(sparsity.shape)}; expected {expected}")
    if not sparsity.is_floating_point():
        raise SAEFileError(f"{path}: tensor {SPARSITY_KEY!r} has dtype {sparsity.dtype}; expected a float dtype")
    return sparsity


def normalize_cfg_dict(cfg_dict: dict[str, Any], where: str = "cfg.json") -> dict[str, Any]:
    """Upgrade pre-6.0 configs; v6 configs pass through unchanged."""
    return upgrade_pre_v6_config(cfg_dict, where) if is_pre_v6_config(cfg_dict) else dict(cfg_dict)


def drop_identity_scaling_factor(state_dict: dict[str, torch.Tensor], source: str) -> None:
    """SAELens 3-5 stored a finetuning ``scaling_factor``; all ones it is a no-op and is dropped."""
    factor = state_dict.get("scaling_factor")
    if factor is None:
        return
    if not torch.all(factor == 1):
        raise SAEFileError(f"{source}: tensor 'scaling_factor' is not all ones; finetuning scaling factors "
                           "(SAELens < 6) are not supported")
    del state_dict["scaling_factor"]


def check_tensors_match(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], cfg_dict: dict[str, Any], source: str
) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing:
        raise SAEFileError(f"{source}: missing tensor(s) {missing} needed by architecture "
                           f"{cfg_dict.get('architecture')!r} (found {sorted(found)})")
    if unexpected:
        raise SAEFileError(f"{source}: unexpected tensor(s) {unexpected} for architecture "
                           f"{cfg_dict.get('architecture')!r}")
    for name, tensor in expected.items():
        if not found[name].is_floating_point():
            raise SAEFileError(f"{source}: tensor {name!r} has dtype {found[name].dtype}; "
                               "SAE weights must be floating point")
        if tuple(found[name].shape) != tuple(tensor.shape):
            raise SAEFileError(
                f"{source}: tensor {name!r} has shape {list(found[name].shape)} but cfg.json "
                f"(d_in={cfg_dict.get('d_in')}, d_sae={cfg_dict.get('d_sae')}) needs {list(tensor.shape)}"
            )
