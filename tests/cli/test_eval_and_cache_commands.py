"""``saecore cache`` and ``saecore eval`` with the core's sources (the llm source has its own tests).

The cache must hold exactly what the source serves, resume to the same contents after an
interruption, never rewrite a finished cache, and feed several SAEs. ``eval`` must report
the reconstruction of a saved SAE as a float64 computation here finds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from saecore import SAE
from saecore.cli import cache_cmd, eval_cmd, train_cmd
from saecore.errors import ConfigError, SAEFileError
from saecore.sources.cached import CachedSource, CachedSourceConfig, read_cache_info
from saecore.sources.synthetic import SyntheticSource, SyntheticSourceConfig

SYNTHETIC = ["--d-in", "8", "--n-features", "16"]
TOKENS, BATCH, SHARD = 1000, 64, 256


def cache_argv(folder: Path, *extra: str) -> list[str]:
    return ["--source", "synthetic", "--output", str(folder), "--training-tokens", str(TOKENS),
            "--batch-size-tokens", str(BATCH), "--shard-size-tokens", str(SHARD), "--seed", "3", *SYNTHETIC, *extra]


def cached_rows(folder: Path) -> torch.Tensor:
    info = read_cache_info(folder)
    return torch.cat([load_file(str(folder / shard.file))["activations"] for shard in info.shards])


def on_the_fly_rows() -> torch.Tensor:
    """The synthetic source's draws in the pieces the cache takes: 64 at a time, cut at shard ends."""
    source = SyntheticSource(SyntheticSourceConfig(d_in=8, n_features=16), seed=3)
    pieces, drawn = [], 0
    while drawn < TOKENS:
        take = min(BATCH, SHARD - drawn % SHARD, TOKENS - drawn)
        pieces.append(source.next_batch(take))
        drawn += take
    return torch.cat(pieces)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cache") / "acts"
    assert cache_cmd.run_from_argv(cache_argv(folder)) == 0
    return folder


def test_the_cache_holds_exactly_what_the_source_serves(cache_dir: Path) -> None:
    info = read_cache_info(cache_dir)
    assert [shard.n_tokens for shard in info.shards] == [256, 256, 256, 232]
    assert info.metadata["model_name"] == "synthetic-superposition"
    expected = on_the_fly_rows()
    assert torch.equal(cached_rows(cache_dir), expected)
    served = CachedSource(CachedSourceConfig(path=cache_dir, shuffle=False), seed=0)
    assert torch.equal(torch.cat([served.next_batch(100) for _ in range(10)]), expected)


def test_an_interrupted_cache_continues_where_it_stopped(cache_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"count": 0}
    original = SyntheticSource.next_batch

    def interrupted(self: SyntheticSource, batch_size: int) -> torch.Tensor:
        calls["count"] += 1
        if calls["count"] == 11:  # two shards (4 draws each) done, the third half written
            raise KeyboardInterrupt
        return original(self, batch_size)

    monkeypatch.setattr(SyntheticSource, "next_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache_cmd.run_from_argv(cache_argv(tmp_path / "acts"))
    calls["count"] = -1000
    assert cache_cmd.run_from_argv(cache_argv(tmp_path / "acts")) == 0
    assert calls["count"] == -1000 + 16 - 8  # 16 draws in all, the first 8 were kept
    assert torch.equal(cached_rows(tmp_path / "acts"), cached_rows(cache_dir))


def test_a_finished_cache_is_not_rewritten(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {path.name: path.stat().st_mtime_ns for path in cache_dir.iterdir()}
    assert cache_cmd.run_from_argv(cache_argv(cache_dir)) == 0
    assert "is complete (1,000 tokens); nothing to do" in capsys.readouterr().err
    assert {path.name: path.stat().st_mtime_ns for path in cache_dir.iterdir()} == before


def test_continuing_with_other_settings_is_refused(cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"other settings \(n_features 16 → 24\)"):
        cache_cmd.run_from_argv(cache_argv(cache_dir, "--n-features", "24"))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "cache_info.json").write_text((cache_dir / "cache_info.json").read_text())
    with pytest.raises(SAEFileError, match="saecore cache did not write"):
        cache_cmd.run_from_argv(cache_argv(foreign))


def test_two_architectures_train_from_one_cache(cache_dir: Path, tmp_path: Path) -> None:
    common = ["--source", "cached", "--path", str(cache_dir), "--training-tokens", "640",
              "--train-batch-size-tokens", "64", "--d-sae", "16", "--n-eval-batches", "1"]
    assert train_cmd.run_from_argv(["--arch", "standard", *common, "--output-path", str(tmp_path / "std")]) == 0
    topk = ["--arch", "topk", "--k", "4", *common, "--output-path", str(tmp_path / "topk")]
    assert train_cmd.run_from_argv(topk) == 0
    for name, architecture in (("std", "standard"), ("topk", "topk")):
        cfg = json.loads((tmp_path / name / "cfg.json").read_text())
        assert cfg["architecture"] == architecture and cfg["d_in"] == 8
        assert cfg["metadata"]["model_name"] == "synthetic-superposition"


def saved_sae(folder: Path, **metadata: Any) -> SAE[Any]:
    torch.manual_seed(0)
    sae = SAE.from_dict({"architecture": "standard", "d_in": 8, "d_sae": 16, "metadata": metadata})
    with torch.no_grad():
        sae.b_enc.normal_()
    sae.save_model(folder)
    return sae


def reference_reconstruction(sae: SAE[Any], rows: torch.Tensor) -> dict[str, float]:
    """Explained variance, MSE and L0 of a standard SAE over ``rows``, in float64."""
    x = rows.double()
    w_enc, b_enc, w_dec, b_dec = (p.detach().double() for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))
    features = torch.relu((x - b_dec) @ w_enc + b_enc)
    residual = x - (features @ w_dec + b_dec)
    mse = float(residual.pow(2).sum(-1).mean())
    variance = float(x.pow(2).sum(-1).mean() - x.mean(0).pow(2).sum())
    return {"mse": mse, "explained_variance": 1 - mse / variance, "l0": float((features != 0).sum(-1).double().mean())}


