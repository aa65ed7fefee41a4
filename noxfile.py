"""Test sessions that mirror how people install saecore.

``one_plugin_at_a_time`` installs the core, then each plugin beside it alone, proving the
plugins independent; ``everything`` installs all of them and runs the whole suite and the
CLI end to end; ``saelens_compat`` installs SAELens beside saecore to prove files move
both ways. torch is pinned to the CPU wheel here (test path only): package metadata
keeps a loose ``torch>=2.1`` so GPU users bring their own build.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "no"
nox.options.error_on_missing_interpreters = True

TORCH = "torch==2.13.0"
ARCHITECTURE_PLUGINS = [
    "sae_standard", "sae_gated", "sae_jumprelu", "sae_topk", "sae_abstopk", "sae_matching_pursuit", "sae_temporal",
]
TEST_ENV = {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}


# They need sae_jumprelu (the format they save as) and sae_topk (the row top-k their sparse step selects with).
EXTRA_ARCHITECTURE_PLUGINS = ["sae_batchtopk", "sae_matryoshka_batchtopk"]
TRANSCODER_PLUGINS = ["sae_topk", "sae_jumprelu", "transcoders"]  # the transcoders reuse TopK's and JumpReLU's kernels


def install_core(session: nox.Session, *plugins: str, extra: str = "test") -> None:
    session.install(TORCH)
    session.install(f".[{extra}]", *[f"./plugins/{name}" for name in plugins])


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff, the import-linter layer contracts, and the module-level import-cycle check.

    import-linter reads the source without importing it, so the package is found through
    ``PYTHONPATH`` and its dependencies (torch, ...) are not installed here.
    """
    session.install("ruff", "import-linter", "pytest")
    session.run("ruff", "check", ".")
    source = {"PYTHONPATH": "src"}
    session.run("lint-imports", "--no-cache", env=source)
    session.run("python", "-m", "pytest", "--noconftest", "-q", "tests/lint/test_import_cycles.py", env=source)


def distribution(plugin: str) -> str:
    """The installed distribution name of ``plugins/<plugin>`` (``sae_topk`` -> ``saecore-sae-topk``)."""
    return "saecore-" + plugin.replace("_", "-")


@nox.session(python="3.11")
def one_plugin_at_a_time(session: nox.Session) -> None:
    """The core alone, then each plugin beside it alone: installed, tested and uninstalled in turn.

    One environment serves every step, so torch and the core install once; each step starts
    from the core alone, which is what proves the plugins independent. ``nox -s
    one_plugin_at_a_time -- sae_topk`` runs the named plugins' steps only.
    """
    install_core(session)
    chosen = set(session.posargs)
    if not chosen:
        session.run("pytest", "tests/core_alone", "-q", env=TEST_ENV)
    for plugin in ARCHITECTURE_PLUGINS:
        if chosen and plugin not in chosen:
            continue
        session.install(f"./plugins/{plugin}")
        session.run("pytest", f"plugins/{plugin}/tests", "-q", env=TEST_ENV)
        session.run("pip", "uninstall", "-y", "-q", distribution(plugin))
    if not chosen or "sae_topk" in chosen:
        topk_without_compiler(session)
    if not chosen or chosen & set(EXTRA_ARCHITECTURE_PLUGINS):
        batchtopk_family(session)
    if not chosen or "transcoders" in chosen:
        transcoder_family(session)


def topk_without_compiler(session: nox.Session) -> None:
    """saecore-sae-topk where no C++ compiler works: it installs without its kernels, and its tests pass."""
    # A copy without build/: an in-tree build left by another session would hold compiled objects.
    source = Path(session.create_tmp()) / "sae_topk"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree("plugins/sae_topk", source, ignore=shutil.ignore_patterns("build", "*.so", "*.egg-info"))
    session.install("--no-cache-dir", str(source), env={"CC": "false", "CXX": "false"})
    session.run("python", "-c", "from saecore_sae_topk import native_kernels as k; "
                "assert k.ROW_TOPK is None and k.CODE_DOTS is None, 'the kernels were built'")
    session.run("pytest", "plugins/sae_topk/tests", "-q", env={**TEST_ENV, "SAECORE_ALLOW_NO_TOPK_KERNEL": "1"})
    session.run("pip", "uninstall", "-y", "-q", distribution("sae_topk"))


