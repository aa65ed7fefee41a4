"""SAEs saved by saecore load in SAELens 6.x and compute the same thing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from saelens_compat_support import (
    Case,
    assert_cfg_carries_file,
    assert_same_outputs,
    inference_cases,
    parameters_of,
    randomize_parameters,
    read_cfg_json,
)

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")

SAELENS_CLASS_NAMES = {"standard": "StandardSAE", "gated": "GatedSAE", "jumprelu": "JumpReLUSAE", "topk": "TopKSAE"}


@pytest.mark.parametrize("case", inference_cases())
def test_saecore_sae_loads_in_saelens(case: Case, tmp_path: Path) -> None:
    saecore_sae = saecore.SAE.from_dict(case.config_dict())
    randomize_parameters(saecore_sae)
    saecore_sae.save_model(tmp_path)
    file_cfg = read_cfg_json(tmp_path)

    loaded = sae_lens.SAE.load_from_disk(tmp_path)

    assert type(loaded) is getattr(sae_lens, SAELENS_CLASS_NAMES[case.architecture])
    assert_cfg_carries_file(loaded.cfg.to_dict(), file_cfg, "SAELens")
    written = set(file_cfg)
    missing = [key for key in loaded.cfg.to_dict() if key not in written]
    assert not missing, f"saecore's cfg.json lacks {missing}; SAELens would fill in its own defaults"
    saecore_params = parameters_of(saecore_sae)
    loaded_params = parameters_of(loaded)
    assert sorted(loaded_params) == sorted(saecore_params)
    for name, tensor in saecore_params.items():
        assert torch.equal(loaded_params[name], tensor), f"parameter {name} differs after SAELens loads it"
    assert_same_outputs(loaded, saecore_sae, case, file_cfg, saecore_params)
