"""What an architecture declares to the conformance kit: the operations it refuses.

An outside AbsTopK-style SAE refuses ``fold_W_dec_norm``; declaring it turns the kit's
fold check into a check of the refusal, with no test overridden by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
import torch
from fixtures.signed_topk import SIGNED_TOPK, SignedTopKPlugin, SignedTopKSAE

from saecore import SAE
from saecore.errors import UnsafeFoldError
from saecore.testing import ArchitectureConformance


@pytest.fixture(autouse=True)
def signed_topk_registered(saecore_register: Callable[[Any, str], None]) -> None:
    saecore_register(SignedTopKPlugin(), SIGNED_TOPK)


class TestSignedTopKConformance(ArchitectureConformance):
    architecture = SIGNED_TOPK
    training_recipe = SIGNED_TOPK
    config_overrides: ClassVar[dict[str, Any]] = {"k": 4}
    refused_operations: ClassVar[dict[str, type[Exception]]] = {"fold_W_dec_norm": UnsafeFoldError}


class Undeclared(ArchitectureConformance):
    architecture = SIGNED_TOPK
    config_overrides: ClassVar[dict[str, Any]] = {"k": 4}


def test_an_undeclared_refusal_fails_the_fold_check() -> None:
    with pytest.raises(UnsafeFoldError):
        Undeclared().test_fold_W_dec_norm_keeps_outputs()


def test_a_declared_refusal_must_leave_the_sae_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    def scale_then_refuse(sae: SAE[Any]) -> None:
        with torch.no_grad():
            sae.W_dec.mul_(2)
        raise UnsafeFoldError("refused, but after changing W_dec")

    monkeypatch.setattr(SignedTopKSAE, "fold_W_dec_norm", scale_then_refuse)
    with pytest.raises(AssertionError, match="a refusal must leave the SAE as it was"):
        TestSignedTopKConformance().test_fold_W_dec_norm_keeps_outputs()


def test_a_refusal_of_an_operation_the_kit_does_not_know_is_named() -> None:
    class RefusesUnknown(TestSignedTopKConformance):
        refused_operations: ClassVar[dict[str, type[Exception]]] = {"fold_everything": NotImplementedError}

    message = r"refused_operations names \['fold_everything'\]; allowed: fold_W_dec_norm"
    with pytest.raises(AssertionError, match=message):
        RefusesUnknown().test_declared_refusals_are_operations_the_kit_knows()
