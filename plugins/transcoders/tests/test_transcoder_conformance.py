"""The saecore conformance kit, run against every transcoder architecture and training recipe.

``d_out`` differs from the kit's ``d_in`` so that no input/output mix-up passes. A TopK
transcoder ranking by plain ``h`` refuses ``fold_W_dec_norm``, as the TopK SAE does.
"""

from typing import Any, ClassVar

from saecore.errors import UnsafeFoldError
from saecore.testing import ArchitectureConformance

D_OUT = 12


class TestTranscoder(ArchitectureConformance):
    architecture = "transcoder"
    training_recipe = "transcoder"
    config_overrides: ClassVar[dict[str, Any]] = {"d_out": D_OUT}


class TestSkipTranscoder(ArchitectureConformance):
    architecture = "skip_transcoder"
    training_recipe = "skip_transcoder"
    config_overrides: ClassVar[dict[str, Any]] = {"d_out": D_OUT}


class TestJumpReLUTranscoder(ArchitectureConformance):
    architecture = "jumprelu_transcoder"
    training_recipe = "jumprelu_transcoder"
    config_overrides: ClassVar[dict[str, Any]] = {"d_out": D_OUT}
    nonnegative_parameters = ("threshold",)


class TestJumpReLUSkipTranscoder(ArchitectureConformance):
    architecture = "jumprelu_skip_transcoder"
    training_recipe = "jumprelu_skip_transcoder"
    config_overrides: ClassVar[dict[str, Any]] = {"d_out": D_OUT}
    nonnegative_parameters = ("threshold",)


class TestTopKTranscoder(ArchitectureConformance):
    architecture = "topk_transcoder"
    training_recipe = "topk_transcoder"
    config_overrides: ClassVar[dict[str, Any]] = {"d_out": D_OUT, "k": 4, "rescale_acts_by_decoder_norm": True}


class TestTopKSkipTranscoder(ArchitectureConformance):
    architecture = "topk_skip_transcoder"
    training_recipe = "topk_skip_transcoder"
    config_overrides: ClassVar[dict[str, Any]] = {"d_out": D_OUT, "k": 4, "rescale_acts_by_decoder_norm": True}


class TestTopKTranscoderRankingByPlainScores(ArchitectureConformance):
    architecture = "topk_transcoder"
    config_overrides: ClassVar[dict[str, Any]] = {"d_out": D_OUT, "k": 4}
    refused_operations: ClassVar[dict[str, type[Exception]]] = {"fold_W_dec_norm": UnsafeFoldError}
