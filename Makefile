# Two commands on a fresh machine: `make run` and `make test`. Both create .venv and install first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install migrate seed lint format schema check-schema clean bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

migrate: install
	$(BIN)/partnerdesk migrate

seed: migrate
	$(BIN)/partnerdesk seed-demo

run: seed
	@echo "GraphiQL: http://127.0.0.1:8000/graphql"
	$(BIN)/partnerdesk serve

test: install
	bash scripts/testenv.sh $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# every benchmark (throwaway PostgreSQL and Redis), then one table of the measures and their targets (~15 min)
bench: install
	$(BIN)/python -m bench.all $(BENCH_ARGS)

schema: install
	$(BIN)/strawberry export-schema schema:schema --output schema.graphql

clean:
	rm -rf $(VENV) data .pytest_cache
