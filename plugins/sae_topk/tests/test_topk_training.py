"""TopKTrainingSAE's losses and gradients against the float64 reference, plus saving."""

from __future__ import annotations

import json

import pytest
import topk_reference as ref
import torch
from saecore_sae_topk import sparse_encoder
from saecore_sae_topk.topk_sae import TopKSAE
from saecore_sae_topk.topk_training_sae import TopKTrainingSAE
from topk_helpers import leaf_copies, training_sae
from topk_reference import RefOptions
from torch.utils._python_dispatch import TorchDispatchMode

from saecore import SAE, ConfigError, TrainStepInput, TrainStepOutput
from saecore.sparse import auxk, support

D_IN, D_SAE, K, BATCH = 16, 64, 4, 24
PARAM_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")
# None, nobody dead, fewer dead than d_in // 2 (scale < 1), more dead than d_in // 2.
DEAD_CASES = {"none": None, "zero": 0, "few": 5, "many": 30}


def _batch(seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(BATCH, D_IN, generator=gen, dtype=torch.float64)


def _dead_mask(n_dead: int | None, seed: int = 2) -> torch.Tensor | None:
    if n_dead is None:
        return None
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(D_SAE, dtype=torch.bool)
    mask[torch.randperm(D_SAE, generator=gen)[:n_dead]] = True
    return mask


def _step(
    sae: TopKTrainingSAE, x: torch.Tensor, dead: torch.Tensor | None, is_logging_step: bool = False
) -> TrainStepOutput:
    return sae.training_forward_pass(TrainStepInput(x, {}, dead, n_training_steps=0, is_logging_step=is_logging_step))


def _check_step_against_reference(
    sae: TopKTrainingSAE, o: RefOptions, seed: int, dead: torch.Tensor | None, x: torch.Tensor | None = None
) -> None:
    p = ref.random_params(D_IN, D_SAE, seed=seed)
    x = _batch(seed + 100) if x is None else x
    out = _step(sae, x, dead)
    out.loss.backward()

    leaves = leaf_copies(p)
    expected = ref.losses(x.detach(), leaves, o, dead)
    (expected["mse_loss"] + expected["auxiliary_reconstruction_loss"]).backward()

    assert set(out.losses) == {"mse_loss", "auxiliary_reconstruction_loss"}
    for name in ("mse_loss", "auxiliary_reconstruction_loss"):
        torch.testing.assert_close(out.losses[name], expected[name].detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.loss, out.losses["mse_loss"] + out.losses["auxiliary_reconstruction_loss"])
    for name in PARAM_NAMES:
        ours, expected_grad = getattr(sae, name).grad, getattr(leaves, name).grad
        torch.testing.assert_close(ours, expected_grad, rtol=1e-9, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")
    feature_acts = out.feature_acts.to_dense() if out.feature_acts.is_sparse else out.feature_acts
    torch.testing.assert_close(feature_acts, expected["f"].detach(), rtol=1e-10, atol=1e-12)
    assert out.hidden_pre is not None
    torch.testing.assert_close(out.hidden_pre, expected["h"].detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.latent_firing_counts(), (expected["f"] > 0).sum(0))


@pytest.mark.parametrize("aux_route", ["dense block", "gather"])
@pytest.mark.parametrize("dead_case", list(DEAD_CASES))
@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_sparse_step_matches_reference(
    dead_case: str, rescale: bool, apply_b_dec: bool, aux_route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if aux_route == "gather":
        monkeypatch.setattr(auxk, "DENSE_BLOCK_MAX_DEAD_PER_KEPT", 0)
    o = RefOptions(k=K, rescale=rescale, apply_b_dec_to_input=apply_b_dec, aux_coefficient=0.7)
    sae = training_sae(ref.random_params(D_IN, D_SAE, seed=3), o)
    _check_step_against_reference(sae, o, seed=3, dead=_dead_mask(DEAD_CASES[dead_case]))


@pytest.fixture
def sorted_entries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The entry count of every sort by latent (``latent_runs``) the plugin makes from here on."""
    counts: list[int] = []
    real_latent_runs = support.latent_runs

    def counted(latents: torch.Tensor, d_sae: int) -> tuple[torch.Tensor, torch.Tensor]:
        counts.append(latents.numel())
        return real_latent_runs(latents, d_sae)

    monkeypatch.setattr(support, "latent_runs", counted)
    return counts


def test_both_weight_gradients_share_one_sort_of_the_code_entries(sorted_entries: list[int]) -> None:
    """The decoder's and the encoder's gradients sum by latent over the same entries: one sort serves both."""
    o = RefOptions(k=K, rescale=True)
    sae = training_sae(ref.random_params(D_IN, D_SAE, seed=5), o)
    _check_step_against_reference(sae, o, seed=5, dead=None)
    assert sorted_entries == [BATCH * K]


def test_the_auxk_gather_route_also_sorts_its_entries_once(
    sorted_entries: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The main code and the AuxK code are each sorted once for their two weight gradients."""
    monkeypatch.setattr(auxk, "DENSE_BLOCK_MAX_DEAD_PER_KEPT", 0)
    o = RefOptions(k=K, rescale=True, aux_coefficient=0.7)
    sae = training_sae(ref.random_params(D_IN, D_SAE, seed=5), o)
    _check_step_against_reference(sae, o, seed=5, dead=_dead_mask(DEAD_CASES["many"]))
    assert sorted(sorted_entries) == sorted([BATCH * K, BATCH * (D_IN // 2)])


class _ScaledEncoderCopies(TorchDispatchMode):
    """Records the shape of every elementwise product shaped like (columns of) ``W_enc``."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        result = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.mul.Tensor and result.dim() == 2 and result.shape[0] == D_IN:
            self.shapes.append(tuple(result.shape))
        return result


@pytest.mark.parametrize("block_columns", [16, 24])
def test_the_rescaled_encoder_runs_in_column_blocks_without_a_scaled_copy_of_w_enc(
    block_columns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of 16 divide d_sae = 64; blocks of 24 leave a last block of 16."""
    monkeypatch.setattr(sparse_encoder, "SCALED_ENCODER_BLOCK_COLUMNS", block_columns)
    o = RefOptions(k=K, rescale=True, aux_coefficient=0.7)
    sae = training_sae(ref.random_params(D_IN, D_SAE, seed=6), o)
    with _ScaledEncoderCopies() as copies:
        _step(sae, _batch(6), None)
    expected_blocks = [(D_IN, min(block_columns, D_SAE - start)) for start in range(0, D_SAE, block_columns)]
    assert copies.shapes == expected_blocks  # one block of W_enc · n at a time, never all of it
    sae.zero_grad()
    _check_step_against_reference(sae, o, seed=6, dead=_dead_mask(DEAD_CASES["many"]))


@pytest.mark.parametrize("dead_case", ["none", "many"])
@pytest.mark.parametrize("rescale", [True, False])
def test_dense_fallback_step_matches_reference(dead_case: str, rescale: bool) -> None:
    """A hook on the activations forces the generic dense path, which must agree too."""
    o = RefOptions(k=K, rescale=rescale, aux_coefficient=1.5)
    sae = training_sae(ref.random_params(D_IN, D_SAE, seed=4), o)
    seen: list[torch.Tensor] = []
    sae.hook_sae_acts_post.add_hook(lambda t, hook: seen.append(t.detach()))
    _check_step_against_reference(sae, o, seed=4, dead=_dead_mask(DEAD_CASES[dead_case]))
    assert len(seen) == 1 and seen[0].shape == (BATCH, D_SAE)


@pytest.mark.parametrize("path", ["sparse", "generic"])
def test_sparse_activations_option(path: str) -> None:
    o = RefOptions(k=K, rescale=True)
    sae = training_sae(ref.random_params(D_IN, D_SAE, seed=5), o, use_sparse_activations=True)
    x = _batch(6)
    if path == "generic":
        x.requires_grad_(True)  # an input needing a gradient takes the generic autograd path
    _check_step_against_reference(sae, o, seed=5, dead=_dead_mask(30), x=x)
    out = _step(sae, x, None)
    assert out.feature_acts.is_sparse
    with torch.no_grad():
        torch.testing.assert_close(sae.decode(out.feature_acts), out.sae_out, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("is_logging_step", "use_sparse_activations"), [(False, False), (True, False), (True, True)])
def test_feature_acts_are_dense_only_on_logging_steps(is_logging_step: bool, use_sparse_activations: bool) -> None:
    """The trainer reads feature_acts only on logging steps; other steps skip the dense [N, d_sae] tensor.

    Whichever form they take, they hold the reference activations, and firing_counts
    (what the trainer's dead-latent tracking reads every step) is always filled.
    """
    o = RefOptions(k=K, rescale=True)
    p = ref.random_params(D_IN, D_SAE, seed=19)
    sae = training_sae(p, o, use_sparse_activations=use_sparse_activations)
    x = _batch(20)
    out = _step(sae, x, _dead_mask(30), is_logging_step=is_logging_step)
    expected = ref.losses(x, p, o, _dead_mask(30))["f"]
    wants_dense = is_logging_step and not use_sparse_activations
    assert out.feature_acts.is_sparse is not wants_dense
    assert out.feature_acts.shape == (BATCH, D_SAE) and not out.feature_acts.requires_grad
    if out.feature_acts.is_sparse:
        assert out.feature_acts.is_coalesced()
        assert out.feature_acts._nnz() == BATCH * K
        feature_acts = out.feature_acts.to_dense()
    else:
        feature_acts = out.feature_acts
    torch.testing.assert_close(feature_acts, expected, rtol=1e-10, atol=1e-12)
    assert out.firing_counts is not None
    torch.testing.assert_close(out.firing_counts, (expected > 0).sum(0))


def test_step_metrics_agree_on_logging_and_other_steps() -> None:
    """The trainer's metrics densify sparse feature_acts: both forms give the same log."""
    from saecore.training.step_metrics import train_step_log

    o = RefOptions(k=K, rescale=True)
    sae = training_sae(ref.random_params(D_IN, D_SAE, seed=21), o)
    x = _batch(22)
    logs = []
    for is_logging_step in (False, True):
        out = _step(sae, x, None, is_logging_step=is_logging_step)
        logs.append(train_step_log(
            out,
            passes_since_fired=torch.zeros(D_SAE),
            dead_mask=torch.zeros(D_SAE, dtype=torch.bool),
            learning_rate=1e-3,
            n_training_tokens=BATCH,
            coefficients={},
        ))
    assert logs[0] == logs[1]
    assert logs[1]["metrics/l0"] == pytest.approx(K, abs=1)  # ReLU may zero a kept latent


@pytest.mark.parametrize("normalize", ["constant_norm_rescale", "layer_norm"])
def test_normalisation_is_undone_on_the_output(normalize: str) -> None:
    o = RefOptions(k=K, rescale=True, normalize=normalize)
    sae = training_sae(ref.random_params(D_IN, D_SAE, seed=7), o)
    _check_step_against_reference(sae, o, seed=7, dead=_dead_mask(0))


@pytest.mark.parametrize("normalize", ["constant_norm_rescale", "layer_norm"])
def test_auxk_refuses_per_token_normalisation(normalize: str) -> None:
    sae = training_sae(ref.random_params(D_IN, D_SAE, seed=8), RefOptions(k=K, normalize=normalize))
    with pytest.raises(ConfigError, match=f"normalize_activations='{normalize}'"):
        _step(sae, _batch(), _dead_mask(3))


def test_training_encode_and_forward_match_reference() -> None:
    p = ref.random_params(D_IN, D_SAE, seed=9)
    o = RefOptions(k=K, rescale=True)
    sae = training_sae(p, o)
    x = _batch(10)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), ref.encode(x, p, o), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(sae(x), ref.forward(x, p, o), rtol=1e-10, atol=1e-10)


def test_adam_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    sae = TopKTrainingSAE(training_sae(ref.random_params(D_IN, D_SAE, 11), RefOptions(k=K)).cfg)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-2)
    x = _batch(12)
    dead = _dead_mask(10)
    losses = []
    for _ in range(30):
        out = _step(sae, x, dead)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("rescale", [True, False])
def test_save_inference_model_gives_identical_outputs(tmp_path, rescale: bool) -> None:
    p = ref.random_params(D_IN, D_SAE, seed=13)
    o = RefOptions(k=K, rescale=rescale, apply_b_dec_to_input=False, aux_coefficient=0.25)
    sae = training_sae(p, o)
    _, cfg_path = sae.save_inference_model(tmp_path)
    cfg = json.loads(cfg_path.read_text())
    assert cfg["architecture"] == "topk"
    assert cfg["rescale_acts_by_decoder_norm"] is False
    assert cfg["k"] == K
    assert cfg["metadata"]["training_architecture"] == "topk"
    assert cfg["metadata"]["training_architecture_details"]["aux_loss_coefficient"] == 0.25
    assert "aux_loss_coefficient" not in cfg and "use_sparse_activations" not in cfg
    loaded = SAE.load_from_disk(tmp_path)
    assert isinstance(loaded, TopKSAE)
    assert set(loaded.state_dict()) == set(PARAM_NAMES)
    x = _batch(14)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), sae.encode(x), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(loaded(x), sae(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sae.W_dec, p.W_dec)  # saving left the training SAE alone


def test_save_model_and_load_training_sae(tmp_path) -> None:
    p = ref.random_params(D_IN, D_SAE, seed=15)
    sae = training_sae(p, RefOptions(k=K, rescale=True), use_sparse_activations=True)
    sae.save_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["aux_loss_coefficient"] == 1.0 and cfg["use_sparse_activations"] is True
    restored = TopKTrainingSAE.from_dict(cfg)
    restored.load_state_dict(SAE.load_from_disk(tmp_path).state_dict())
    assert isinstance(restored, TopKTrainingSAE)
    assert restored.cfg.use_sparse_activations
    x = _batch(16)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), sae(x), rtol=0, atol=0)


@pytest.mark.parametrize("rescale", [True, False])
def test_step_under_bf16_autocast(rescale: bool) -> None:
    """Mixed precision (the trainer's autocast option) runs and stays close to float32."""
    p = ref.random_params(D_IN, D_SAE, seed=17)
    sae = training_sae(p, RefOptions(k=K, rescale=rescale)).to(torch.float32)
    x = _batch(18).float()
    dead = _dead_mask(30)
    full = _step(sae, x, dead).loss.item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _step(sae, x, dead)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(full, rel=0.05)
    for name in PARAM_NAMES:
        grad = getattr(sae, name).grad
        assert grad is not None and grad.dtype == torch.float32 and torch.isfinite(grad).all()


def test_a_step_on_3d_input_gives_the_losses_of_its_rows() -> None:
    o = RefOptions(k=K, rescale=True, aux_coefficient=1.5)
    sae = training_sae(ref.random_params(D_IN, D_SAE, seed=6), o)
    x, dead = _batch(7), _dead_mask(30)
    rows = _step(sae, x, dead, is_logging_step=True)
    positions = _step(sae, x.reshape(4, BATCH // 4, D_IN), dead, is_logging_step=True)
    assert positions.sae_out.shape == (4, BATCH // 4, D_IN) and positions.feature_acts.shape == (4, BATCH // 4, D_SAE)
    torch.testing.assert_close(positions.sae_out.reshape(BATCH, D_IN), rows.sae_out)
    torch.testing.assert_close(positions.feature_acts.reshape(BATCH, D_SAE), rows.feature_acts.to_dense())
    for name, loss in rows.losses.items():
        torch.testing.assert_close(positions.losses[name], loss, msg=name)
