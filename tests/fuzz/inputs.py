"""Strategies for the fuzz tests, and the one rule every input must meet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from saecore.errors import SaecoreError

HUGE_INTS = st.sampled_from([0, -1, 2**31, 2**62, 2**63, 2**64, 2**70, 10**30])
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), HUGE_INTS, st.floats(allow_nan=False), st.text(max_size=12),
    st.sampled_from([1e30, 8.0, 8.5, -0.0, "topk", "standard", "float32", "", "8"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def raises_only_named_errors(action: Callable[[], Any], *names: str) -> None:
    """``action`` succeeds, or raises a saecore error whose one-line message contains one of ``names``."""
    try:
        action()
    except SaecoreError as error:
        message = str(error)
        assert any(name in message for name in names), f"{type(error).__name__} names none of {names}: {message}"
