"""The temporal releases load by name, offline, from a populated Hub cache, through the plugin's converter.

The files are a tiny temporal SAE in the published layout (``fixtures.published_formats.write_temporal``);
the release directory supplies the repo, the folder and the model's metadata.
"""

from __future__ import annotations

from pathlib import Path

import torch
from ecosystem_helpers import relative_error, require_architectures
from fixtures.published_formats import D_IN, D_SAE, publish, write_temporal

from saecore import SAE


def test_temporal_release_loads_offline_as_its_folder_does(hub_cache: Path, tmp_path: Path) -> None:
    require_architectures("temporal")
    published = write_temporal(tmp_path / "upload", tied=False)
    publish(hub_cache, tmp_path / "upload", published.repo_id)

    sae = SAE.from_pretrained("temporal-sae-gemma-2-2b", "blocks.12.hook_resid_post")
    folder = SAE.load_from_disk(tmp_path / "upload" / published.sae_path, converter="temporal")

    assert type(sae).__name__ == "TemporalSAE"
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.tied_weights, sae.cfg.kval_topk) == (D_IN, D_SAE, False, 5)
    assert sae.cfg.normalize_activations == "constant_scalar_rescale"
    assert sae.cfg.activation_normalization_factor == 0.2
    assert (sae.cfg.metadata.model_name, sae.cfg.metadata.hook_name) == ("gemma-2-2b", "blocks.12.hook_resid_post")
    assert sae.cfg.metadata.neuronpedia_id == "gemma-2-2b/12-temporal-res"
    x = 2 * torch.randn(3, 6, D_IN, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        novel, predicted = sae.encode_with_predictions(x)
        assert 0 < int((novel > 0).sum()) < novel.numel() and float(predicted.abs().sum()) > 0
        assert relative_error(novel, folder.encode(x)) == 0
        assert relative_error(sae(x), folder(x)) == 0
