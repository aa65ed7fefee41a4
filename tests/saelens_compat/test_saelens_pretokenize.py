"""SAELens's PretokenizeRunner and saecore's produce the same dataset from a local text file and tokenizer."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_language_model import corpus, write_text_folder, write_tokenizer

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")
datasets = pytest.importorskip("datasets")

SETTINGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "small-map-batches": {"pretokenize_batch_size": 7},
    "begin-sequence-token": {"begin_sequence_token": "eos", "sequence_separator_token": None},
    "no-begin-batch-token": {"begin_batch_token": None},
    "no-concatenation": {"disable_concat_sequences": True, "context_size": 8},
    "shuffled": {"shuffle": True, "seed": 3},
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pretokenize")
    documents = corpus(n_documents=40, seed=1)
    return write_tokenizer(root / "tokenizer", documents), write_text_folder(root / "text", documents)


@pytest.fixture(scope="module")
def chat_tokenizer(inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tokenizer with a chat template, for ``use_chat_formatting``."""
    folder = tmp_path_factory.mktemp("chat-tokenizer")
    for file in inputs[0].iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    template = "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "chat_template": template}))
    return folder


@pytest.mark.parametrize("name", [*SETTINGS, "chat-formatting"])
def test_both_runners_produce_the_same_prompts(name: str, inputs: tuple[Path, Path], chat_tokenizer: Path,
                                               tmp_path: Path) -> None:
    tokenizer, text = inputs
    if name == "chat-formatting":
        tokenizer = chat_tokenizer
    outputs = {}
    for library in (sae_lens, saecore):
        save_path = tmp_path / library.__name__
        settings = {"tokenizer_name": str(tokenizer), "dataset_path": str(text), "context_size": 12, "num_proc": 1,
                    "shuffle": False, "save_path": str(save_path),
                    **SETTINGS.get(name, {"use_chat_formatting": True})}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            library.PretokenizeRunner(library.PretokenizeRunnerConfig(**settings)).run()
        saved = datasets.load_from_disk(str(save_path))
        outputs[library.__name__] = (saved, json.loads((save_path / "sae_lens.json").read_text()))
    (ours, our_metadata), (theirs, their_metadata) = outputs["saecore"], outputs["sae_lens"]
    assert ours.features == theirs.features
    assert len(ours) == len(theirs) > 0
    assert torch.equal(ours.with_format("torch")[:]["input_ids"], theirs.with_format("torch")[:]["input_ids"])
    assert sorted(our_metadata) == sorted(their_metadata)
    versions = ("sae_lens_version",)
    assert {k: v for k, v in our_metadata.items() if k not in versions} == {
        k: v for k, v in their_metadata.items() if k not in versions}


def test_both_runners_name_the_same_parameters() -> None:
    ours = saecore.PretokenizeRunnerConfig.model_fields
    theirs = sae_lens.PretokenizeRunnerConfig.__dataclass_fields__
    assert list(ours) == list(theirs)
    assert {name: field.default for name, field in ours.items()} == {
        name: field.default for name, field in theirs.items()}
