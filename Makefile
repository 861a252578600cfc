# Every target sets up .venv itself, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU wheel of this pinned torch is what CI and the dev machines install; on a GPU node pip
# resolves the same pin to the CUDA build. Override with `make TORCH_SPEC=... demo`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv browser demo test test-fast lint format bench gpu-check gpu-wheels clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,map,cpu-backends,s3,query]"
	touch $(STAMP)

demo: venv
	$(VENV)/bin/chatspace embed-hf --config configs/demo.toml
	$(VENV)/bin/chatspace reduce-embeddings --embedding-dirs demo-output --method umap --output demo-output/maps/demo-umap.parquet
	$(VENV)/bin/chatspace cluster demo-output --k 8 --output demo-output/maps/demo-clusters.parquet --no-progress
	$(VENV)/bin/chatspace visualize-embeddings --input demo-output/maps/demo-umap.parquet --title "chatspace demo (UMAP)" \
		--clusters demo-output/maps/demo-clusters.parquet --output demo-output/maps/demo-map.html --png demo-output/maps/demo-map.png
	$(VENV)/bin/chatspace search demo-output "how do I read a file line by line" -k 5
	@echo "demo map: $(CURDIR)/demo-output/maps/demo-map.html (open it in a browser; no server needed)"

# The map tests drive headless Chromium (Debian's package); installed here when missing and possible,
# otherwise those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
				|| echo "could not install chromium: the browser tests will be skipped"; \
		else echo "chromium is missing and apt-get needs root: the browser tests will be skipped"; fi; }

# One pytest process by default: the suite is CPU-bound (commands run in-process, their workers forked
# from one preloaded fork server; the rest is model work), so on 2 cores two xdist workers save nothing
# (12:49 against 13:10) and make the signal-timing tests race the other worker. `make test TEST_WORKERS=N` splits whole test modules over N processes (tests/conftest.py
# says how). --durations: every full run ends with its slowest set-ups and tests, so where the time goes
# is in the log.
TEST_WORKERS ?= 0
test: venv browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --durations=25

test-fast: venv browser
	$(PY) -m pytest -q -m "not slow"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: venv
	$(PY) benchmarks/bench.py

# One prepared command for a GPU machine: ends within its budget (480 s, installs included), writes
# RESULTS-gpu.md and gpu-check/ into $$OUT (else benchmarks/gpu-check/). Without CUDA or torch it says so
# in one line and fails at once. On a sealed machine it installs from .gpu-wheels/.
# `make gpu-check GPU_CHECK_ARGS="--rehearse --out /tmp/rehearsal"` rehearses it on the CPU.
GPU_CHECK_ARGS ?=
gpu-check:
	@bash scripts/gpu-check.sh $(GPU_CHECK_ARGS)

# Where pip works: the extra wheels and model files gpu-check needs, into .gpu-wheels/ (about 55 MB).
gpu-wheels: venv
	@bash scripts/gpu-wheels.sh

clean:
	rm -rf demo-output .pytest_cache
