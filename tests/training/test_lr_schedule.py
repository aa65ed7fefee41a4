"""The LR schedule against torch's own scheduler chain (the construction SAELens uses)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler

from saecore.training.lr_schedule import LRSchedule


def _optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _torch_chain_lrs(
    name: str, lr: float, total: int, warm_up: int, decay: int, lr_end: float, cycles: int = 1
) -> list[float]:
    """Warm-up LinearLR → LambdaLR(1), CosineAnnealingLR or CosineAnnealingWarmRestarts → LinearLR decay."""
    optimizer = _optimizer(lr)
    main_steps = total - warm_up - decay
    if name == "constant":
        main: lr_scheduler.LRScheduler = lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        decay_start_factor = 1.0
    elif name == "cosineannealingwarmrestarts":
        main = lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=main_steps // cycles, eta_min=lr_end)
        decay_start_factor = lr_end / lr
    else:
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=main_steps, eta_min=lr_end)
        decay_start_factor = lr_end / lr
    schedulers: list[lr_scheduler.LRScheduler] = []
    milestones: list[int] = []
    if warm_up > 0:
        schedulers.append(
            lr_scheduler.LinearLR(optimizer, start_factor=1 / warm_up, end_factor=1.0, total_iters=warm_up - 1)
        )
        milestones.append(warm_up)
    schedulers.append(main)
    if decay > 0:
        schedulers.append(
            lr_scheduler.LinearLR(optimizer, start_factor=decay_start_factor, end_factor=0.0, total_iters=decay)
        )
        milestones.append(total - decay)
    chain = lr_scheduler.SequentialLR(optimizer, schedulers=schedulers, milestones=milestones)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        chain.step()
    return lrs


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("name", "total", "warm_up", "decay"),
    [
        ("constant", 30, 0, 0),
        ("constant", 30, 5, 10),
        ("constant", 12, 1, 1),
        ("cosineannealing", 30, 0, 0),
        ("cosineannealing", 40, 7, 9),
        ("cosineannealing", 20, 3, 0),
    ],
)
def test_matches_torch_sequential_chain(name: str, total: int, warm_up: int, decay: int) -> None:
    lr, lr_end = 2e-3, 2e-4
    schedule = LRSchedule(
        _optimizer(lr), name=name, lr=lr, total_steps=total, warm_up_steps=warm_up, decay_steps=decay, lr_end=lr_end
    )
    expected = _torch_chain_lrs(name, lr, total, warm_up, decay, lr_end)
    assert [schedule.lr_at(t) for t in range(total)] == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("total", "warm_up", "decay", "cycles"), [(30, 0, 0, 3), (41, 5, 6, 4), (20, 2, 3, 1)])
def test_warm_restarts_match_torch(total: int, warm_up: int, decay: int, cycles: int) -> None:
    lr, lr_end = 2e-3, 2e-4
    schedule = LRSchedule(_optimizer(lr), name="cosineannealingwarmrestarts", lr=lr, total_steps=total,
                          warm_up_steps=warm_up, decay_steps=decay, lr_end=lr_end, restart_cycles=cycles)
    expected = _torch_chain_lrs("cosineannealingwarmrestarts", lr, total, warm_up, decay, lr_end, cycles)
    assert [schedule.lr_at(t) for t in range(total)] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    if cycles > 1:
        cycle = (total - warm_up - decay) // cycles
        assert schedule.lr_at(warm_up + cycle) == pytest.approx(lr)  # the restart


def test_more_restart_cycles_than_main_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="n_restart_cycles=11"):
        LRSchedule(_optimizer(1.0), name="cosineannealingwarmrestarts", lr=1.0, total_steps=10, warm_up_steps=0,
                   decay_steps=0, lr_end=0.1, restart_cycles=11)


def test_landmarks_of_warm_up_cosine_and_decay() -> None:
    lr, lr_end, warm_up, decay, total = 1.0, 0.1, 4, 5, 29
    schedule = LRSchedule(
        _optimizer(lr), name="cosineannealing", lr=lr, total_steps=total,
        warm_up_steps=warm_up, decay_steps=decay, lr_end=lr_end,
    )
    assert schedule.lr_at(0) == pytest.approx(lr / warm_up)
    assert schedule.lr_at(warm_up - 1) == pytest.approx(lr)
    assert schedule.lr_at(warm_up) == pytest.approx(lr)
    halfway = warm_up + (total - warm_up - decay) // 2
    assert schedule.lr_at(halfway) == pytest.approx(lr_end + (lr - lr_end) * 0.5)
    first_decay = total - decay
    assert schedule.lr_at(first_decay) == pytest.approx(lr_end)
    assert schedule.lr_at(total - 1) == pytest.approx(lr_end / decay)
    assert math.isclose(schedule.lr_at(total), 0.0, abs_tol=1e-15)


def test_apply_sets_every_param_group_and_round_trips_state() -> None:
    optimizer = torch.optim.Adam(
        [{"params": [torch.nn.Parameter(torch.zeros(1))]}, {"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=1.0
    )
    schedule = LRSchedule(optimizer, name="constant", lr=1.0, total_steps=10, warm_up_steps=4, decay_steps=0,
                          lr_end=0.1)
    assert schedule.apply(1) == pytest.approx(0.5)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.5, 0.5])
    restored = LRSchedule(_optimizer(1.0), name="constant", lr=1.0, total_steps=10, warm_up_steps=4, decay_steps=0,
                          lr_end=0.1)
    restored.load_state_dict(schedule.state_dict())
    assert restored.current_lr == pytest.approx(0.5)


def test_rejects_unknown_name_and_overlong_phases() -> None:
    with pytest.raises(ValueError, match="lr_scheduler_name='linear'"):
        LRSchedule(_optimizer(1.0), name="linear", lr=1.0, total_steps=10, warm_up_steps=0, decay_steps=0, lr_end=0.1)
    with pytest.raises(ValueError, match="lr_warm_up_steps"):
        LRSchedule(_optimizer(1.0), name="constant", lr=1.0, total_steps=10, warm_up_steps=6, decay_steps=5,
                   lr_end=0.1)
