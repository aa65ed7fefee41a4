"""``upload_saes_to_huggingface`` takes SAELens's parameters, with SAELens's defaults."""

from __future__ import annotations

import inspect

import pytest

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")


def test_upload_takes_saelens_parameters_and_defaults() -> None:
    ours = inspect.signature(saecore.upload_saes_to_huggingface).parameters
    theirs = inspect.signature(sae_lens.upload_saes_to_huggingface).parameters
    assert [(p.name, p.default) for p in ours.values()] == [(p.name, p.default) for p in theirs.values()]


def test_both_refuse_an_empty_mapping_with_a_value_error() -> None:
    for library in (sae_lens, saecore):
        with pytest.raises(ValueError):
            library.upload_saes_to_huggingface({}, "me/saes")
