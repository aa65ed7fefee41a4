"""saecore.util, training.optim, the JumpReLU estimators and the Neuronpedia links against SAELens 6.54's."""

from __future__ import annotations

import dataclasses
import random
import webbrowser
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens")

from sae_lens import util as saelens_util  # noqa: E402
from sae_lens.analysis import neuronpedia_integration as saelens_neuronpedia  # noqa: E402
from sae_lens.saes import jumprelu_sae as saelens_jumprelu  # noqa: E402
from sae_lens.training import optim as saelens_optim  # noqa: E402

from saecore import util  # noqa: E402
from saecore.analysis import neuronpedia_integration  # noqa: E402
from saecore.saes import jumprelu_sae  # noqa: E402
from saecore.training import optim  # noqa: E402

HOOK_NAMES = ("blocks.3.hook_resid_pre", "blocks.12.attn.hook_z", "model.layers.30", "hook_embed", "blocks.x.hook")


@dataclasses.dataclass
class Destination:
    a: int
    b: str


@dataclasses.dataclass
class Source:
    a: int
    c: float


@pytest.mark.parametrize("hook_name", HOOK_NAMES)
def test_layer_extraction_matches(hook_name: str) -> None:
    assert util.extract_layer_from_tlens_hook_name(hook_name) == saelens_util.extract_layer_from_tlens_hook_name(
        hook_name
    )
    assert util.extract_stop_at_layer_from_tlens_hook_name(
        hook_name
    ) == saelens_util.extract_stop_at_layer_from_tlens_hook_name(hook_name)


@pytest.mark.parametrize("name", ["float32", "float64", "float16", "bfloat16", "torch.float32", "torch.bfloat16"])
def test_dtype_names_match(name: str) -> None:
    dtype = util.str_to_dtype(name)
    assert dtype == saelens_util.str_to_dtype(name)
    assert util.str_to_dtype(dtype) is dtype
    assert util.dtype_to_str(dtype) == saelens_util.dtype_to_str(dtype)


def test_unknown_dtypes_are_value_errors_naming_them() -> None:
    for function, value in ((util.str_to_dtype, "int8"), (util.dtype_to_str, torch.int8)):
        with pytest.raises(ValueError, match="int8"):
            function(value)
        with pytest.raises(ValueError):
            getattr(saelens_util, function.__name__)(value)


def test_cosine_similarities_match_with_a_zero_row() -> None:
    generator = torch.Generator().manual_seed(0)
    mat1 = torch.randn(4, 6, generator=generator)
    mat1[2] = 0
    mat2 = torch.randn(3, 6, generator=generator)
    torch.testing.assert_close(util.cosine_similarities(mat1, mat2), saelens_util.cosine_similarities(mat1, mat2))
    torch.testing.assert_close(util.cosine_similarities(mat1), saelens_util.cosine_similarities(mat1))


def test_filter_valid_dataclass_fields_matches() -> None:
    for source in ({"a": 1, "b": "x", "z": 2}, Source(a=1, c=0.5)):
        for whitelist in (None, ["c"]):
            assert util.filter_valid_dataclass_fields(
                source, Destination, whitelist
            ) == saelens_util.filter_valid_dataclass_fields(source, Destination, whitelist)
    with pytest.raises(ValueError, match="not a dataclass"):
        util.filter_valid_dataclass_fields({"a": 1}, dict)


def test_special_token_ids_match() -> None:
    tokenizer = SimpleNamespace(bos_token_id=1, eos_token_id=1, pad_token_id=0, sep_token_id=None)
    assert sorted(util.get_special_token_ids(tokenizer)) == sorted(saelens_util.get_special_token_ids(tokenizer))


def test_temporary_seed_seeds_inside_and_restores_outside() -> None:
    torch.manual_seed(5)
    with util.temporary_seed(3):
        inside = torch.rand(3)
    after = torch.rand(3)
    torch.manual_seed(5)
    with saelens_util.temporary_seed(3):
        saelens_inside = torch.rand(3)
    assert torch.equal(inside, saelens_inside)
    assert torch.equal(after, torch.rand(3))
    state = random.getstate()
    with util.temporary_seed(None):
        pass
    assert random.getstate() == state


def test_path_or_tmp_dir(tmp_path: Path) -> None:
    with util.path_or_tmp_dir(str(tmp_path)) as given:
        assert given == tmp_path
    with util.path_or_tmp_dir(None) as temporary:
        assert temporary.is_dir()
    assert not temporary.exists()
    assert tmp_path.exists()


def lr_sequence(
    factory: object, name: str, steps: int, warm_up: int, decay: int, lr_end: float, cycles: int
) -> list[float]:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = factory(name, optimizer, steps, 0.01, warm_up, decay, lr_end, cycles)  # type: ignore[operator]
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(
    ("name", "warm_up", "decay", "lr_end", "cycles"),
    [
        ("constant", 0, 0, 0.0, 1),
        ("constant", 3, 4, 0.0, 1),
        ("CosineAnnealing", 2, 0, 0.001, 1),
        ("cosineannealing", 3, 5, 0.002, 1),
        ("cosineannealingwarmrestarts", 2, 3, 0.001, 3),
    ],
)
def test_lr_scheduler_gives_saelens_rates(name: str, warm_up: int, decay: int, lr_end: float, cycles: int) -> None:
    ours = lr_sequence(optim.get_lr_scheduler, name, 20, warm_up, decay, lr_end, cycles)
    theirs = lr_sequence(saelens_optim.get_lr_scheduler, name, 20, warm_up, decay, lr_end, cycles)
    assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-12)


