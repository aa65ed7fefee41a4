"""The JumpReLU SAE decodes a sparse code through its nonzeros, with the float64 formula's numbers.

The two routes and the density threshold are the core's (``saecore.sparse.decode``,
tested in ``tests/core/test_sparse_decode.py``). This plugin's part: its ``forward`` and
``decode`` go through them, so a code the thresholds make at most 1/16 dense costs no
decoder matmul, and a denser one takes the matmul; either way the output is the formula's.
"""

from __future__ import annotations

import pytest
import torch

from saecore import SAE
from saecore.sparse import SPARSE_DECODE_MAX_DENSITY
from saecore.testing import MatmulCounter
from saecore.testing.architecture_conformance import randomize_parameters

D_IN, D_SAE = 8, 64
ROWS = 12


@pytest.mark.parametrize(("threshold", "sparse"), [(1.6, True), (0.0, False)])
def test_a_sparse_code_decodes_without_the_decoder_matmul(threshold: float, sparse: bool) -> None:
    sae = SAE.from_dict({"architecture": "jumprelu", "d_in": D_IN, "d_sae": D_SAE, "dtype": "float64"})
    randomize_parameters(sae, seed=2, nonnegative=("threshold",))
    with torch.no_grad():
        sae.threshold.fill_(threshold)  # how many latents clear it: a sparse or a dense code
    x = torch.randn(ROWS, D_IN, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p = {k: v.detach() for k, v in sae.state_dict().items()}
    hidden_pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    acts = torch.relu(hidden_pre) * (hidden_pre > p["threshold"]).double()
    assert (0 < int(torch.count_nonzero(acts)) <= SPARSE_DECODE_MAX_DENSITY * acts.numel()) == sparse
    expected = (acts.unsqueeze(-1) * p["W_dec"]).sum(dim=-2) + p["b_dec"]

    with torch.no_grad(), MatmulCounter() as forward:
        out = sae(x)
    with torch.no_grad(), MatmulCounter() as decoding:
        decoded = sae.decode(acts)
    product = ROWS * D_IN * D_SAE
    assert forward.multiply_adds == [product] * (1 if sparse else 2)  # the encoder, and the decoder if dense
    assert decoding.multiply_adds == [product] * (0 if sparse else 1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(decoded, expected, rtol=1e-12, atol=1e-12)
