"""dictionary_learning folders (``ae.pt`` + ``config.json``) load with that library's own outputs.

The folders are written by dictionary_learning itself (``pip install dictionary-learning``):
``trainSAE`` trains one tiny dictionary of each class for a few steps on random
activations and saves it. Each is then read back by the library's own ``from_pretrained``
and compared with saecore's load through ``encode``/``decode``. Without the library those
tests skip; the safety and error paths use files written here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from ecosystem_helpers import relative_error, require_architectures

from saecore import SAE, SAEFileError

D_IN, D_SAE, K, STEPS = 16, 32, 4, 30
# dictionary class: (its trainer, the trainer's module, extra trainer arguments, saecore architecture)
DICTIONARIES = {
    "AutoEncoder": ("StandardTrainer", "dictionary_learning.trainers.standard",
                    {"sparsity_warmup_steps": 2}, "standard"),
    "AutoEncoderTopK": ("TopKTrainer", "dictionary_learning.trainers.top_k",
                        {"k": K, "threshold_start_step": 5}, "topk"),
    "BatchTopKSAE": ("BatchTopKTrainer", "dictionary_learning.trainers.batch_top_k",
                     {"k": K, "threshold_start_step": 5}, "jumprelu"),
    "MatryoshkaBatchTopKSAE": ("MatryoshkaBatchTopKTrainer", "dictionary_learning.trainers.matryoshka_batch_top_k",
                               {"k": K, "threshold_start_step": 5, "group_fractions": [0.25, 0.75]}, "jumprelu"),
    "JumpReluAutoEncoder": ("JumpReluTrainer", "dictionary_learning.trainers.jumprelu",
                            {"sparsity_warmup_steps": 2}, "jumprelu"),
    "GatedAutoEncoder": ("GatedSAETrainer", "dictionary_learning.trainers.gdm", {"sparsity_warmup_steps": 2}, "gated"),
}
DICTIONARY_MODULES = {
    "AutoEncoder": "dictionary_learning.dictionary",
    "AutoEncoderTopK": "dictionary_learning.trainers.top_k",
    "BatchTopKSAE": "dictionary_learning.trainers.batch_top_k",
    "MatryoshkaBatchTopKSAE": "dictionary_learning.trainers.matryoshka_batch_top_k",
    "JumpReluAutoEncoder": "dictionary_learning.dictionary",
    "GatedAutoEncoder": "dictionary_learning.dictionary",
}


@pytest.fixture(scope="module")
def trained_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One folder per dictionary class, trained and saved by dictionary_learning's ``trainSAE``."""
    pytest.importorskip("dictionary_learning")
    import importlib

    from dictionary_learning.training import trainSAE

    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(64, D_IN, generator=generator) for _ in range(STEPS)]
    common = {"steps": STEPS, "activation_dim": D_IN, "dict_size": D_SAE, "layer": 3, "device": "cpu",
              "lm_name": "EleutherAI/pythia-70m-deduped", "warmup_steps": 2, "submodule_name": "resid_post_layer_3"}
    configs = []
    for trainer_name, module, extra, _ in DICTIONARIES.values():
        configs.append({"trainer": getattr(importlib.import_module(module), trainer_name), **common, **extra})
    save_dir = tmp_path_factory.mktemp("dictionary_learning")
    trainSAE(iter(batches), configs, steps=STEPS, save_dir=str(save_dir), device="cpu", log_steps=STEPS)
    return {name: save_dir / f"trainer_{i}" for i, name in enumerate(DICTIONARIES)}


def library_dictionary(dict_class: str, folder: Path) -> Any:
    """The dictionary as dictionary_learning itself reads it back."""
    import importlib

    cls = getattr(importlib.import_module(DICTIONARY_MODULES[dict_class]), dict_class)
    if dict_class == "AutoEncoder":
        return cls.from_pretrained(folder / "ae.pt", normalize_decoder=False)
    return cls.from_pretrained(folder / "ae.pt")


