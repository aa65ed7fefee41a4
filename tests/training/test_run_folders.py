"""A run's folders: checked and claimed before the first step, never lost at the final save."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_sae_standard.standard_sae import StandardTrainingSAEConfig
from training_helpers import ToySource, make_config

from saecore import SAE
from saecore.errors import ConfigError
from saecore.training import SAESweepConfig, SAESweepRunner, SweepMember, TrainingRunner
from saecore.training.member_run import OutputNotSavedError
from saecore.training.run_folders import default_run_folder, remove_stale_writes
from saecore.training.run_lock import LOCK_FILENAME, RunFolderBusyError, RunFolderLock

B = 32


@contextlib.contextmanager
def small_filesystem(mount_point: Path, options: str) -> Iterator[Path]:
    """A real tmpfs at ``mount_point`` (skips the test where mounting is not permitted)."""
    mount_point.mkdir(parents=True)
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
                                 capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _counting_source(cfg: Any) -> ToySource:
    return ToySource(cfg.source, seed=cfg.seed)


# -- paths checked before the first step ---------------------------------------------------
def test_an_output_path_that_is_a_file_fails_before_any_training(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("someone's file")
    cfg = make_config(tmp_path, output_path=taken)
    source = _counting_source(cfg)
    with pytest.raises(ConfigError, match=r"output_path=.*taken.* is a file, not a folder"):
        TrainingRunner(cfg, source=source).run()
    assert source.n_batches == 0
    assert taken.read_text() == "someone's file"


@pytest.mark.parametrize("where", ["checkpoint_path", "below_a_file"])
def test_a_checkpoint_path_that_cannot_be_a_folder_fails_before_any_training(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    path = blocker if where == "checkpoint_path" else blocker / "deeper" / "checkpoints"
    cfg = make_config(tmp_path, checkpoint_path=path, n_checkpoints=2)
    source = _counting_source(cfg)
    with pytest.raises(ConfigError, match=rf"checkpoint_path=.*{blocker.name}.* is a file, not a folder"):
        TrainingRunner(cfg, source=source).run()
    assert source.n_batches == 0
    assert not (tmp_path / "output").exists(), "the output folder claimed first is released and removed"


def test_a_read_only_output_folder_fails_before_any_training(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "ro", "size=1m,ro") as read_only:
        cfg = make_config(tmp_path, output_path=read_only / "sae")
        source = _counting_source(cfg)
        with pytest.raises(ConfigError, match=r"output_path=.*sae.* cannot be written \(Read-only file system\)"):
            TrainingRunner(cfg, source=source).run()
        assert source.n_batches == 0


def test_too_little_free_space_for_the_saves_fails_before_any_training(tmp_path: Path) -> None:
    big = StandardTrainingSAEConfig(d_in=8, d_sae=200_000)  # 12.8 MB of weights
    with small_filesystem(tmp_path / "small", "size=5m") as small:
        cfg = make_config(tmp_path, sae=big, output_path=small / "sae")
        source = _counting_source(cfg)
        with pytest.raises(ConfigError, match=r"output_path=.*sae.*: the trained SAE needs 1\d\.\d MiB but only "
                                              r"[45]\.\d MiB is free"):
            TrainingRunner(cfg, source=source).run()
        assert source.n_batches == 0


def test_free_space_for_checkpoints_is_checked_when_the_run_writes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_disk_usage = shutil.disk_usage
    crowded = tmp_path / "crowded"

    def disk_usage(path: Any) -> Any:
        usage = real_disk_usage(path)
        return usage._replace(free=1000) if Path(path).is_relative_to(crowded) else usage

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    cfg = make_config(tmp_path, checkpoint_path=crowded, n_checkpoints=1)
    source = _counting_source(cfg)
    with pytest.raises(ConfigError, match=r"checkpoint_path=.*crowded.*: a checkpoint needs .* but only 1000 B|"
                                          r"checkpoint_path=.*crowded.*: a checkpoint needs .* but only 1\.0 KiB"):
        TrainingRunner(cfg, source=source).run()
    assert source.n_batches == 0
    TrainingRunner(make_config(tmp_path, checkpoint_path=crowded)).run()  # no checkpoints: no room needed


# -- the final save never loses the run ----------------------------------------------------
def test_a_full_disk_at_the_final_save_writes_the_sae_to_a_fallback_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rescue = tmp_path / "rescue"
    rescue.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue))
    with small_filesystem(tmp_path / "disk", "size=5m") as disk:
        cfg = make_config(tmp_path, output_path=disk / "sae", checkpoint_path=tmp_path / "checkpoints",
                          n_checkpoints=1)
        source = _counting_source(cfg)

        def fill_the_disk(index: int, batch: torch.Tensor) -> torch.Tensor:
            if index == 30:
                fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, bytes(1 << 16))
                os.close(fd)
            return batch

        source.on_batch = fill_the_disk
        with pytest.raises(OutputNotSavedError) as info:
            TrainingRunner(cfg, source=source).run()
    message = str(info.value)
    (fallback,) = rescue.iterdir()
    assert f"could not be saved to {disk / 'sae'}" in message and "free" in message
    assert f"it was saved to {fallback} instead" in message
    assert f"the last checkpoint is {tmp_path / 'checkpoints' / str(20 * B)}" in message
    assert SAE.load_from_disk(fallback).cfg.d_sae == 16


def test_an_output_folder_gone_at_the_final_save_writes_the_sae_to_a_fallback_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rescue = tmp_path / "rescue"
    rescue.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue))
    cfg = make_config(tmp_path)
    output = tmp_path / "output"
    source = _counting_source(cfg)

    def replace_output_with_a_file(index: int, batch: torch.Tensor) -> torch.Tensor:
        if index == 20:
            shutil.rmtree(output)
            output.write_text("in the way")
        return batch

    source.on_batch = replace_output_with_a_file
    runner = TrainingRunner(cfg, source=source)
    with pytest.raises(OutputNotSavedError, match=rf"could not be saved to {output} .*; it was saved to "
                                                  rf"{rescue}/saecore-unsaved-output-\d+-\w+ instead$"):
        runner.run()
    (fallback,) = rescue.iterdir()
    assert sorted(p.name for p in fallback.iterdir()) == [
        "cfg.json", "runner_cfg.json", "sae_weights.safetensors", "sparsity.safetensors",
    ]
    assert runner.summary is not None, "the run's numbers are still reported"


# -- one run per folder --------------------------------------------------------------------
def test_a_second_lock_on_a_folder_names_the_holder_and_a_dead_holder_s_lock_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    first = RunFolderLock(folder, "output_path")
    busy = rf"output_path='{folder}' is in use by another run \(pid {os.getpid()}\)"
    with pytest.raises(RunFolderBusyError, match=busy):
        RunFolderLock(folder, "output_path")
    first.release()
    assert not folder.exists(), "a folder the lock made and nothing filled is removed"

    nested = RunFolderLock(tmp_path / "made" / "for" / "run", "output_path")
    (tmp_path / "made" / "kept.txt").write_text("x")
    nested.release()
    assert sorted(p.name for p in (tmp_path / "made").iterdir()) == ["kept.txt"], "parents it made go too, if empty"

    folder.mkdir()
    (folder / LOCK_FILENAME).write_text("999999\n")  # left by a killed run: no process holds the lock
    taken = RunFolderLock(folder, "output_path")
    assert (folder / LOCK_FILENAME).read_text().strip() == str(os.getpid())
    taken.release()
    assert folder.is_dir() and not (folder / LOCK_FILENAME).exists()


def test_default_run_folders_differ_within_one_second() -> None:
    names = {default_run_folder("topk") for _ in range(50)}
    assert len(names) == 50
    assert all(name.parent == Path("saecore_runs") and name.name.startswith("topk-") for name in names)


def test_a_finished_run_leaves_no_lock_files(tmp_path: Path) -> None:
    TrainingRunner(make_config(tmp_path, n_checkpoints=1)).run()
    assert not list(tmp_path.rglob(LOCK_FILENAME))


# -- killed checkpoint writes ----------------------------------------------------------------
def _killed_write(folder: Path) -> Path:
    """What ``replace_directory_atomically`` leaves when its process is killed mid-write."""
    folder.mkdir(parents=True)
    (folder / "sae_weights.safetensors").write_bytes(b"half")
    return folder


def test_unfinished_checkpoint_writes_are_removed_when_the_next_run_claims_the_folder(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    solo = _killed_write(checkpoints / f".{20 * B}.k2j4h1.partial")
    retired = _killed_write(checkpoints / f".{10 * B}.old")
    in_sweep = _killed_write(checkpoints / str(20 * B) / ".wide.ab12cd.partial")
    complete = checkpoints / str(10 * B)
    complete.mkdir()
    TrainingRunner(make_config(tmp_path)).run()
    assert not solo.exists() and not retired.exists() and not in_sweep.exists()
    assert complete.is_dir() and (checkpoints / str(20 * B)).is_dir()


def test_stale_writes_are_only_the_hidden_partial_and_old_folders(tmp_path: Path) -> None:
    keep = [tmp_path / "640", tmp_path / ".hidden", tmp_path / "x.partial"]
    for folder in keep:
        folder.mkdir()
    gone = [_killed_write(tmp_path / ".640.abc.partial"), _killed_write(tmp_path / "640" / ".a.x.partial")]
    assert sorted(remove_stale_writes(tmp_path)) == sorted(gone)
    assert all(folder.exists() for folder in keep)


def test_an_unfinished_checkpoint_write_is_never_resumed_from(tmp_path: Path) -> None:
    partial = _killed_write(tmp_path / "elsewhere" / f".{20 * B}.k2j4h1.partial")
    cfg = make_config(tmp_path, resume_from_checkpoint=partial)
    with pytest.raises(ConfigError, match=r"is an unfinished checkpoint write"):
        TrainingRunner(cfg).run()


# -- a resumed run's summary ---------------------------------------------------------------
def test_a_resumed_run_reports_its_own_tokens_per_second_and_the_total_apart(tmp_path: Path) -> None:
    TrainingRunner(make_config(tmp_path / "a", n_checkpoints=3)).run()
    checkpoint = tmp_path / "a" / "checkpoints" / str(30 * B)
    runner = TrainingRunner(make_config(tmp_path / "b", resume_from_checkpoint=checkpoint))
    runner.run()
    summary = runner.summary
    assert summary is not None
    assert (summary.n_tokens, summary.tokens_this_run) == (40 * B, 10 * B)
    assert summary.tokens_per_second == pytest.approx(10 * B / summary.seconds)
    first_line = summary.format().splitlines()[0]
    assert first_line.startswith(f"Trained on {10 * B:,} tokens in ")
    assert first_line.endswith(f", resumed at {30 * B:,}: {40 * B:,} tokens in all")


def test_a_sweep_claims_every_output_folder(tmp_path: Path) -> None:
    members = [SweepMember(name=name, run=make_config(tmp_path, output_path=tmp_path / name)) for name in ("a", "b")]
    held = RunFolderLock(tmp_path / "b", "output_path")
    try:
        with pytest.raises(RunFolderBusyError, match=rf"output_path='{tmp_path / 'b'}' is in use .*pid {os.getpid()}"):
            SAESweepRunner(SAESweepConfig(members=members)).run()
    finally:
        held.release()
    assert not (tmp_path / "a").exists(), "the folders already claimed are released"
