"""The README.md model card of a pushed repo, generated from each SAE's cfg.json.

It says what each SAE is (architecture, widths, model and hook), how well it did when
that is recorded (L0 and explained variance from the training metrics in ``metadata``),
and how to load it with saecore and with SAELens. Facts that are unknown show as ``-``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from saecore.known_plugins import ARCHITECTURE_PACKAGES
from saecore.version import __version__

UNKNOWN = "-"
# Metadata keys training runs write, with the label they get in the card's details.
_DETAIL_KEYS = (
    ("training_architecture", "training recipe"),
    ("dataset_path", "dataset"),
    ("context_size", "context size"),
    ("num_dead_features", "dead features"),
    ("neuronpedia_id", "Neuronpedia"),
)
_CORE_KEYS = {"d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input", "normalize_activations",
              "reshape_activations", "architecture", "metadata"}


@dataclass(frozen=True)
class CardEntry:
    sae_id: str
    cfg: dict[str, Any]
    has_sparsity: bool


def render_model_card(repo_id: str, entries: Sequence[CardEntry]) -> str:
    first = entries[0].sae_id
    architectures = sorted({str(entry.cfg.get("architecture")) for entry in entries})
    packages = sorted({ARCHITECTURE_PACKAGES[a] for a in architectures if a in ARCHITECTURE_PACKAGES})
    install = " ".join(["saecore", *packages])
    lines = [
        "---",
        "library_name: saecore",
        "tags:",
        "- sparse-autoencoder",
        "- saecore",
        "- saelens",
        "---",
        "",
        f"# Sparse autoencoders in {repo_id}",
        "",
        f"{_count(len(entries))} in the SAELens v6 format (`cfg.json` + `sae_weights.safetensors`), "
        f"published with saecore {__version__}. Each SAE is a folder of this repo; its name is the `sae_id`.",
        "",
        "| sae_id | architecture | d_in | d_sae | model | hook | L0 | explained variance |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *(_table_row(entry) for entry in entries),
        "",
        "## Loading",
        "",
        f"With saecore (`pip install {install}`):",
        "",
        "```python",
        "from saecore import SAE",
        "",
        f'sae = SAE.from_pretrained("{repo_id}", "{first}")',
        "```",
        "",
        "With SAELens 6 (`pip install sae-lens`):",
        "",
        "```python",
        "from sae_lens import SAE",
        "",
        f'sae = SAE.from_pretrained("{repo_id}", "{first}")',
        "```",
        "",
        "## Details",
    ]
    for entry in entries:
        lines += ["", f"### {entry.sae_id}", "", *_details(entry)]
    return "\n".join(lines) + "\n"


def _count(n: int) -> str:
    return "One sparse autoencoder" if n == 1 else f"{n} sparse autoencoders"


def _table_row(entry: CardEntry) -> str:
    cfg, metadata = entry.cfg, entry.cfg.get("metadata") or {}
    explained = metadata.get("explained_variance", metadata.get("variance_explained"))
    cells = [
        f"`{entry.sae_id}`",
        str(cfg.get("architecture", UNKNOWN)),
        str(cfg.get("d_in", UNKNOWN)),
        str(cfg.get("d_sae", UNKNOWN)),
        _text(metadata.get("model_name")),
        _code(metadata.get("hook_name")),
        _number(metadata.get("l0"), ".2f"),
        _number(explained, ".4f"),
    ]
    return "| " + " | ".join(cells) + " |"


def _details(entry: CardEntry) -> list[str]:
    cfg, metadata = entry.cfg, entry.cfg.get("metadata") or {}
    details = [f"- {key}: `{value}`" for key, value in sorted(cfg.items()) if key not in _CORE_KEYS]
    details += [
        f"- dtype: `{cfg.get('dtype', UNKNOWN)}`",
        f"- input normalisation: `{cfg.get('normalize_activations', 'none')}`",
        f"- subtracts b_dec from its input: {'yes' if cfg.get('apply_b_dec_to_input', True) else 'no'}",
    ]
    details += [f"- {label}: {metadata[key]}" for key, label in _DETAIL_KEYS if metadata.get(key) is not None]
    details.append(f"- feature sparsity file: {'yes' if entry.has_sparsity else 'no'}")
    return details


def _text(value: Any) -> str:
    return UNKNOWN if value is None else str(value)


def _code(value: Any) -> str:
    return UNKNOWN if value is None else f"`{value}`"


def _number(value: Any, spec: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return UNKNOWN
    return format(value, spec)
