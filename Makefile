# Reelflow: `make run` brings the platform up, `make test` runs the suite.
.PHONY: run worker test test-postgres lint install install-dev bench clean-var

PY := .venv/bin/python
# Test processes (pytest-xdist): "auto" is one per CPU; PYTEST_WORKERS=0 runs the suite serially.
PYTEST_WORKERS ?= auto

install:
	@bash scripts/install.sh

install-dev:
	@bash scripts/install.sh --dev

run: install
	@$(PY) -m devservices.stack run

worker: install
	@$(PY) -m devservices.stack worker

test: install-dev
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-postgres: install-dev
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/reelflow} $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: install-dev
	.venv/bin/ruff check .

bench: install-dev
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
