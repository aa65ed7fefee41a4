"""Saved files follow the umask, as files from ``torch.save`` or ``open`` do (tempfile alone makes them 0600)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from saecore import SAE
from saecore.io.atomic import current_umask, replace_directory_atomically


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_umask_is_read_without_changing_it(umask: int) -> None:
    assert current_umask() == umask
    assert current_umask() == umask


def test_a_saved_sae_has_the_modes_of_plain_files(umask: int, tmp_path: Path) -> None:
    sae = SAE.from_dict({"architecture": "standard", "d_in": 4, "d_sae": 8})
    sae.save_model(tmp_path / "sae")
    files = sorted((tmp_path / "sae").iterdir())
    assert files
    assert {path.name: mode(path) for path in files} == {path.name: 0o666 & ~umask for path in files}


def test_a_checkpoint_folder_has_the_mode_of_a_plain_folder(umask: int, tmp_path: Path) -> None:
    replace_directory_atomically(tmp_path / "checkpoint", lambda staging: (staging / "state").write_text("x"))
    assert mode(tmp_path / "checkpoint") == 0o777 & ~umask
    assert mode(tmp_path / "checkpoint" / "state") == 0o666 & ~umask
