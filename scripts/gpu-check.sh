#!/usr/bin/env bash
# `make gpu-check`: run benchmarks/gpu_check.py with a Python that has CUDA; its options pass through
# (--budget-s, default 480: the whole check, installs included, ends within it; --out DIR, default $OUT).
#   1. this checkout's .venv, when its torch sees a GPU;
#   2. else the machine's own python3 (sealed GPU images bring torch, transformers and
#      sentence-transformers), with the wheels and model files of `make gpu-wheels` installed from
#      .gpu-wheels/ with --no-index into .gpu-site/ (nothing is fetched, nothing the image has is replaced).
# --rehearse runs every step on the CPU at toy scale with .venv (or python3): no GPU needed.
# Without CUDA, or with a Python without torch: one line, exit 1, at once.
set -uo pipefail
cd "$(dirname "$0")/.."
export CHATSPACE_GPU_CHECK_T0=${CHATSPACE_GPU_CHECK_T0:-$(date +%s.%N)}
WHEELS=${GPU_WHEELS:-.gpu-wheels}
PY=${GPU_PYTHON:-python3}
has_torch() { "$1" -c "import torch" >/dev/null 2>&1; }
# The rehearsal only asks whether torch is installed (finding it costs nothing; importing it, seconds).
finds_torch() { "$1" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)" >/dev/null 2>&1; }
has_cuda() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; }

for arg in "$@"; do
    if [ "$arg" = "--rehearse" ]; then
        [ -x .venv/bin/python ] && PY=.venv/bin/python
        if ! finds_torch "$PY"; then
            echo "gpu-check: $PY has no torch; the rehearsal needs this checkout's .venv (make venv)" >&2
            exit 1
        fi
        exec "$PY" benchmarks/gpu_check.py "$@"
    fi
done

if ! compgen -G "/dev/nvidia*" >/dev/null && ! command -v nvidia-smi >/dev/null; then
    echo "gpu-check: no CUDA device here (no /dev/nvidia*, no nvidia-smi); run it on a GPU machine" >&2
    exit 1
fi
if [ -x .venv/bin/python ] && has_cuda .venv/bin/python; then
    exec .venv/bin/python benchmarks/gpu_check.py "$@"
fi
if ! has_torch "$PY"; then
    echo "gpu-check: $PY has no torch (a GPU image brings its own torch with CUDA; or make venv here)" >&2
    exit 1
fi
if ! has_cuda "$PY"; then
    echo "gpu-check: no CUDA device here ($PY's torch does not see a GPU); run it on a GPU machine" >&2
    exit 1
fi
if [ ! -d "$WHEELS/wheels" ]; then
    echo "gpu-check: $WHEELS/ is missing: run 'make gpu-wheels' where pip works, then bring the folder along" >&2
    exit 1
fi
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .gpu-site \
    "$WHEELS"/wheels/*.whl >/dev/null || { echo "gpu-check: installing $WHEELS/wheels failed" >&2; exit 1; }
export PYTHONPATH="$PWD/.gpu-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py --minilm "$WHEELS/all-MiniLM-L6-v2" "$@"
