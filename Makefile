# flowmail: `make run` starts the product, `make test` runs every check.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint unit bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/flowmail up

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# unit tests only: no database server needed
unit: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests/unit

test: $(STAMP) lint
	scripts/ensure-postgres.sh
	scripts/ensure-chromium.sh
	$(BIN)/python -m pytest -q -n 2 --durations=10

bench: $(STAMP)
	scripts/ensure-postgres.sh
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
