"""Opening a dataset and reading its documents from any position.

A dataset comes from the hub (streamed or not), from local files or a folder (json/jsonl,
txt, csv, parquet, or a ``save_to_disk`` folder), or from Python as a ``datasets``
object. Reading can start at any document index, which is how a resumed run skips the
documents it has already used without tokenizing them again.

A :class:`DocumentSelection` narrows the documents read, keeping their indices: the
documents held out for evaluations are skipped, and in data-parallel training rank ``r``
of ``W`` reads every ``W``-th of the rest. Indices stay those of the whole dataset, so a
position means the same thing whatever the selection.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saecore.errors import ConfigError

TOKEN_COLUMNS = ("tokens", "input_ids")
TEXT_COLUMNS = ("text",)
CHAT_COLUMNS = ("conversation", "conversations", "messages", "text")
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".txt": "text", ".text": "text", ".csv": "csv",
                 ".parquet": "parquet"}
SAVED_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
READ_CHUNK = 256


@dataclass(frozen=True)
class DatasetColumn:
    """The column documents are read from; ``chat``: each row is a conversation for the chat template."""

    name: str
    tokenized: bool
    chat: bool = False


@dataclass(frozen=True)
class DocumentSelection:
    """Documents ``first, first + 1, …`` (the ones before are held out), every ``world_size``-th from ``rank``."""

    first: int = 0
    rank: int = 0
    world_size: int = 1

    def includes(self, index: int) -> bool:
        return index >= self.first and (index - self.first) % self.world_size == self.rank

    def describe(self) -> str:
        """How the selection narrows the dataset, for error messages ('' when it reads everything)."""
        parts = []
        if self.first:
            parts.append(f"after the first {self.first} documents, held out for evaluations")
        if self.world_size > 1:
            parts.append(f"rank {self.rank}'s share of {self.world_size} data-parallel ranks")
        return f" ({'; '.join(parts)})" if parts else ""


ALL_DOCUMENTS = DocumentSelection()


def open_dataset(path: str, dataset: Any, *, split: str, streaming: bool, trust_remote_code: bool = False) -> Any:
    """The ``datasets`` object to read: ``dataset`` when given, else what ``path`` names."""
    try:
        return _open_dataset(path, dataset, split=split, streaming=streaming,
                             hub_options=hub_loading_options(trust_remote_code, datasets_major()))
    except StopIteration:
        # datasets' json and csv builders raise a bare StopIteration on files with no rows.
        raise ConfigError(f"dataset_path={path!r}: has no rows (the file or every file in the folder is empty)") \
            from None


def datasets_major() -> int:
    from importlib.metadata import version

    return int(version("datasets").split(".")[0])


def hub_loading_options(trust_remote_code: bool, major: int) -> dict[str, Any]:
    """``load_dataset`` options for a Hub dataset: loading scripts exist only before datasets 4.

    datasets 4 and later run no loading script and report ``trust_remote_code`` as an error,
    so it is passed only to older versions.
    """
    return {"trust_remote_code": trust_remote_code} if major < 4 else {}


def _open_dataset(path: str, dataset: Any, *, split: str, streaming: bool, hub_options: dict[str, Any]) -> Any:
    import datasets

    if dataset is not None:
        return _from_object(dataset, split)
    if not path:
        raise ConfigError("dataset_path is empty and no dataset object was given; set dataset_path "
                          "(a hub dataset, local files or a folder) or pass dataset=<datasets.Dataset>")
    local = Path(path).expanduser()
    if local.is_dir():
        if any((local / marker).exists() for marker in SAVED_DATASET_MARKERS):
            return _from_object(datasets.load_from_disk(str(local)), split)
        return datasets.load_dataset(str(local), split=split, streaming=streaming)
    files = [Path(p) for p in glob.glob(str(local))] if _is_glob(path) else ([local] if local.is_file() else [])
    if files:
        suffix = files[0].suffix.lower()
        if suffix not in FILE_BUILDERS:
            raise ConfigError(f"dataset_path={path!r}: cannot read {suffix or 'extension-less'} files; "
                              f"use one of {', '.join(sorted(FILE_BUILDERS))} or a folder")
        return datasets.load_dataset(FILE_BUILDERS[suffix], data_files={split: str(local)}, split=split,
                                     streaming=streaming)
    if _is_glob(path) or path.startswith((".", "/", "~")) or local.suffix.lower() in FILE_BUILDERS:
        raise ConfigError(f"dataset_path={path!r}: no such file or folder")
    return datasets.load_dataset(path, split=split, streaming=streaming, **hub_options)


def _is_glob(path: str) -> bool:
    return any(char in path for char in "*?[")


def _from_object(dataset: Any, split: str) -> Any:
    import datasets

    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in dataset:
            raise ConfigError(f"dataset_split={split!r} is not a split of the dataset (splits: {', '.join(dataset)})")
        return dataset[split]
    if isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        return dataset
    if isinstance(dataset, list) and all(isinstance(row, dict) for row in dataset):
        return datasets.Dataset.from_list(dataset)
    raise ConfigError(f"dataset must be a datasets Dataset, IterableDataset, DatasetDict or a list of dicts, "
                      f"got {type(dataset).__name__}")


def column_names(dataset: Any) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names:
        return list(names)
    first = next(iter(dataset), None)
    return list(first) if isinstance(first, dict) else []


def choose_column(
    dataset: Any, *, column: str | None, is_tokenized: bool | None, where: str = "the dataset", chat: bool = False
) -> DatasetColumn:
    """The column to read and whether it holds token ids, from the names the dataset has.

    With ``chat`` (use_chat_formatting) the column holds conversations, or text taken as
    one user message each.
    """
    found = column_names(dataset)
    if not found:
        raise ConfigError(f"{where}: has no rows (no column found to read documents from)")
    shown = ", ".join(repr(name) for name in found) or "none"
    if chat:
        name = column if column is not None else next((name for name in CHAT_COLUMNS if name in found), None)
        if name is None or name not in found:
            raise ConfigError(f"use_chat_formatting=True needs a 'conversation', 'conversations', 'messages' or "
                              f"'text' column (or dataset_column naming one), found columns: {shown}")
        return DatasetColumn(name, tokenized=False, chat=True)
    if column is not None:
        if column not in found:
            raise ConfigError(f"dataset_column={column!r} is not a column of the dataset (columns found: {shown})")
        tokenized = is_tokenized if is_tokenized is not None else not isinstance(_first_value(dataset, column), str)
        return DatasetColumn(column, tokenized)
    candidates = {True: TOKEN_COLUMNS, False: TEXT_COLUMNS, None: TOKEN_COLUMNS + TEXT_COLUMNS}[is_tokenized]
    for name in candidates:
        if name in found:
            return DatasetColumn(name, name in TOKEN_COLUMNS)
    wanted = {True: "a 'tokens' or 'input_ids' column (is_dataset_tokenized=True)",
              False: "a 'text' column (is_dataset_tokenized=False)",
              None: "a 'tokens' or 'input_ids' column (token ids) or a 'text' column"}[is_tokenized]
    raise ConfigError(f"the dataset has no usable column: expected {wanted}, found columns: {shown}. "
                      "Set dataset_column to the column to read")


def _first_value(dataset: Any, column: str) -> Any:
    first = next(iter(dataset), None)
    return None if first is None else first[column]


def iter_column(
    dataset: Any, column: str, start: int, selection: DocumentSelection = ALL_DOCUMENTS
) -> Iterator[tuple[int, Any]]:
    """``(index, value)`` for each selected document from index ``start`` to the end of the dataset.

    A streamed dataset is still read in full by every rank (only the selected documents are
    tokenized and run through the model).
    """
    import datasets

    start = max(start, selection.first)
    if isinstance(dataset, datasets.Dataset):
        table = dataset.select_columns([column])
        for begin in range(start, len(table), READ_CHUNK):
            values = table[begin:begin + READ_CHUNK][column]
            yield from ((i, value) for i, value in enumerate(values, start=begin) if selection.includes(i))
        return
    rows = dataset.select_columns([column])
    if start > 0:
        rows = rows.skip(start)
    for index, row in enumerate(rows, start=start):
        if selection.includes(index):
            yield index, row[column]
