# Cerdas — developer entry points. `make run` and `make test` are all a new user needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000

.PHONY: venv run test lint typecheck migrate bench bench-scale deploy-check clean

# The venv is rebuilt only when pyproject.toml changes, so later targets work offline.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The test OpenID Provider (tests/oidc: oidc-provider on Node). Without npm the OIDC tests fail,
# saying what to install; serving Cerdas needs no Node.
OIDC_PROVIDER := tests/oidc/node_modules/.package-lock.json
$(OIDC_PROVIDER): tests/oidc/package-lock.json
	@if command -v npm >/dev/null; then cd tests/oidc && npm ci --silent --no-audit --no-fund; \
	else echo "make: npm not found: the OIDC tests need Node.js 20+ and npm (tests/oidc)"; fi

# axe-core for the dashboard's accessibility test (tests/dashboard), injected into the pages by
# Playwright. Without npm that test fails, saying what to install.
AXE_CORE := tests/dashboard/node_modules/.package-lock.json
$(AXE_CORE): tests/dashboard/package-lock.json
	@if command -v npm >/dev/null; then cd tests/dashboard && npm ci --silent --no-audit --no-fund; \
	else echo "make: npm not found: the dashboard's accessibility test needs npm (tests/dashboard)"; fi

venv: $(VENV)/.installed $(OIDC_PROVIDER) $(AXE_CORE)

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

# deploy/ checked without a container engine (deploy/README.md, "Checks"): hadolint on the
# Dockerfile; every kustomization built by kubectl's kustomize and validated (strict) against
# the Kubernetes 1.30 and newest schemas; the compose file and the image's commands against the
# `cerdas` command line. About 15 s.
deploy-check: venv
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/pytest -q -p no:cacheprovider tests/deploy

# Everything measured against baselines taken in the same run (docs/benchmarks.md): P1–P5
# (bench-report.json), then the national scale at SCALE (default 0.1: one million metric points,
# 20,000 internal assessments; bench-scale-report.json). Well under 15 minutes on 2 cores.
SCALE ?= 0.1
bench: venv
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.scale --scale $(SCALE) $(BENCH_SCALE_ARGS)

# The national scale alone: a seeded load by COPY, then S1, S4, S5, and S2, S3 under 50 pushers. SCALE=1 is the issue's full
# load (10 million metric points); `make bench-scale SCALE=0.01` is the quick run.
bench-scale: venv
	$(BIN)/python -m bench.scale --scale $(SCALE) $(BENCH_SCALE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