@pytest.mark.parametrize("dict_class", list(DICTIONARIES))
def test_dictionary_matches_the_librarys_encode_and_decode(trained_folders: dict[str, Path], dict_class: str) -> None:
    architecture = DICTIONARIES[dict_class][3]
    require_architectures(architecture)
    folder = trained_folders[dict_class]
    assert json.loads((folder / "config.json").read_text())["trainer"]["dict_class"] == dict_class
    sae = SAE.load_from_disk(folder, converter="dictionary_learning")
    reference = library_dictionary(dict_class, folder)
    assert sae.cfg.architecture() == architecture
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (D_IN, D_SAE)
    assert sae.cfg.metadata.model_name == "pythia-70m-deduped"
    assert sae.cfg.metadata.hook_name == "blocks.3.hook_resid_post"
    x = 3 * torch.randn(40, D_IN, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        expected_acts = reference.encode(x)
        acts = sae.encode(x)
        assert 0 < int((expected_acts > 0).sum()) < expected_acts.numel()
        assert torch.equal(acts > 0, expected_acts > 0)
        assert relative_error(acts, expected_acts) <= 1e-5
        assert relative_error(sae.decode(acts), reference.decode(expected_acts)) <= 1e-5
        assert relative_error(sae(x), reference(x)) <= 1e-5


def test_topk_dictionary_keeps_its_k(trained_folders: dict[str, Path]) -> None:
    require_architectures("topk")
    sae = SAE.load_from_disk(trained_folders["AutoEncoderTopK"], converter="dictionary_learning")
    assert sae.cfg.k == K and sae.cfg.rescale_acts_by_decoder_norm is False


def write_folder(folder: Path, trainer: dict[str, Any], state: Any) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"trainer": trainer}))
    torch.save(state, folder / "ae.pt")


class _RunsCodeWhenUnpickled:
    """A pickle payload that would create ``marker`` if the file were unpickled unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_ae_pt_is_never_unpickled_beyond_tensors(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    write_folder(tmp_path / "sae", {"dict_class": "AutoEncoder"},
                 {"encoder.weight": torch.zeros(8, 4), "payload": _RunsCodeWhenUnpickled(marker)})
    with pytest.raises(SAEFileError, match=r"ae\.pt: not a loadable tensor state dict"):
        SAE.load_from_disk(tmp_path / "sae", converter="dictionary_learning")
    assert not marker.exists()


def test_unknown_dict_class_lists_the_supported_ones(tmp_path: Path) -> None:
    write_folder(tmp_path / "sae", {"dict_class": "CrossCoder"}, {"encoder.weight": torch.zeros(8, 4)})
    with pytest.raises(SAEFileError, match=r"trainer\.dict_class = 'CrossCoder' is not supported; allowed: "
                                           r"AutoEncoder, AutoEncoderNew, AutoEncoderTopK"):
        SAE.load_from_disk(tmp_path / "sae", converter="dictionary_learning")


def test_config_without_a_trainer_section_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "sae"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"buffer": {}}))
    torch.save({}, folder / "ae.pt")
    with pytest.raises(SAEFileError, match=r"config\.json: has no 'trainer' section"):
        SAE.load_from_disk(folder, converter="dictionary_learning")


def test_missing_tensors_are_named_with_the_dictionary_class(tmp_path: Path) -> None:
    write_folder(tmp_path / "sae", {"dict_class": "AutoEncoderTopK", "k": 2}, {"encoder.weight": torch.zeros(8, 4)})
    with pytest.raises(SAEFileError, match=r"ae\.pt: missing tensor\(s\) \['encoder\.bias', 'decoder\.weight', "
                                           r"'b_dec'\] of the dictionary_learning AutoEncoderTopK format"):
        SAE.load_from_disk(tmp_path / "sae", converter="dictionary_learning")


def test_april_update_autoencoder_uses_its_decoder_bias_without_centring(tmp_path: Path) -> None:
    require_architectures("standard")
    generator = torch.Generator().manual_seed(2)
    shapes = {"encoder.weight": (8, 4), "encoder.bias": (8,), "decoder.weight": (4, 8), "decoder.bias": (4,)}
    state = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    write_folder(tmp_path / "sae", {"dict_class": "AutoEncoderNew", "lm_name": "gpt2", "layer": 1,
                                    "submodule_name": "mlp_out_layer_1"}, state)
    sae = SAE.load_from_disk(tmp_path / "sae", converter="dictionary_learning", dtype="float64")
    assert sae.cfg.apply_b_dec_to_input is False
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_mlp_out"
    x = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    s = {name: tensor.double() for name, tensor in state.items()}
    expected = torch.relu(x @ s["encoder.weight"].T + s["encoder.bias"]) @ s["decoder.weight"].T + s["decoder.bias"]
    torch.testing.assert_close(sae(x), expected, rtol=0, atol=1e-12)