def batchtopk_family(session: nox.Session) -> None:
    """BatchTopK and Matryoshka BatchTopK beside the core, saecore-sae-jumprelu (the format they save as) and -topk."""
    session.install("./plugins/sae_jumprelu", "./plugins/sae_topk", "./plugins/sae_batchtopk")
    session.run("pytest", "plugins/sae_batchtopk/tests", "-q", env=TEST_ENV)
    session.install("./plugins/sae_matryoshka_batchtopk")
    session.run("pytest", "plugins/sae_matryoshka_batchtopk/tests", "-q", env=TEST_ENV)
    # A trained SAE must load once the recipes' packages are gone: only the core and jumprelu remain.
    output = f"{session.create_tmp()}/batchtopk"
    session.run("saecore", "train", "--arch", "batchtopk", "--training-tokens", "40960", "--output-path", output,
                env=TEST_ENV)
    session.run("pip", "uninstall", "-y", "-q", *map(distribution, EXTRA_ARCHITECTURE_PLUGINS))
    session.run("python", "-c", "import sys; from saecore import SAE, get_registry; "
                "assert 'batchtopk' not in get_registry().training_recipes; "
                "sae = SAE.load_from_disk(sys.argv[1]); assert sae.cfg.architecture() == 'jumprelu'; print(sae.cfg)",
                output, env=TEST_ENV)
    session.run("pip", "uninstall", "-y", "-q", distribution("sae_jumprelu"), distribution("sae_topk"))


def transcoder_family(session: nox.Session) -> None:
    """The transcoder plugin beside the two plugins whose kernels it reuses, then a transcoder trained from the CLI."""
    session.install(*[f"./plugins/{plugin}" for plugin in TRANSCODER_PLUGINS])
    session.run("pytest", "plugins/transcoders/tests", "-q", env=TEST_ENV)
    session.run("saecore", "train", "--arch", "topk_skip_transcoder", "--source", "synthetic_transcoder",
                "--training-tokens", "40960", "--output-path", f"{session.create_tmp()}/transcoder", env=TEST_ENV)
    session.run("pip", "uninstall", "-y", "-q", *map(distribution, TRANSCODER_PLUGINS))


@nox.session(python="3.11")
def everything(session: nox.Session) -> None:
    """All plugins together: the whole suite, the fuzz tests with many examples, the quick start's command."""
    plugins = ARCHITECTURE_PLUGINS + EXTRA_ARCHITECTURE_PLUGINS + ["transcoders"]
    install_core(session, *plugins)
    session.run("pytest", "tests", *[f"plugins/{p}/tests" for p in plugins], "-q",
                "--ignore=tests/core_alone", "--ignore=tests/saelens_compat", "--ignore=tests/sae_bench",
                "--ignore=tests/fuzz", env=TEST_ENV)
    session.run("pytest", "tests/fuzz", "-q", env={**TEST_ENV, "HYPOTHESIS_PROFILE": "long"})
    session.run("saecore", "train", "--arch", "topk", env=TEST_ENV)


@nox.session(python="3.11")
def vision_source_example(session: nox.Session) -> None:
    """The example source plugin installed as a third party's would be: its tests and its README command."""
    install_core(session, "sae_standard", "sae_topk")
    session.install("./examples/vision_source_plugin")
    session.run("pytest", "examples/vision_source_plugin/tests", "-q", env=TEST_ENV)
    session.run("saecore", "train", "--arch", "topk", "--source", "vision_toy", "--k", "8", "--lr", "5e-3",
                "--training-tokens", "40000", "--output-path", f"{session.create_tmp()}/vision", env=TEST_ENV)


@nox.session(python="3.11")
def saelens_compat(session: nox.Session) -> None:
    """SAELens 6 and saecore in one environment: files both ways, and every ported SAELens name (configs,
    runners, evals, loaders, directory, models on TransformerLens 3, transcoders) against SAELens's own."""
    session.install(TORCH)
    session.install("sae-lens>=6.0,<7", ".[test]",
                    *[f"./plugins/{p}" for p in ARCHITECTURE_PLUGINS + EXTRA_ARCHITECTURE_PLUGINS],
                    "./plugins/transcoders", "./plugins/source_llm")
    session.run("pytest", "tests/saelens_compat", "-q", env=TEST_ENV)


@nox.session(python="3.11")
def sae_bench(session: nox.Session) -> None:
    """sae_bench 0.6's custom-SAE path (load_and_format_sae, the core eval's weight metrics) on a saecore SAE.

    sae-bench's own dependency pins (sae-lens, torch, ...) conflict with this stack, so it is installed
    without them; its imported modules need sae-lens (with TransformerLens 3), pandas and tabulate.
    """
    session.install(TORCH)
    session.install("sae-lens>=6.0,<7", "pandas", "tabulate", ".[test]", "./plugins/sae_standard")
    session.install("--no-deps", "sae-bench==0.6.0")
    session.run("pytest", "tests/sae_bench", "-q", env=TEST_ENV)


