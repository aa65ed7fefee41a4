"""A tiny random GPT-2 with a locally trained BPE tokenizer, and a local text corpus, built offline.

SAELens loads it with ``model_class_name="AutoModelForCausalLM"`` and saecore's llm source
with the same setting, so both libraries run the very same model on the very same text.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

END_OF_TEXT = "<|endoftext|>"
WORDS = "the cat dog bird sat ran on under a mat tree river big small red blue and then".split()
N_CTX, D_MODEL = 32, 16


def corpus(n_documents: int = 60, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n_documents)]


def write_text_folder(folder: Path, documents: list[str]) -> Path:
    """The documents as one json-lines file with a ``text`` column."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in documents))
    return folder


def write_tokenizer(folder: Path, documents: list[str]) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=END_OF_TEXT))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=[END_OF_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(documents, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                                        unk_token=END_OF_TEXT, model_max_length=N_CTX)
    tokenizer.save_pretrained(folder)
    return folder


def write_tiny_gpt2(folder: Path, documents: list[str]) -> Path:
    """A 2-layer GPT-2 (d_model 16) with random weights, saved with its tokenizer."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    write_tokenizer(folder, documents)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=D_MODEL, n_head=2, n_positions=N_CTX, vocab_size=len(tokenizer),
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder
