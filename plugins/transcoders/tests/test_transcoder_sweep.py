"""Several transcoders on one stream of pairs: each ends with exactly the weights of its solo run.

Both scale their inputs and targets, so the sweep's one pass of scale estimation must give
each transcoder its own two scales, from the right columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from saecore.sources.synthetic_transcoder import SyntheticTranscoderSourceConfig
from saecore.training import SAESweepConfig, SAESweepRunner, SweepMember, TrainingRunner, TrainingRunnerConfig

SOURCE = SyntheticTranscoderSourceConfig(d_in=8, d_out=6, n_features=16, avg_active_features=2.0)


def run_config(folder: Path, sae: dict[str, Any]) -> TrainingRunnerConfig:
    return TrainingRunnerConfig(
        sae={"d_in": 8, "d_out": 6, "d_sae": 24, "normalize_activations": "expected_average_only_in", **sae},
        source=SOURCE, training_tokens=32 * 12, train_batch_size_tokens=32, lr=1e-2, n_eval_batches=1,
        n_batches_for_norm_estimate=3, output_path=str(folder), checkpoint_path=str(folder.parent / "checkpoints"),
        verbose=False,
    )


def test_each_transcoder_of_a_sweep_ends_with_the_weights_of_its_solo_run(tmp_path: Path) -> None:
    saes = {"topk": {"architecture": "topk_transcoder", "k": 3},
            "skip": {"architecture": "skip_transcoder", "l1_coefficient": 0.1}}
    members = [SweepMember(name=name, run=run_config(tmp_path / "sweep" / name, sae)) for name, sae in saes.items()]
    SAESweepRunner(SAESweepConfig(members=members)).run()
    for name, sae in saes.items():
        TrainingRunner(run_config(tmp_path / "solo" / name, sae)).run()
        swept = load_file(str(tmp_path / "sweep" / name / "sae_weights.safetensors"))
        solo = load_file(str(tmp_path / "solo" / name / "sae_weights.safetensors"))
        assert swept.keys() == solo.keys()
        assert all(torch.equal(swept[key], solo[key]) for key in solo), name