def test_eval_reports_the_reconstruction_of_a_saved_sae(cache_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    sae = saved_sae(tmp_path / "sae")
    argv = [str(tmp_path / "sae"), "--source", "cached", "--path", str(cache_dir), "--shuffle", "false",
            "--n-eval-batches", "4", "--batch-size-tokens", "250", "--json"]
    assert eval_cmd.run_from_argv(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["architecture"], report["d_in"], report["d_sae"], report["n_tokens"]) == ("standard", 8, 16, 1000)
    assert report["source"] == "cached" and report["source_metrics"] == {}
    expected = reference_reconstruction(sae, cached_rows(cache_dir))
    metrics = report["metrics"]
    assert metrics["reconstruction_quality/mse"] == pytest.approx(expected["mse"], rel=1e-5)
    assert metrics["reconstruction_quality/explained_variance"] == pytest.approx(expected["explained_variance"],
                                                                                 rel=1e-5)
    assert metrics["sparsity/l0"] == pytest.approx(expected["l0"], rel=1e-6)
    assert eval_cmd.run_from_argv(argv[:-1]) == 0
    text = capsys.readouterr().out
    assert "tokens   1,000" in text and "reconstruction_quality/explained_variance" in text


def test_eval_takes_source_settings_from_the_sae_metadata(cache_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    sae = saved_sae(tmp_path / "sae", path=str(cache_dir), shuffle=False, hook_name="synthetic")
    argv = [str(tmp_path / "sae"), "--source", "cached", "--n-eval-batches", "2", "--batch-size-tokens", "500",
            "--json"]
    assert eval_cmd.run_from_argv(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source_config"]["path"] == str(cache_dir) and report["source_config"]["shuffle"] is False
    expected = reference_reconstruction(sae, cached_rows(cache_dir))
    assert report["metrics"]["reconstruction_quality/mse"] == pytest.approx(expected["mse"], rel=1e-5)


def test_eval_errors_name_what_is_missing(cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SAEFileError, match="no such SAE folder"):
        eval_cmd.run_from_argv([str(tmp_path / "missing"), "--source", "cached", "--path", str(cache_dir)])
    SAE.from_dict({"architecture": "standard", "d_in": 4, "d_sae": 8}).save_model(tmp_path / "narrow")
    with pytest.raises(ConfigError, match=r"d_in=4 but the 'cached' source serves activations of width 8"):
        eval_cmd.run_from_argv([str(tmp_path / "narrow"), "--source", "cached", "--path", str(cache_dir)])
    with pytest.raises(ConfigError, match=r"d_in=4 but the 'synthetic' source .* width 64; give the source it was "
                                          r"trained on \(--source, default synthetic\)"):
        eval_cmd.run_from_argv([str(tmp_path / "narrow")])
    with pytest.raises(ConfigError, match=r"--source is required"):
        cache_cmd.run_from_argv(["--output", str(tmp_path / "x"), "--training-tokens", "10"])
    with pytest.raises(ConfigError, match=r"cache options: missing required field 'training_tokens'"):
        cache_cmd.run_from_argv(["--source", "synthetic", "--output", str(tmp_path / "x")])


def test_help_lists_the_source_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert eval_cmd.run_from_argv(["--source", "cached", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--n-eval-batches" in text and "--path" in text and "--buffer-shards" in text
    assert cache_cmd.run_from_argv(["--source", "synthetic", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--training-tokens" in text and "--shard-size-tokens" in text and "--n-features" in text
    assert eval_cmd.run_from_argv(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "installed sources:" in text and "(default: synthetic)" in text and "--n-features" in text
    assert "(default: None)" not in text


def test_eval_without_a_source_uses_the_synthetic_one_the_sae_was_trained_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sae"
    assert train_cmd.run_from_argv(["--arch", "standard", *SYNTHETIC, "--feature-seed", "5", "--training-tokens",
                                    "4096", "--n-eval-batches", "1", "--verbose", "false",
                                    "--output-path", str(out)]) == 0
    capsys.readouterr()
    assert eval_cmd.run_from_argv([str(out), "--n-eval-batches", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == "synthetic"
    assert {key: report["source_config"][key] for key in ("d_in", "n_features", "feature_seed")} == {
        "d_in": 8, "n_features": 16, "feature_seed": 5}


def test_eval_and_cache_are_reachable_from_the_command_line() -> None:
    """The console script forwards these commands to their own parsers (their flags come from config models)."""
    import subprocess
    import sys

    for command in ("eval", "cache"):
        done = subprocess.run([sys.executable, "-m", "saecore", command, "--help"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert f"saecore {command}" in done.stdout
