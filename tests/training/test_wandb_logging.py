"""Weights & Biases logging, checked in the offline run folder wandb writes.

The run file (``run-<id>.wandb``) is a sequence of wandb's own protobuf ``Record``
messages framed in LevelDB-log blocks; reading it back with wandb's protobuf classes
shows exactly what a sync would upload.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from training_helpers import make_config

from saecore.errors import ConfigError
from saecore.training import LoggingConfig, TrainingRunner

BLOCK_SIZE = 32 * 1024
FILE_HEADER_SIZE = 7  # b":W&B", a 2-byte magic, a 1-byte version
RECORD_HEADER_SIZE = 7  # crc32 (4), length (2), chunk type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_wandb_records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, parts, position = [], [], FILE_HEADER_SIZE
    while position + RECORD_HEADER_SIZE <= len(data):
        left_in_block = BLOCK_SIZE - position % BLOCK_SIZE
        if left_in_block < RECORD_HEADER_SIZE:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + RECORD_HEADER_SIZE])
        position += RECORD_HEADER_SIZE
        if kind == 0:
            break
        parts.append(data[position:position + length])
        position += length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(record)
            parts = []
    return records


def read_finished_run(path: Path, timeout_s: float = 20.0) -> list[Any]:
    """The records once wandb's service has written the run's ``exit`` record.

    ``run.finish()`` can return while the service is still writing the last records.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_wandb_records(path)
        if any(record.WhichOneof("record_type") == "exit" for record in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def _history(records: list[Any]) -> list[dict[str, Any]]:
    """One dict per logged step; a histogram arrives as nested keys and becomes a dict."""
    rows = []
    for record in records:
        if record.WhichOneof("record_type") != "history":
            continue
        row: dict[str, Any] = {}
        for item in record.history.item:
            value = json.loads(item.value_json)
            path = [item.key] if item.key else list(item.nested_key)
            if len(path) == 1:
                row[path[0]] = value
            else:
                row.setdefault(path[0], {})["/".join(path[1:])] = value
        rows.append(row)
    return rows


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "wandb_home"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        folder = root / variable.lower()
        folder.mkdir(parents=True)
        monkeypatch.setenv(variable, str(folder))
    return root / "wandb_dir"


def test_metrics_evals_and_the_model_reach_the_offline_run(tmp_path: Path, offline_wandb: Path) -> None:
    logger = LoggingConfig(log_to_wandb=True, wandb_project="saecore-tests", wandb_log_frequency=5,
                           eval_every_n_wandb_logs=2)
    TrainingRunner(make_config(tmp_path, logger=logger)).run()

    run_files = list(offline_wandb.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    records = read_finished_run(run_files[0])
    rows = _history(records)
    keys = set().union(*rows)
    assert {
        "losses/overall_loss", "losses/mse_loss", "losses/l1_loss", "metrics/explained_variance", "metrics/l0",
        "sparsity/dead_features", "sparsity/mean_passes_since_fired", "details/current_learning_rate",
        "details/n_training_tokens", "details/l1_coefficient",
        "reconstruction_quality/explained_variance", "reconstruction_quality/mse", "reconstruction_quality/cossim",
        "sparsity/l0", "sparsity/eval_dead_features", "sparsity/eval_dense_features",
        "metrics/mean_log10_feature_sparsity", "plots/feature_density_line_chart", "plots/eval_log10_feature_density",
    } <= keys
    density_key = "plots/feature_density_line_chart"
    histogram = next(row[density_key] for row in rows if density_key in row)
    assert histogram["_type"] == "histogram" and sum(histogram["values"]) == 16
    steps = [row["_step"] for row in rows if "losses/overall_loss" in row]
    assert steps == [5, 10, 15, 20, 25, 30, 35, 40]
    tokens = [row["details/n_training_tokens"] for row in rows if "details/n_training_tokens" in row]
    assert tokens == [32 * s for s in steps]

    kinds = [record.WhichOneof("record_type") for record in records]
    assert "artifact" in kinds
    artifact_names = {record.artifact.name for record in records if record.WhichOneof("record_type") == "artifact"}
    assert "sae_standard_16" in artifact_names
    run_record = next(record.run for record in records if record.WhichOneof("record_type") == "run")
    assert run_record.project == "saecore-tests"
    assert run_record.display_name == "standard-16-LR-0.003-Tokens-1.280e+03"
    summary_keys = {item.key for record in records if record.WhichOneof("record_type") == "summary"
                    for item in record.summary.update}
    assert {"final/l0", "final/explained_variance", "final/dead_features"} <= summary_keys


def test_wandb_is_never_imported_unless_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # any import of wandb now fails
    TrainingRunner(make_config(tmp_path / "plain")).run()
    with pytest.raises(ConfigError, match=r"pip install 'saecore\[wandb\]'"):
        TrainingRunner(make_config(tmp_path / "wandb", logger=LoggingConfig(log_to_wandb=True))).run()
