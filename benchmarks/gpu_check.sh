#!/usr/bin/env bash
# The checks to run the moment a CUDA GPU is available: tests/gpu, then the realistic-shape
# training-step benchmark (d_in 2304, d_sae 65536, k 64, batch 4096) for topk, batchtopk and
# matryoshka_batchtopk, in fp32 (with a saecore row that takes the support route on the GPU,
# TrainerConfig.accelerator_support_route) and under bf16 autocast. About 5 minutes on an H100.
#
# It installs nothing (a GPU machine may have no network). The Python it runs ($PYTHON, else
# python) needs: torch with CUDA (its wheels bring triton), saecore and every plugin installed
# (pip install -e . ./plugins/*, so their entry points exist), pytest, sae-lens 6.54 and
# eai-sparsify (the benchmark's peers; a missing peer only drops its rows).
#
# Results go to $OUT when it is set, else to a fresh temporary folder (printed): the test
# report (gpu-tests.xml and .log), and one JSON and log per benchmark precision.
# Exit status: 0 when every step passed, else the first failure's.
set -uo pipefail

PYTHON=${PYTHON:-python}
RESULTS=${OUT:-$(mktemp -d)}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$RESULTS"
cd "$ROOT" || exit 1

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: $PYTHON sees no CUDA device (torch.cuda.is_available() is False); nothing to check" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RESULTS/gpu.txt"
"$PYTHON" - <<'PY' | tee -a "$RESULTS/gpu.txt"
import importlib.metadata as metadata
import importlib.util

import torch

print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, triton importable: "
      f"{importlib.util.find_spec('triton') is not None}")
for name in ("saecore", "sae-lens", "eai-sparsify"):
    try:
        print(name, metadata.version(name))
    except metadata.PackageNotFoundError:
        print(name, "not installed")
PY

status=0
record() { [ "$status" -ne 0 ] || status=$1; }

echo "== tests/gpu"
timeout 300 "$PYTHON" -m pytest tests/gpu -q -rs -p no:cacheprovider --junitxml "$RESULTS/gpu-tests.xml" \
    2>&1 | tee "$RESULTS/gpu-tests.log"
record "${PIPESTATUS[0]}"

for precision in fp32 bf16; do
    echo "== realistic training step, $precision"
    flags=(--variant support_route)
    [ "$precision" = bf16 ] && flags=(--autocast)
    timeout 240 "$PYTHON" benchmarks/train_step_throughput.py --realistic --device cuda "${flags[@]}" \
        --arch topk --arch batchtopk --arch matryoshka_batchtopk --json "$RESULTS/realistic-$precision.json" \
        2>&1 | tee "$RESULTS/realistic-$precision.log"
    record "${PIPESTATUS[0]}"
done

echo "gpu_check: results in $RESULTS (exit status $status)"
exit "$status"