def test_lr_scheduler_refusals() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    with pytest.raises(ValueError, match="lr_end"):
        optim.get_lr_scheduler("cosineannealing", optimizer, 10, 0.01, 0, 3, 0.0, 1)
    with pytest.raises(ValueError, match="linear"):
        optim.get_lr_scheduler("linear", optimizer, 10, 0.01, 0, 0, 0.0, 1)


@pytest.mark.parametrize("warm_up_steps", [0, 4])
def test_coefficient_scheduler_matches_step_by_step_and_after_a_reload(warm_up_steps: int) -> None:
    ours = optim.CoefficientScheduler(warm_up_steps, 2.0)
    theirs = saelens_optim.CoefficientScheduler(warm_up_steps, 2.0)
    assert ours.value == theirs.value
    for _ in range(6):
        assert ours.step() == pytest.approx(theirs.step())
        assert ours.value == pytest.approx(theirs.value)
    reloaded = optim.CoefficientScheduler(warm_up_steps, 2.0)
    reloaded.load_state_dict({"current_step": 2})
    theirs_reloaded = saelens_optim.CoefficientScheduler(warm_up_steps, 2.0)
    theirs_reloaded.load_state_dict({"current_step": 2})
    assert reloaded.value == pytest.approx(theirs_reloaded.value)
    assert ours.state_dict() == theirs.state_dict()
    assert repr(ours) == repr(theirs)
    with pytest.raises(TypeError, match="final_value"):
        optim.CoefficientScheduler(1, "2")  # type: ignore[arg-type]


@pytest.mark.parametrize("function_name", ["JumpReLU", "Step"])
@pytest.mark.parametrize("ste_to_input", [False, True])
def test_jumprelu_estimators_give_saelens_values_and_gradients(function_name: str, ste_to_input: bool) -> None:
    generator = torch.Generator().manual_seed(1)
    hidden_pre = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    threshold = torch.rand(5, generator=generator, dtype=torch.float64) * 0.5
    grad = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    results = []
    for module in (jumprelu_sae, saelens_jumprelu):
        x = hidden_pre.clone().requires_grad_(True)
        theta = threshold.clone().requires_grad_(True)
        out = getattr(module, function_name).apply(x, theta, 0.5, ste_to_input)
        out.backward(grad)
        results.append((out.detach(), x.grad, theta.grad))
    (out, x_grad, theta_grad), (expected_out, expected_x_grad, expected_theta_grad) = results
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(theta_grad, expected_theta_grad)
    if expected_x_grad is None:
        assert x_grad is None
    else:
        torch.testing.assert_close(x_grad, expected_x_grad)


@pytest.fixture
def opened_urls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs handed to the browser, which is not started."""
    urls: list[str] = []
    monkeypatch.setattr(webbrowser, "open", urls.append)
    return urls


def test_neuronpedia_links_match(opened_urls: list[str]) -> None:
    metadata = SimpleNamespace(neuronpedia_id="gpt2-small/3-res-jb", model_name="gpt2-small")
    sae = SimpleNamespace(cfg=SimpleNamespace(metadata=metadata))
    for function, arguments in (
        ("open_neuronpedia_feature_dashboard", (7,)),
        ("get_neuronpedia_quick_list", ([1, 20], "my list")),
    ):
        getattr(neuronpedia_integration, function)(sae, *arguments)
        getattr(saelens_neuronpedia, function)(sae, *arguments)
        assert opened_urls[-2] == opened_urls[-1]
    assert opened_urls[0] == "https://neuronpedia.org/gpt2-small/3-res-jb/7"
    for constant in ("Infinity", "-Infinity", "NaN", "other"):
        assert neuronpedia_integration.NanAndInfReplacer(constant) == saelens_neuronpedia.NanAndInfReplacer(constant)


def test_neuronpedia_links_need_an_id(opened_urls: list[str]) -> None:
    sae = SimpleNamespace(cfg=SimpleNamespace(metadata=SimpleNamespace(neuronpedia_id=None, model_name="m")))
    with pytest.raises(ValueError, match="neuronpedia_id"):
        neuronpedia_integration.open_neuronpedia_feature_dashboard(sae, 1)
    assert opened_urls == []


def test_pretokenize_runner_is_the_module_and_the_deprecated_function() -> None:
    import saecore.pretokenize_runner
    from saecore import pretokenize_runner
    from saecore.pretokenize_runner import PretokenizeRunner

    assert PretokenizeRunner is saecore.PretokenizeRunner
    with pytest.deprecated_call(match="use PretokenizeRunner"), pytest.raises(AttributeError):
        pretokenize_runner(None)
    with pytest.deprecated_call(match="use PretokenizeRunner"), pytest.raises(AttributeError):
        saecore.pretokenize_runner(None)
