"""The saecore conformance kit, run against the temporal architecture (inference only, as in SAELens).

Folding is refused: the decoder also shapes the context predictions. The kit's leading-shape
check treats every leading dimension as a batch of independent inputs; a temporal SAE's
second-to-last dimension is the sequence, so that one check is replaced by its temporal
form here.
"""

import torch

from saecore.errors import UnsafeFoldError
from saecore.testing import ArchitectureConformance
from saecore.testing.architecture_conformance import D_IN, D_SAE


class TestConformance(ArchitectureConformance):
    architecture = "temporal"
    config_overrides = {"n_heads": 2, "bottleneck_factor": 4, "kval_topk": 6}  # noqa: RUF012 (read as a class attribute)
    refused_operations = {"fold_W_dec_norm": UnsafeFoldError}  # noqa: RUF012 (read as a class attribute)

    def test_accepts_any_leading_shape(self) -> None:
        sae = self.make_sae()
        sequences = self.inputs(2, 3, 4)
        assert sae.encode(sequences).shape == (2, 3, 4, D_SAE)
        assert sae(sequences).shape == (2, 3, 4, D_IN)
        torch.testing.assert_close(sae(sequences).reshape(6, 4, D_IN), sae(sequences.reshape(6, 4, D_IN)),
                                   rtol=1e-5, atol=1e-6)
        assert sae(sequences[0, 0, 0]).shape == (D_IN,)
