"""Offline fixtures: a tiny random GPT-2 with a locally trained BPE tokenizer, and local text data.

Everything is built once per session in a temporary folder; nothing touches the network
(HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are set before transformers or datasets load).
"""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

_HF_HOME = tempfile.mkdtemp(prefix="saecore-llm-tests-hf-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HOME"] = _HF_HOME
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

END_OF_TEXT = "<|endoftext|>"
WORDS = ("the cat dog bird sat ran flew on under over a mat tree river house big small red blue green "
         "quickly slowly away home and then because").split()
N_CTX = 64
D_MODEL = 32


def make_corpus(n_documents: int, seed: int) -> list[str]:
    """Short documents of random words (3 to 40 words each)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))) for _ in range(n_documents)]


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return make_corpus(120, seed=0)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    """A 2-layer GPT-2 (d_model 32, 2 heads, n_ctx 64) with random weights and its BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    bpe = Tokenizer(models.BPE(unk_token=END_OF_TEXT))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=[END_OF_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                                        unk_token=END_OF_TEXT, model_max_length=N_CTX)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=D_MODEL, n_head=2, n_positions=N_CTX, vocab_size=len(tokenizer),
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def text_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    """The corpus as two json-lines files (a ``text`` column) in one folder."""
    folder = tmp_path_factory.mktemp("text-data")
    half = len(corpus) // 2
    for name, documents in (("part-0.jsonl", corpus[:half]), ("part-1.jsonl", corpus[half:])):
        (folder / name).write_text("".join(json.dumps({"text": text, "id": i}) + "\n" for i, text in
                                           enumerate(documents)))
    return folder


@pytest.fixture(scope="session")
def tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def hf_model(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).eval()
