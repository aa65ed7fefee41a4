"""saecore.sparse: the toolkit for training steps and decodes that run over sparse activations.

An architecture plugin computes its dense encoder product as usual, then, when a batch's
activations are sparse, finishes the step over their *support* (the entries where an
activation or its gradient can be nonzero): a decode and its gradients cost
``nnz · d_in`` instead of ``N · d_sae · d_in``. The pieces, by module:

- :mod:`~saecore.sparse.route`: whether a step takes the support route
  (:func:`sparse_route_support`: possible, sparse enough, and the support itself);
- :mod:`~saecore.sparse.support`: :class:`Support`, the entries, for a dense batch's
  nonzeros or for codes of ``m`` latents per row;
- :mod:`~saecore.sparse.encoder`: pre-activations at the support with a sparse backward;
- :mod:`~saecore.sparse.decode`: decoding over a support (training) or through the
  nonzeros (inference, :func:`decode_product`);
- :mod:`~saecore.sparse.step`: the step output from the support's values;
- :mod:`~saecore.sparse.auxk`: the AuxK dead-latent loss, on either route;
- :mod:`~saecore.sparse.ranking`: what selection-by-ranking SAEs (TopK, BatchTopK) share;
- :mod:`~saecore.sparse.rows`: the ``embedding_bag`` row sums everything above reduces to.

docs/plugins.md ("Fast steps") shows a plugin using it; ``saecore.testing.FastRouteConformance``
checks a plugin's fast route against its own dense step.
"""

from saecore.sparse.auxk import (
    AUX_LOSS_NAME,
    AuxKPlan,
    auxk_error,
    auxk_fast_reconstruction,
    auxk_loss,
    auxk_plan,
)
from saecore.sparse.decode import SPARSE_DECODE_MAX_DENSITY, decode_product, decode_sparse_coo, decode_support
from saecore.sparse.encoder import preactivations_at_support, support_encoder_products, support_preactivations
from saecore.sparse.ranking import (
    check_fold_keeps_selection,
    fold_decoder_norms_for_saving,
    inverse_decoder_norms,
    ranking_scores,
)
from saecore.sparse.route import SPARSE_TRAINING_MAX_DENSITY, sparse_route_support, support_route_possible
from saecore.sparse.rows import latent_firing_counts
from saecore.sparse.step import support_training_output
from saecore.sparse.support import Support, per_row_sum

__all__ = [
    "AUX_LOSS_NAME",
    "SPARSE_DECODE_MAX_DENSITY",
    "SPARSE_TRAINING_MAX_DENSITY",
    "AuxKPlan",
    "Support",
    "auxk_error",
    "auxk_fast_reconstruction",
    "auxk_loss",
    "auxk_plan",
    "check_fold_keeps_selection",
    "decode_product",
    "decode_sparse_coo",
    "decode_support",
    "fold_decoder_norms_for_saving",
    "inverse_decoder_norms",
    "latent_firing_counts",
    "per_row_sum",
    "preactivations_at_support",
    "ranking_scores",
    "sparse_route_support",
    "support_encoder_products",
    "support_preactivations",
    "support_route_possible",
    "support_training_output",
]
