"""Reading a damaged checkpoint folder: one error naming the file and saying the checkpoint is unreadable."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from saecore.errors import SAEFileError
from saecore.training.checkpoint import SOURCE_STATE_FILENAME, TRAINER_STATE_FILENAME, read_checkpoint


def _state_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"step": 3, "rng": torch.zeros(8, dtype=torch.uint8), "names": ["a", "b"]}, buffer)
    return buffer.getvalue()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    from fixtures.saes import randomized_sae

    pytest.importorskip("saecore_sae_standard")
    folder = tmp_path / "4096"
    randomized_sae().save_model(folder)
    (folder / TRAINER_STATE_FILENAME).write_bytes(_state_bytes())
    (folder / SOURCE_STATE_FILENAME).write_bytes(_state_bytes())
    return folder


def _pickle_bytes_replaced(data: bytes, payload: bytes) -> bytes:
    """The zip archive of ``torch.save`` with its pickle (``data.pkl``) replaced by ``payload``."""
    import zipfile

    source, target = io.BytesIO(data), io.BytesIO()
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for item in archive.infolist():
            out.writestr(item, payload if item.filename.endswith("data.pkl") else archive.read(item))
    return target.getvalue()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\x80\x02J\x01\x02", id="unpack-requires-a-buffer"),
        pytest.param(b"\x80\x02t.", id="pop-from-empty-list"),
        pytest.param(b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", id="bad-utf8"),
    ],
)
@pytest.mark.parametrize("name", [TRAINER_STATE_FILENAME, SOURCE_STATE_FILENAME])
def test_corrupt_state_file_names_the_file(checkpoint: Path, name: str, payload: bytes) -> None:
    (checkpoint / name).write_bytes(_pickle_bytes_replaced(_state_bytes(), payload))
    with pytest.raises(SAEFileError) as caught:
        read_checkpoint(checkpoint, "cpu")
    message = str(caught.value)
    assert message.startswith(f"{checkpoint / name}: the checkpoint is unreadable") and "\n" not in message


def test_intact_checkpoint_reads(checkpoint: Path) -> None:
    assert read_checkpoint(checkpoint, "cpu").trainer_state["step"] == 3
