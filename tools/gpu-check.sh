#!/usr/bin/env bash
# Runs every GPU test and the kernel benchmarks on a machine with an NVIDIA GPU
# (the device machine, or a Jetson). Exit status: that of the GPU tests.
#   tools/gpu-check.sh            # logs to $OUT (device tool) or ./out
# cuda-python and pytest wheels carried in .gpu-carry/kwhl are installed to a
# temporary directory when the machine has none (the device machine has no network).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
LOG=${OUT:-out}
mkdir -p "$LOG"
PY=${PYTHON:-python3}
SITE=/tmp/tegra-ai-site

carry() {  # carry <import name> <wheel dir>
    if ! "$PY" -c "import $1" 2>/dev/null && ls "$2"/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "$2"/*.whl || echo "warning: installing $2 failed"
    fi
}
carry cuda.bindings .gpu-carry/kwhl
export PYTHONPATH="$SITE:${PYTHONPATH:-}"
carry pytest .gpu-carry/kwhl/pytest
carry modelopt.torch.quantization .gpu-carry/qat-whl  # nvidia-modelopt + deps for the QAT test (optional)
export PYTHONPATH="$SITE:$PWD/scripts:${PYTHONPATH:-}"
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/tegra-ai-cache}

{
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
    "$PY" - <<'PY'
import importlib
for m in ("numpy", "torch", "torchvision", "cv2", "cupy", "cuda.bindings", "pytest"):
    try:
        mod = importlib.import_module(m)
        print(f"{m}: {getattr(mod, '__version__', 'present')}")
    except Exception as e:
        print(f"{m}: missing ({e.__class__.__name__})")
from tegra_ai.kernels import loader
print("nvrtc", loader.nvrtc_version())
PY
} 2>&1 | tee "$LOG/env.txt"

"$PY" -m pytest tests/gpu tests/kernels -q -rs -p no:cacheprovider 2>&1 | tee "$LOG/gpu-tests.txt"
status=${PIPESTATUS[0]}

"$PY" benchmarks/bench_preprocess.py 2>&1 | tee "$LOG/bench-preprocess.txt"
"$PY" benchmarks/bench_nms.py 2>&1 | tee "$LOG/bench-nms.txt"
"$PY" benchmarks/bench_harness.py 2>&1 | tee "$LOG/bench-harness.txt"
"$PY" benchmarks/bench_detect.py ${NMS_BASELINE:+--baseline-nms "$NMS_BASELINE"} 2>&1 | tee "$LOG/bench-detect.txt"
"$PY" benchmarks/bench_runtime.py 2>&1 | tee "$LOG/bench-runtime.txt"
echo "gpu tests exit status: $status"
exit "$status"
