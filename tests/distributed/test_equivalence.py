"""2 ranks (torchrun, gloo) train the SAE a single process trains on the same global batches.

``torchrun --nproc_per_node 2 -m saecore train ...`` against ``saecore train ...`` in one
process with identical flags: with slice sharding each rank trains on half of every
global batch and DDP averages the gradients, so the final weights must agree to float
rounding. The runs exercise what has to be reduced for that to hold: the input scale
(estimated on global batches), the dead-feature mask (summed firing counts, feeding
TopK's AuxK), LR warm-up and cosine decay.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from distributed_helpers import max_weight_difference, torchrun
from safetensors.torch import load_file

from saecore.cli.main import main as saecore_main

TOLERANCE = 1e-5

COMMON_FLAGS = [
    "--d-in", "16", "--d-sae", "32", "--n-features", "24", "--avg-active-features", "3",
    "--training-tokens", str(40 * 32), "--train-batch-size-tokens", "32",
    "--n-batches-for-norm-estimate", "2", "--n-eval-batches", "2",
    "--dead-feature-window", "4", "--feature-sampling-window", "15",
    "--lr-scheduler-name", "cosineannealing", "--lr-warm-up-steps", "5",
    "--normalize-activations", "expected_average_only_in", "--verbose", "false",
]
ARCHITECTURE_FLAGS = {
    "standard": ["--arch", "standard", "--l1-coefficient", "0.3", "--lr", "0.01"],
    "topk": ["--arch", "topk", "--k", "3", "--lr", "0.01"],
}


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURE_FLAGS))
def test_two_ranks_match_one_process_over_the_same_global_batches(
    architecture: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ARCHITECTURE_FLAGS[architecture] + COMMON_FLAGS
    single, parallel = tmp_path / "single", tmp_path / "parallel"

    job = torchrun(["-m", "saecore", "train", *flags, "--output-path", str(parallel)], cwd=tmp_path)
    assert job.returncode == 0, job.output
    assert saecore_main(["train", *flags, "--output-path", str(single)]) == 0
    capsys.readouterr()

    differences = max_weight_difference(single, parallel)
    assert max(differences.values()) <= TOLERANCE, differences
    sparsity_single = load_file(str(single / "sparsity.safetensors"))["sparsity"]
    sparsity_parallel = load_file(str(parallel / "sparsity.safetensors"))["sparsity"]
    torch.testing.assert_close(sparsity_parallel, sparsity_single, rtol=0, atol=TOLERANCE)
    metadata_single = json.loads((single / "cfg.json").read_text())["metadata"]
    metadata_parallel = json.loads((parallel / "cfg.json").read_text())["metadata"]
    assert metadata_parallel["num_dead_features"] == metadata_single["num_dead_features"]
    assert metadata_parallel["explained_variance"] == pytest.approx(metadata_single["explained_variance"], abs=1e-5)


def test_a_sweep_on_two_ranks_matches_the_sweep_in_one_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every rank trains every SAE of the sweep on its rows of each shared batch."""
    flags = ["--arch", "standard", "--arch", "topk", "--l1-coefficient", "0.3", "--k", "3", "--lr", "0.01",
             *COMMON_FLAGS]
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    job = torchrun(["-m", "saecore", "train", *flags, "--output-path", str(parallel)], cwd=tmp_path)
    assert job.returncode == 0, job.output
    assert saecore_main(["train", *flags, "--output-path", str(single)]) == 0
    capsys.readouterr()
    for name in ("standard", "topk"):
        differences = max_weight_difference(single / name, parallel / name)
        assert max(differences.values()) <= TOLERANCE, (name, differences)
