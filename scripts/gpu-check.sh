#!/usr/bin/env bash
# `make gpu-check`: run benchmarks/gpu_check.py with a Python that has CUDA.
#   1. this checkout's .venv, when its torch sees a GPU;
#   2. else the machine's own python3 (sealed GPU images bring torch, transformers and
#      sentence-transformers), with the wheels and model files of `make gpu-wheels` installed from
#      .gpu-wheels/ with --no-index into .gpu-site/ (nothing is fetched, nothing the image has is replaced).
# Without CUDA: one line, exit 1, at once.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${GPU_WHEELS:-.gpu-wheels}
if ! compgen -G "/dev/nvidia*" >/dev/null && ! command -v nvidia-smi >/dev/null; then
    echo "gpu-check: no CUDA device here (no /dev/nvidia*, no nvidia-smi); run it on a GPU machine" >&2
    exit 1
fi
has_cuda() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }

if [ -x .venv/bin/python ] && has_cuda .venv/bin/python; then
    exec .venv/bin/python benchmarks/gpu_check.py "$@"
fi
PY=${GPU_PYTHON:-python3}
if ! has_cuda "$PY"; then
    echo "gpu-check: no CUDA device here (neither .venv nor $PY has a torch that sees a GPU); run it on a GPU machine" >&2
    exit 1
fi
if [ ! -d "$WHEELS/wheels" ]; then
    echo "gpu-check: $WHEELS/ is missing: run 'make gpu-wheels' where pip works, then bring the folder along" >&2
    exit 1
fi
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .gpu-site "$WHEELS"/wheels/*.whl || exit 1
export PYTHONPATH="$PWD/.gpu-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py --minilm "$WHEELS/all-MiniLM-L6-v2" "$@"
