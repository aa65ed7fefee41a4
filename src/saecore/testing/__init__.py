"""saecore.testing: the conformance kit every plugin runs in its own tests.

Subclass a suite in a test module, name what your plugin registers, and pytest collects
every check::

    from saecore.testing import ArchitectureConformance, SourceConformance

    class TestConformance(ArchitectureConformance):
        architecture = "topk"
        training_recipe = "topk"
        config_overrides = {"k": 4}

    class TestMySource(SourceConformance):
        source = "vision_toy"
        config = {"image_size": 16}

A recipe with a fast training route (``saecore.sparse``) checks it against its own
dense step with :class:`FastRouteConformance`::

    from saecore.testing import FastRouteConformance

    class TestFastRoute(FastRouteConformance):
        training_recipe = "standard"

        def sparsify(self, sae):
            sae.b_enc.data -= 2.0  # few positive pre-activations: the support route runs

To prove your training step's cost, count the matrix products it runs, forward and
backward, with :class:`MatmulCounter` (each recorded as a :class:`MatrixProduct`)::

    from saecore.testing import MatmulCounter

    with MatmulCounter() as counter:
        sae.training_forward_pass(step_input).loss.backward()
    assert sorted(counter.multiply_adds) == [batch * d_in * d_sae] * 5

Numerical tests compare against float64 formulas written in the test;
:func:`reference_normalization` spells out the per-token input normalisations
(``constant_norm_rescale``, ``layer_norm``) for them.

:class:`RanksInOneProcess` serves, in one process, the batches a data-parallel job over a
self-sharding source trains on, so a source's ``shard_for_rank`` can be checked against a
single-process run.

Fixtures for plugin tests (``saecore_registry``, ``saecore_register``,
``saecore_only_plugins``) come from :mod:`saecore.testing.pytest_plugin`, which pytest
loads through its ``pytest11`` entry point.
"""

from saecore.testing.architecture_conformance import ArchitectureConformance
from saecore.testing.fast_route_conformance import FastRouteConformance
from saecore.testing.matmul_count import MatmulCounter, MatrixProduct
from saecore.testing.ranks_in_one_process import RanksInOneProcess
from saecore.testing.reference_normalization import reference_normalization
from saecore.testing.source_conformance import SourceConformance

__all__ = [
    "ArchitectureConformance",
    "FastRouteConformance",
    "MatmulCounter",
    "MatrixProduct",
    "RanksInOneProcess",
    "SourceConformance",
    "reference_normalization",
]
