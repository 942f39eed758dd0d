# Cerdas — developer entry points. `make run` and `make test` are all a new user needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000

.PHONY: venv run test lint typecheck migrate bench clean

# The venv is rebuilt only when pyproject.toml changes, so later targets work offline.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

run: venv
	PORT=$(PORT) $(BIN)/cerdas serve

test: venv
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

migrate: venv
	$(BIN)/cerdas migrate

# Ratios against baselines measured in the same run; writes bench-report.json (docs/benchmarks.md).
bench: venv
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
