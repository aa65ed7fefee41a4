"""SAELens's names for the formats of its pretrained directory (``conversion_func``) and saecore's converter names.

saecore names a converter after the format it reads; SAELens names a loader function.
Two names differ: SAELens's ``gemma_2`` is Gemma Scope (``gemma_scope``) and its
``dictionary_learning_1`` is ``dictionary_learning``. A release without a
``conversion_func`` is in SAELens's own format, ``sae_lens``. Every other name is the same
in both. The directory build script reads SAELens's names through this table, and
``saecore.loading.pretrained_saes_directory`` writes them back.
"""

from __future__ import annotations

SAELENS_FORMAT = "sae_lens"
CONVERTER_OF_CONVERSION_FUNC = {"gemma_2": "gemma_scope", "dictionary_learning_1": "dictionary_learning"}
_CONVERSION_FUNC_OF_CONVERTER = {converter: func for func, converter in CONVERTER_OF_CONVERSION_FUNC.items()}


def converter_name(conversion_func: str | None) -> str:
    """saecore's converter for a release whose SAELens ``conversion_func`` is ``conversion_func``."""
    if conversion_func is None:
        return SAELENS_FORMAT
    return CONVERTER_OF_CONVERSION_FUNC.get(conversion_func, conversion_func)


def conversion_func_name(converter: str) -> str | None:
    """SAELens's ``conversion_func`` for a release saecore reads with ``converter`` (None: SAELens's own format)."""
    if converter == SAELENS_FORMAT:
        return None
    return _CONVERSION_FUNC_OF_CONVERTER.get(converter, converter)
