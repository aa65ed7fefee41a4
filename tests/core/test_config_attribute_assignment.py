"""Assigning a name that is not a field works as on SAELens's dataclass configs: kept in metadata, with a warning."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest

from saecore import SAEConfig
from saecore.errors import ConfigError


def test_an_unknown_name_is_kept_in_metadata_and_reads_back() -> None:
    cfg = SAEConfig(d_in=4, d_sae=8)
    with pytest.warns(UserWarning, match=r"SAEConfig: 'hook_layer' is not a field; its value is kept in metadata$"):
        cfg.hook_layer = 3
    assert cfg.hook_layer == 3 and cfg.metadata.hook_layer == 3
    assert cfg.to_dict()["metadata"]["hook_layer"] == 3
    assert copy.deepcopy(cfg).hook_layer == pickle.loads(pickle.dumps(cfg)).hook_layer == 3
    assert not hasattr(cfg, "hook_name")  # only assigned names read back


def test_a_name_close_to_a_field_warns_naming_the_field() -> None:
    cfg = SAEConfig(d_in=4, d_sae=8)
    with pytest.warns(UserWarning, match="did you mean the field 'd_sae'"):
        cfg.d_sea = 16
    assert cfg.d_sae == 8


def test_fields_are_still_validated_on_assignment() -> None:
    cfg = SAEConfig(d_in=4, d_sae=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg.d_sae = 16
    with pytest.raises(ConfigError, match="field 'd_in' = 'x'"):
        cfg.d_in = "x"


def test_class_attributes_are_not_shadowed_by_assignment() -> None:
    cfg = SAEConfig(d_in=4, d_sae=8)
    with pytest.raises(ConfigError, match="'architecture'"):
        cfg.architecture = "standard"
    assert "architecture" not in cfg.metadata