@nox.session(python="3.11")
def ecosystem(session: nox.Session) -> None:
    """Converters against files written by the formats' own libraries (eai-sparsify, dictionary-learning,
    circuit-tracer)."""
    session.install(TORCH)
    session.install(TORCH, "eai-sparsify", "dictionary-learning", ".[test]",
                    *[f"./plugins/{p}" for p in ARCHITECTURE_PLUGINS], "./plugins/transcoders")
    # nnsight (a dictionary-learning dependency) pulls PyPI's CUDA torchvision, which breaks
    # `import transformers` next to CPU torch; neither converter test needs it.
    session.run("pip", "uninstall", "-y", "torchvision")
    # circuit-tracer's transcoder writer needs only torch and safetensors; its pins on transformers
    # and huggingface-hub are for its model code, which the tests do not use.
    session.install("--no-deps", "circuit-tracer==0.5.0")
    session.run("pytest", "tests/ecosystem", "-q", env={**TEST_ENV, "SPARSIFY_DISABLE_TRITON": "1"})


@nox.session(python="3.11")
@nox.parametrize("transformer_lens", ["3", "4"])
def source_llm(session: nox.Session, transformer_lens: str) -> None:
    """The LLM source with each TransformerLens generation users have (3.x HookedTransformer, 4.x bridge)."""
    install_core(session, "sae_standard", "sae_topk", "sae_jumprelu", "transcoders", "source_llm")
    major = int(transformer_lens)
    session.install(f"transformer-lens>={major},<{major + 1}")
    session.run("pytest", "plugins/source_llm/tests", "-q", env={**TEST_ENV, "TRANSFORMERS_OFFLINE": "1"})


@nox.session(python="3.11", default=False)
def bench(session: nox.Session) -> None:
    """Training-step throughput beside SAELens and sparsify (not a test; run on a quiet machine)."""
    session.install(TORCH)
    session.install(TORCH, "sae-lens>=6.0,<7", "eai-sparsify", ".",
                    *[f"./plugins/{p}" for p in ARCHITECTURE_PLUGINS + EXTRA_ARCHITECTURE_PLUGINS])
    args = session.posargs or ["--dead-fraction", "0.2"]
    session.run("python", "benchmarks/train_step_throughput.py", *args,
                env={**TEST_ENV, "SPARSIFY_DISABLE_TRITON": "1"})


@nox.session(python="3.11", default=False)
def bench_synthetic(session: nox.Session) -> None:
    """Whole training runs on SAELens's synthetic model, beside SAELens 6 (not a test; run on a quiet machine)."""
    session.install(TORCH)
    recipes = ["sae_standard", "sae_gated", "sae_jumprelu", "sae_topk", *EXTRA_ARCHITECTURE_PLUGINS]
    session.install(TORCH, "sae-lens>=6.0,<7", ".", *[f"./plugins/{p}" for p in recipes])
    session.run("python", "benchmarks/saelens_synthetic_runs.py", *session.posargs, env=TEST_ENV)


@nox.session(python="3.11", default=False)
def bench_transcoder(session: nox.Session) -> None:
    """TopK transcoder training step beside sparsify's transcoder (not a test; run on a quiet machine)."""
    session.install(TORCH)
    session.install(TORCH, "eai-sparsify", ".", "./plugins/sae_topk", "./plugins/sae_jumprelu", "./plugins/transcoders")
    session.run("python", "benchmarks/transcoder_step_throughput.py", *session.posargs,
                env={**TEST_ENV, "SPARSIFY_DISABLE_TRITON": "1"})


@nox.session(python="3.11", default=False)
def bench_llm(session: nox.Session) -> None:
    """Training on a language model end to end, beside SAELens 6's runner (not a test; run on a quiet machine)."""
    session.install(TORCH)
    # SAELens 6 requires transformer-lens 3.x, so the benchmark's model is a HookedTransformer, as SAELens runs it.
    session.install(TORCH, "sae-lens>=6,<7", "transformer-lens<4", ".",
                    "./plugins/sae_standard", "./plugins/source_llm")
    session.run("python", "benchmarks/llm_end_to_end.py", *session.posargs, env=TEST_ENV)
