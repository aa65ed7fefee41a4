"""Registers the toy source in-process for the whole session (as a notebook would add one).

The runner then resolves it through the registry exactly as it resolves an installed
plugin's source.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from training_helpers import TOY_SOURCE_NAME, ToySourcePlugin

from saecore.registry import add_in_process_plugin, remove_in_process_plugin

# Two shared cores: torch's thread pool only adds contention for these tiny matrices.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def toy_source_registered() -> Iterator[None]:
    add_in_process_plugin(ToySourcePlugin(), TOY_SOURCE_NAME)
    yield
    remove_in_process_plugin(TOY_SOURCE_NAME)
