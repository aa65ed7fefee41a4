"""Fuzzed ``saecore train`` command lines: parsed and validated, or a saecore error naming the flag or file.

The command line is read and every section is validated as ``saecore train`` does before
it builds a source; nothing is trained.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.inputs import HUGE_INTS
from saecore.cli import train_cmd
from saecore.config.validation import validate_model
from saecore.errors import SaecoreError
from saecore.registry import get_registry

pytest.importorskip("saecore_sae_topk")

FLAGS = ["--arch", "--source", "--config", "--sweep", "--k", "--d-sae", "--d-in", "--lr", "--lr-warm-up-steps",
         "--lr-w", "--seed", "--training-tokens", "--train-batch-size-tokens", "--n-features", "--device", "--dtype",
         "--l1", "--output-path", "--log-to-wandb", "--sae-placement", "--d-sa", "--K"]
VALUES = st.one_of(
    st.sampled_from(["", "topk", "standard", "synthetic", "nope", "true", "null", "[1", "{", "8", "8.0", "1e5", "-1",
                     "2**70", ".", "missing.yaml", "[1, 2]", "{\"a\": 1}", "nan", "inf", "cpu", "float32"]),
    HUGE_INTS.map(str),
    st.text(alphabet="abc-=.0123456789[]{}", max_size=6),
)
TOKENS = st.lists(st.sampled_from(FLAGS) | VALUES, max_size=8)
CONFIG_TEXTS = st.sampled_from([
    "arch: topk\nsae: {k: 4}\nsae: {k: 8}\n", "archh: topk\n", "arch: topk\nlr_warm_up: 3\n", "- 1\n", "arch: [1]\n",
    "arch: topk\nsae: 5\n", "arch: topk\nsae: {K: 8}\n", "arch: topk\nseed: 1180591620717411303424\n", "{", "\t",
    "arch: topk\nsource_config: {n_features: 2.5}\n", "arch: topk\n",
])


def _validate(argv: list[str]) -> None:
    """What ``saecore train`` checks before building a source: the flags, the file and every section's model."""
    from saecore.training import LoggingConfig, TrainerConfig

    if "--sweep" in argv:
        pre, _ = train_cmd._pre_parser().parse_known_args(argv)
        if pre.sweep is not None:
            train_cmd.read_config_file(pre.sweep)
        return
    archs, source, sections, _ = train_cmd.collect_settings(argv)
    registry = get_registry()
    validate_model(registry.source(source).config_class, sections["source_config"], f"source {source!r}")
    validate_model(LoggingConfig, sections["logger"], "logging options")
    validate_model(TrainerConfig, sections["trainer"], "trainer options")
    for arch in archs:
        validate_model(registry.training_recipe(arch).training_config_class, {"d_in": 64, **sections[f"sae:{arch}"]},
                       f"SAE options for {arch!r}")


@given(tokens=TOKENS, config=CONFIG_TEXTS | st.none())
def test_fuzzed_train_command_line(tmp_path: Path, tokens: list[str], config: str | None) -> None:
    argv = ["--arch", "topk", *tokens]
    if config is not None:
        path = tmp_path / "run.yaml"
        path.write_text(config)
        argv += ["--config", str(path)]
    try:
        _validate(argv)
    except SaecoreError as error:
        message = str(error)
        assert "\n" not in message.strip(), message
        assert any(token in message for token in ("--", "field", ".yaml", "arch", "source", "sae")), message
        assert "unknown option(s): ." not in message and "could not parse '' as JSON" not in message, message
