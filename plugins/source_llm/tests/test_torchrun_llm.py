"""``torchrun --nproc_per_node 2 -m saecore train --source llm``: two gloo ranks, each on its own documents.

The job runs the real command line on the offline tiny GPT-2. The data are pretokenized
documents of exactly one prompt each whose second token is the document's index, so the
prompts a rank's checkpoint keeps show which documents that rank ran through its model.

* The job writes one SAE folder (rank 0), whose metadata names the model, hook, context
  size and dataset.
* The ranks' documents are disjoint (the checkpoint's per-rank prompts), and the job
  trains the SAE one process trains on the concatenation of the two ranks' batches
  (rank 0's rows first: what DDP's gradient average and the gathered evaluation batches
  amount to), built from the source's own ``shard_for_rank`` in-process.
* The half-way checkpoint, resumed at 2 ranks, lands on the uninterrupted job's weights.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import LLMSource, LLMSourceConfig
from safetensors.torch import load_file

from saecore.testing import RanksInOneProcess
from saecore.training import TrainingRunner, TrainingRunnerConfig
from saecore.training.checkpoint import SOURCE_STATE_FILENAME

WORLD_SIZE = 2
JOB_TIMEOUT_S = 120  # as tests/distributed: a hung job fails the test instead of stalling the suite
TOLERANCE = 1e-5
CONTEXT = 16
N_DOCUMENTS = 200  # each rank uses about 50 of its 100 (buffer fill, 12 steps, norm and eval batches)
BATCH = 64
STEPS = 12
HOOK = "blocks.0.hook_resid_post"
SAE_FILES = ["cfg.json", "runner_cfg.json", "sae_weights.safetensors", "sparsity.safetensors"]


@dataclass(frozen=True)
class Job:
    folder: Path
    returncode: int
    output: str

    @property
    def sae(self) -> Path:
        return self.folder / "output"

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_two_ranks(folder: Path, argv: list[str]) -> Job:
    """``torchrun --nproc_per_node 2 -m saecore train ARGV`` in ``folder``; one thread per rank.

    A job past the timeout gets SIGTERM, which torchrun passes on to its ranks (they run
    in sessions of their own, so killing torchrun outright would leave them running).
    """
    folder.mkdir(parents=True)
    env = {key: value for key, value in os.environ.items()
           if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD_SIZE),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "saecore", "train", *argv,
               "--output-path", str(folder / "output"), "--checkpoint-path", str(folder / "checkpoints")]
    job = subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = job.communicate(timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        job.terminate()
        try:
            output, _ = job.communicate(timeout=60)  # torchrun gives its ranks 30 s, then SIGKILLs them
        except subprocess.TimeoutExpired:
            job.kill()
            output, _ = job.communicate()
        output += f"\n[the job was still running after {JOB_TIMEOUT_S} s and was stopped]"
    return Job(folder, job.returncode, output)


@pytest.fixture(scope="module")
def documents_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """One json-lines file of token rows ``[BOS, 1 + index, random tokens ...]``, one prompt each."""
    folder = tmp_path_factory.mktemp("numbered-documents")
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(1, 256, (N_DOCUMENTS, CONTEXT), generator=generator)
    rows[:, 0] = tokenizer.bos_token_id
    rows[:, 1] = 1 + torch.arange(N_DOCUMENTS)
    (folder / "documents.jsonl").write_text("".join(json.dumps({"tokens": row}) + "\n" for row in rows.tolist()))
    return folder


@pytest.fixture(scope="module")
def train_argv(model_dir: Path, documents_dir: Path) -> list[str]:
    return [
        "--arch", "topk", "--source", "llm", "--model", str(model_dir), "--hook-name", HOOK,
        "--dataset-path", str(documents_dir), "--context-size", str(CONTEXT), "--store-batch-size-prompts", "4",
        "--n-batches-in-buffer", "4", "--k", "4", "--d-sae", "64", "--lr", "0.005",
        "--training-tokens", str(STEPS * BATCH), "--train-batch-size-tokens", str(BATCH),
        "--normalize-activations", "expected_average_only_in", "--n-batches-for-norm-estimate", "2",
        "--n-eval-batches", "1", "--n-checkpoints", "1", "--verbose", "false",
    ]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, train_argv: list[str]) -> Job:
    done = run_two_ranks(tmp_path_factory.mktemp("torchrun-llm") / "job", train_argv)
    assert done.returncode == 0, done.output
    return done


@pytest.fixture(scope="module")
def checkpoint(job: Job) -> Path:
    return job.checkpoints / str(STEPS // 2 * BATCH)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The ranks run with one thread each; so does the in-process reference, for the same float rounding."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def max_weight_difference(a: Path, b: Path) -> float:
    weights_a, weights_b = load_file(str(a / "sae_weights.safetensors")), load_file(str(b / "sae_weights.safetensors"))
    assert weights_a.keys() == weights_b.keys()
    return max(float((weights_a[name].double() - weights_b[name].double()).abs().max()) for name in weights_a)


def test_the_job_writes_one_sae_with_the_model_hook_and_dataset(
    job: Job, checkpoint: Path, model_dir: Path, documents_dir: Path
) -> None:
    assert sorted(child.name for child in job.folder.iterdir()) == ["checkpoints", "output"]
    assert sorted(child.name for child in job.sae.iterdir()) == SAE_FILES
    assert [child.name for child in job.checkpoints.iterdir()] == [checkpoint.name]
    assert job.output.count(f"Trained on {STEPS * BATCH:,} tokens") == 1  # only rank 0 prints the summary
    metadata = json.loads((job.sae / "cfg.json").read_text())["metadata"]
    assert (metadata["model_name"], metadata["hook_name"], metadata["context_size"], metadata["dataset_path"]) == (
        str(model_dir), HOOK, CONTEXT, str(documents_dir))
    assert metadata["model_class_name"] in ("HookedTransformer", "TransformerBridge")


def test_each_rank_runs_its_own_documents_and_together_they_train_the_concatenated_batches(
    job: Job, checkpoint: Path, tmp_path: Path, one_thread: None
) -> None:
    rank_states = torch.load(checkpoint / SOURCE_STATE_FILENAME, weights_only=True)["rank_states"]
    assert len(rank_states) == WORLD_SIZE
    documents = []
    for rank, state in enumerate(rank_states):
        assert state["documents"].tolist() == [0, rank, WORLD_SIZE]
        prompts = state["chunk_tokens"].reshape(-1, CONTEXT)
        assert len(prompts) > 0
        ran = set((prompts[:, 1] - 1).tolist())
        assert all(index % WORLD_SIZE == rank for index in ran), (rank, sorted(ran))
        documents.append(ran)
    assert not documents[0] & documents[1]

    saved = json.loads((job.sae / "runner_cfg.json").read_text())
    reference = TrainingRunnerConfig.from_dict(
        {**saved, "output_path": str(tmp_path / "reference"), "checkpoint_path": str(tmp_path / "unused"),
         "n_checkpoints": 0}
    )
    assert isinstance(reference.source, LLMSourceConfig)
    source = RanksInOneProcess(lambda: LLMSource(reference.source, seed=reference.seed), WORLD_SIZE)
    try:
        TrainingRunner(reference, source=source).run()
    finally:
        source.close()
    assert max_weight_difference(job.sae, tmp_path / "reference") <= TOLERANCE


def test_the_checkpoint_resumes_at_two_ranks_onto_the_uninterrupted_weights(
    job: Job, checkpoint: Path, train_argv: list[str], tmp_path: Path
) -> None:
    resumed = run_two_ranks(tmp_path / "resumed", [*train_argv, "--resume-from-checkpoint", str(checkpoint)])
    assert resumed.returncode == 0, resumed.output
    assert max_weight_difference(job.sae, resumed.sae) <= TOLERANCE
