"""What an SAE spliced into a model costs: a spliced forward against a model forward plus an SAE forward.

For each kind of model installed (TransformerLens 3's ``HookedSAETransformer``, TransformerLens
4's ``SAETransformerBridge``, a Hugging Face GPT-2 with ``splice``) it builds a small random
GPT-2 (2 layers, d_model 64, 4 heads, vocabulary 1000; the Hugging Face and bridge models from
one local folder) and a standard SAE (d_sae 512) at the residual stream after block 0, then times,
in rounds that take turns so background load hits all three alike:

* ``model``: the forward pass without the SAE;
* ``sae``: the SAE's forward on that activation alone;
* ``spliced``: the forward pass with the SAE attached (``add_sae`` / inside ``splice``, set up
  once, outside the timing).

Each time is the mean of ``--inner`` calls under ``torch.no_grad``, in CPU seconds of the
process (one torch thread unless ``--threads`` says more), which background load on a shared
machine disturbs far less than wall time; ``--clock wall`` times wall seconds instead. The ratio is
``spliced / (model + sae)`` per round; the table gives its median over ``--rounds`` rounds, and
``--repeat`` repeats the whole measurement. A ratio at 1.0 means splicing adds nothing to
running the two separately.

::

    python benchmarks/spliced_forward.py [--rounds 15] [--inner 20] [--repeat 3] [--clock cpu|wall] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import torch

D_MODEL, N_HEADS, N_LAYERS, VOCAB, N_CTX = 64, 4, 2, 1000, 64
D_SAE, BATCH = 512, 8
TL_HOOK, HF_MODULE = "blocks.1.hook_resid_pre", "transformer.h.0"


def make_sae(hook_name: str) -> Any:
    from saecore import SAE

    return SAE.from_dict({"architecture": "standard", "d_in": D_MODEL, "d_sae": D_SAE,
                          "metadata": {"hook_name": hook_name}})


def save_gpt2(folder: str) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=N_LAYERS, n_embd=D_MODEL, n_head=N_HEADS, n_positions=N_CTX, vocab_size=VOCAB,
                        bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)


Case = dict[str, Callable[[], Any]]


def transformer_lens_case(model: Any, tokens: torch.Tensor) -> Case:
    sae = make_sae(TL_HOOK)
    _, cache = model.run_with_cache(tokens, names_filter=[TL_HOOK])
    activation = cache[TL_HOOK]
    return {"model": lambda: model(tokens), "sae": lambda: sae(activation), "spliced": lambda: model(tokens),
            "attach": lambda: model.add_sae(sae), "detach": lambda: model.reset_saes()}


def hooked_sae_transformer_case(tokens: torch.Tensor) -> Case:
    from saecore_source_llm.hooked_sae_transformer import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=N_LAYERS, d_model=D_MODEL, n_ctx=N_CTX, d_head=D_MODEL // N_HEADS,
                                  n_heads=N_HEADS, d_vocab=VOCAB, act_fn="gelu", normalization_type="LN", seed=0)
    return transformer_lens_case(HookedSAETransformer(cfg).eval(), tokens)


def bridge_case(folder: str, tokens: torch.Tensor) -> Case:
    from saecore_source_llm.sae_transformer_bridge import SAETransformerBridge

    return transformer_lens_case(SAETransformerBridge.boot_transformers(folder, device="cpu"), tokens)


def splice_case(folder: str, tokens: torch.Tensor) -> Case:
    from saecore_source_llm.hf_splice import splice
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    sae = make_sae(HF_MODULE)
    captured: list[torch.Tensor] = []
    handle = model.get_submodule(HF_MODULE).register_forward_hook(
        lambda module, inputs, output: captured.append(output if isinstance(output, torch.Tensor) else output[0]))
    model(tokens)
    handle.remove()
    blocks: list[Any] = []

    def attach() -> None:
        blocks.append(splice(model, {HF_MODULE: sae}))
        blocks[-1].__enter__()

    return {"model": lambda: model(tokens), "sae": lambda: sae(captured[0]), "spliced": lambda: model(tokens),
            "attach": attach, "detach": lambda: blocks.pop().__exit__(None, None, None)}


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def mean_seconds(run: Callable[[], Any], inner: int, clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(inner):
        run()
    return (clock() - start) / inner


def measure(case: Case, rounds: int, inner: int, clock: Callable[[], float]) -> dict[str, float]:
    """Median model, SAE and spliced times (ms) and the median per-round ratio."""
    times: dict[str, list[float]] = {"model": [], "sae": [], "spliced": []}
    ratios = []
    with torch.no_grad():
        for name in ("model", "sae"):
            mean_seconds(case[name], inner, clock)
        case["attach"]()
        mean_seconds(case["spliced"], inner, clock)
        case["detach"]()
        for _ in range(rounds):
            model_s, sae_s = mean_seconds(case["model"], inner, clock), mean_seconds(case["sae"], inner, clock)
            case["attach"]()
            spliced_s = mean_seconds(case["spliced"], inner, clock)
            case["detach"]()
            for name, seconds in (("model", model_s), ("sae", sae_s), ("spliced", spliced_s)):
                times[name].append(seconds * 1e3)
            ratios.append(spliced_s / (model_s + sae_s))
    return {**{f"{name} ms": statistics.median(values) for name, values in times.items()},
            "ratio": statistics.median(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per measurement")
    parser.add_argument("--inner", type=int, default=20, help="forward passes per timed call")
    parser.add_argument("--repeat", type=int, default=3, help="how many times to repeat the whole measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu", help="CPU time of the process, or wall time")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokens = torch.randint(0, VOCAB, (BATCH, N_CTX), generator=torch.Generator().manual_seed(0))
    tl_major = int(version("transformer-lens").split(".")[0])
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        save_gpt2(folder)
        cases = {"Hugging Face splice": splice_case(folder, tokens)}
        if tl_major >= 4:
            cases["SAETransformerBridge"] = bridge_case(folder, tokens)
        else:
            cases["HookedSAETransformer"] = hooked_sae_transformer_case(tokens)
        for _ in range(args.repeat):
            for name, case in cases.items():
                results.setdefault(name, []).append(measure(case, args.rounds, args.inner, CLOCKS[args.clock]))
    print(f"{'model kind':<22} {'model ms':>9} {'sae ms':>8} {'spliced ms':>11} {'ratio':>7}")
    for name, runs in results.items():
        for run in runs:
            print(f"{name:<22} {run['model ms']:>9.3f} {run['sae ms']:>8.3f} {run['spliced ms']:>11.3f} "
                  f"{run['ratio']:>7.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"transformer_lens": version("transformer-lens"), "clock": args.clock, "results": results}, out,
                      indent=2)


if __name__ == "__main__":
    main()
