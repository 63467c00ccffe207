# Two commands matter on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo demo-cluster test lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The three platforms' simulators in turn (DEMO=cxone-stream|cxone-playback|genesys for one).
DEMO ?= all

demo: install
	$(BIN)/cxstream demo --platform $(DEMO)

# Three nodes on a throwaway PostgreSQL and an S3 server (moto), one killed halfway.
demo-cluster: install
	$(BIN)/cxstream demo --nodes 3

lint: install
	$(BIN)/ruff check daemon tests
	$(BIN)/ruff format --check daemon tests
	$(BIN)/mypy --strict daemon

format: install
	$(BIN)/ruff check --fix daemon tests
	$(BIN)/ruff format daemon tests

test: install lint
	# Three workers on two cores: most tests wait on sockets, not the CPU.
	$(BIN)/pytest -q -n 3

bench: install
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info daemon/*.egg-info .pytest_cache
