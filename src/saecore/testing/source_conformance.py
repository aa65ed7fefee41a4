"""Checks every activation source must pass, whoever wrote it.

The trainer relies on a handful of promises (see :class:`saecore.ActivationSource`):
batches of ``[n, d_in]`` floats on the source's device, the same batches for the same
seed, a ``state_dict`` that resumes exactly after a checkpoint round trip, and a
``check_batch_size`` that refuses what it cannot serve, and ``streams()`` that name the
column blocks a sweep splits each batch into (several hooks of one forward pass, say),
each with its target width and metadata. These checks hold a source to them through the
registry, the way ``saecore train --source NAME`` builds it, and end
by training a small standard SAE on it with :class:`saecore.training.TrainingRunner`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from saecore.errors import ConfigError
from saecore.registry import get_registry
from saecore.sources.base import ActivationSource, SourceConfig

STANDARD_RECIPE = "standard"


class SourceConformance:
    """Pytest base class; subclasses set the class attributes below.

    ``source`` is the registered name and ``config`` the fields of its config; keep the
    source small, since every check builds a few. ``oversized_batch_size`` is a batch size
    ``check_batch_size`` must refuse (None when the source can serve any size).
    ``seed_changes_batches`` is False for sources whose batches do not depend on the seed.
    ``stream_alone`` maps some of a several-stream source's streams to config fields of a
    source reading that stream alone: its batches must be that stream's columns, batch for
    batch, under the same seed (serving streams side by side changes none of them).
    """

    source: ClassVar[str]
    config: ClassVar[dict[str, Any]] = {}
    batch_size: ClassVar[int] = 64
    device: ClassVar[str] = "cpu"
    oversized_batch_size: ClassVar[int | None] = None
    seed_changes_batches: ClassVar[bool] = True
    stream_alone: ClassVar[dict[str, dict[str, Any]]] = {}
    training_steps: ClassVar[int] = 20
    training_lr: ClassVar[float] = 3e-3

    # -- helpers -------------------------------------------------------------------------
    def make_config(self, **fields: Any) -> SourceConfig:
        config_class = get_registry().source(self.source).config_class
        config: SourceConfig = config_class.model_validate({**self.config, **fields})
        return config

    def make_source(self, seed: int = 0, **fields: Any) -> ActivationSource:
        """A source built as the CLI and the runner build it; closed after the test."""
        source: ActivationSource = get_registry().source(self.source).source_class(
            self.make_config(**fields), seed=seed, device=self.device
        )
        self._opened().append(source)
        return source

    def _opened(self) -> list[ActivationSource]:
        if not hasattr(self, "_sources"):
            self._sources: list[ActivationSource] = []
        return self._sources

    def teardown_method(self, method: Any) -> None:
        for source in self._opened():
            source.close()
        self._sources = []

    def take(self, source: ActivationSource, n_batches: int, batch_size: int | None = None) -> list[torch.Tensor]:
        return [source.next_batch(batch_size or self.batch_size) for _ in range(n_batches)]

    @staticmethod
    def checkpointed(state: dict[str, Any]) -> dict[str, Any]:
        """``state`` after the trip through a checkpoint file (``torch.load(weights_only=True)``)."""
        from saecore.training.checkpoint import serialize_weights_only

        data = serialize_weights_only(state, "state_dict()")
        loaded: dict[str, Any] = torch.load(io.BytesIO(data), weights_only=True)
        return loaded

    @staticmethod
    def assert_same_batches(first: list[torch.Tensor], second: list[torch.Tensor], what: str) -> None:
        for index, (a, b) in enumerate(zip(first, second)):
            assert torch.equal(a, b), f"{what}: batch {index} differs"

    # -- the registration ----------------------------------------------------------------
    def test_registered_with_source_and_config_classes(self) -> None:
        entry = get_registry().source(self.source)
        assert issubclass(entry.source_class, ActivationSource)
        assert issubclass(entry.config_class, SourceConfig)
        assert isinstance(self.make_config(), entry.config_class)

    def test_config_rejects_unknown_fields(self) -> None:
        import pytest
        from pydantic import ValidationError

        with pytest.raises((ValidationError, ConfigError), match="no_such_field"):
            self.make_config(no_such_field=1)

    # -- batches -------------------------------------------------------------------------
    def test_batches_have_the_promised_shape_dtype_and_device(self) -> None:
        source = self.make_source()
        d_in = source.d_in
        assert isinstance(d_in, int) and d_in > 0, f"d_in must be a positive int, got {d_in!r}"
        for batch_size in (self.batch_size, max(self.batch_size // 2 + 1, 1), 1):
            batch = source.next_batch(batch_size)
            assert isinstance(batch, torch.Tensor)
            assert tuple(batch.shape) == (batch_size, d_in), f"asked for {batch_size} rows of {d_in}, got {batch.shape}"
            assert batch.is_floating_point(), f"batches must be floating point, got {batch.dtype}"
            assert batch.device.type == torch.device(self.device).type
            assert bool(torch.isfinite(batch).all()), "a batch holds NaN or infinite values"

    def test_d_in_is_the_same_for_the_same_config(self) -> None:
        first, second = self.make_source(seed=0), self.make_source(seed=1)
        assert first.d_in == second.d_in
        widths = {batch.shape[1] for batch in self.take(first, 3)}
        assert widths == {first.d_in}

    def test_same_seed_gives_the_same_batches(self) -> None:
        first = self.take(self.make_source(seed=7), 3)
        second = self.take(self.make_source(seed=7), 3)
        self.assert_same_batches(first, second, "two sources with seed 7")

    def test_different_seeds_give_different_batches(self) -> None:
        import pytest

        if not self.seed_changes_batches:
            pytest.skip("seed_changes_batches is False for this source")
        first = self.take(self.make_source(seed=1), 2)
        second = self.take(self.make_source(seed=2), 2)
        assert any(not torch.equal(a, b) for a, b in zip(first, second)), "seeds 1 and 2 served the same batches"

    # -- resuming ------------------------------------------------------------------------
    def test_state_dict_resumes_exactly_after_a_checkpoint(self) -> None:
        original = self.make_source(seed=3)
        self.take(original, 2)
        state = self.checkpointed(original.state_dict())
        expected = self.take(original, 3)
        resumed = self.make_source(seed=3)
        resumed.load_state_dict(state)
        self.assert_same_batches(self.take(resumed, 3), expected, "the resumed source")

    def test_state_dict_at_the_start_resumes_at_the_start(self) -> None:
        original = self.make_source(seed=4)
        state = self.checkpointed(original.state_dict())
        expected = self.take(original, 2)
        resumed = self.make_source(seed=4)
        self.take(resumed, 1)
        resumed.load_state_dict(state)
        self.assert_same_batches(self.take(resumed, 2), expected, "a source moved back to its start")

    # -- streams -------------------------------------------------------------------------
    @staticmethod
    def stream_slices(source: ActivationSource) -> dict[str, slice]:
        """Each stream's columns of a batch, in the order ``streams()`` lists them."""
        slices: dict[str, slice] = {}
        start = 0
        for name, width in source.streams().items():
            slices[name] = slice(start, start + width)
            start += width
        return slices

    def test_streams_are_named_widths_that_add_up_to_d_in(self) -> None:
        source = self.make_source()
        streams = source.streams()
        assert isinstance(streams, dict) and streams, f"streams() must name at least one stream, got {streams!r}"
        for name, width in streams.items():
            assert isinstance(name, str) and name, f"stream names must be non-empty strings, got {name!r}"
            assert isinstance(width, int) and width > 0, f"stream {name!r} has width {width!r}; widths are positive"
        assert sum(streams.values()) == source.d_in, f"streams {streams} add up to {sum(streams.values())}, " \
                                                     f"but d_in is {source.d_in}"

    def test_streams_do_not_depend_on_the_seed_or_the_position(self) -> None:
        first, second = self.make_source(seed=0), self.make_source(seed=1)
        streams = first.streams()
        self.take(first, 2)
        assert first.streams() == streams, "streams() changed after serving batches"
        assert second.streams() == streams, f"seed 1 gives streams {second.streams()}, seed 0 gives {streams}"

    def test_each_stream_has_a_target_width_and_json_metadata(self) -> None:
        source = self.make_source()
        streams = source.streams()
        for name, width in streams.items():
            target = source.stream_target_width(name)
            assert isinstance(target, int) and 0 <= target < width, \
                f"stream {name!r}: stream_target_width is {target!r}; it must leave input columns in its {width}"
            metadata = source.stream_metadata(name)
            assert isinstance(metadata, dict) and all(isinstance(key, str) for key in metadata)
            assert json.loads(json.dumps(metadata)) == metadata, f"stream_metadata({name!r}) must hold JSON values"
        if len(streams) == 1:
            (name,) = streams
            assert source.stream_target_width(name) == source.target_width, \
                "the only stream's target width must be the source's target_width"
            assert source.stream_metadata(name) == source.sae_metadata(), \
                "the only stream's metadata must be the source's sae_metadata()"

    def test_each_stream_is_seeded_and_read_alone_serves_its_columns(self) -> None:
        together = self.make_source(seed=5)
        slices = self.stream_slices(together)
        unknown = sorted(set(self.stream_alone) - set(slices))
        assert not unknown, f"stream_alone names {unknown}, which are not among the streams {list(slices)}"
        batches = self.take(together, 3)
        again = self.take(self.make_source(seed=5), 3)
        for name, columns in slices.items():
            self.assert_same_batches([batch[:, columns] for batch in again], [batch[:, columns] for batch in batches],
                                     f"stream {name!r} of two sources with seed 5")
        for name, fields in self.stream_alone.items():
            alone = self.make_source(seed=5, **fields)
            width = slices[name].stop - slices[name].start
            assert alone.d_in == width, f"stream {name!r} alone serves d_in={alone.d_in}, in the batch it is {width}"
            assert alone.target_width == together.stream_target_width(name), \
                f"stream {name!r}: target_width alone differs from its stream_target_width"
            assert alone.sae_metadata() == together.stream_metadata(name), \
                f"stream {name!r}: sae_metadata() alone differs from its stream_metadata"
            columns = [batch[:, slices[name]] for batch in batches]
            self.assert_same_batches(self.take(alone, 3), columns, f"stream {name!r} read alone")

    # -- what the runner asks besides batches ---------------------------------------------
    def test_check_batch_size(self) -> None:
        import pytest

        source = self.make_source()
        source.check_batch_size(self.batch_size)
        if self.oversized_batch_size is not None:
            with pytest.raises(ConfigError, match=str(self.oversized_batch_size)):
                source.check_batch_size(self.oversized_batch_size)

    def test_sae_metadata_is_json(self) -> None:
        metadata = self.make_source().sae_metadata()
        assert isinstance(metadata, dict) and all(isinstance(key, str) for key in metadata)
        assert json.loads(json.dumps(metadata)) == metadata, "sae_metadata() must hold JSON values (cfg.json)"

    def test_ground_truth_features_match_d_in(self) -> None:
        source = self.make_source()
        truth = source.ground_truth_features()
        if truth is not None:
            assert truth.ndim == 2 and truth.shape[1] == (source.target_width or source.d_in)

    # -- training ------------------------------------------------------------------------
    def test_training_lowers_the_loss_and_the_result_saves_and_loads(self, tmp_path: Path) -> None:
        """A standard SAE trained on the source reconstructs it better than at initialisation.

        ``expected_average_only_in`` makes the check indifferent to the activations' scale;
        the scale is folded in before saving, so the saved SAE reads raw activations. A
        source of several streams trains it, as a sweep of one, on its first stream without a
        target (a plain SAE's stream), else its first.
        """
        import pytest

        from saecore.sae import SAE
        from saecore.training import (
            SAESweepConfig,
            SAESweepRunner,
            SweepMember,
            TrainingRunner,
            TrainingRunnerConfig,
        )
        from saecore.training.rng import seed_everything

        registry = get_registry()
        if STANDARD_RECIPE not in registry.training_recipes:
            pytest.skip("training check needs saecore-sae-standard (pip install saecore-sae-standard)")
        source = self.make_source(seed=0)
        streams = source.streams()
        inputs_only = [name for name in streams if source.stream_target_width(name) == 0]
        stream = (inputs_only or list(streams))[0] if len(streams) > 1 else None
        columns = self.stream_slices(source)[stream] if stream is not None else slice(None)
        d_in = streams[stream] if stream is not None else source.d_in
        recipe = registry.training_recipe(STANDARD_RECIPE)
        sae_cfg = recipe.training_config_class.model_validate({
            "d_in": d_in, "d_sae": 2 * d_in, "l1_coefficient": 1e-3,
            "normalize_activations": "expected_average_only_in", "device": self.device,
        })
        cfg = TrainingRunnerConfig(
            sae=sae_cfg, source=source.cfg, device=self.device, seed=0, lr=self.training_lr,
            train_batch_size_tokens=self.batch_size, training_tokens=self.batch_size * self.training_steps,
            n_batches_for_norm_estimate=2, n_eval_batches=1, output_path=str(tmp_path / "sae"),
            checkpoint_path=str(tmp_path / "checkpoints"), verbose=False,
        )
        if stream is None:
            trained = TrainingRunner(cfg, source=source).run()
            expected_metadata = source.sae_metadata()
        else:
            sweep = SAESweepConfig(members=[SweepMember(name="sae", stream=stream, run=cfg)])
            trained = SAESweepRunner(sweep, source).run()["sae"]
            expected_metadata = source.stream_metadata(stream)
        seed_everything(cfg.seed)
        untrained = recipe.training_sae_class(sae_cfg.model_copy(deep=True))

        held_out = self.make_source(seed=12345).next_batch(self.batch_size)[:, columns]
        with torch.no_grad():
            trained_mse = float((trained(held_out) - held_out).pow(2).sum(-1).mean())
            untrained_mse = float((untrained(held_out) - held_out).pow(2).sum(-1).mean())
            assert trained_mse < untrained_mse, f"MSE after training {trained_mse} >= at initialisation {untrained_mse}"
            loaded = SAE.load_from_disk(tmp_path / "sae", device=self.device)
            torch.testing.assert_close(loaded(held_out), trained(held_out), rtol=1e-5, atol=1e-5)
        for key, value in expected_metadata.items():
            assert loaded.cfg.metadata[key] == value, f"metadata {key!r} from the source was not saved"
