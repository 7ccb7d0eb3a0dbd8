# Two commands on a fresh machine: `make run` and `make test`. Both create .venv and install first.
# The distribution's CPython 3.11 first: Debian's is an optimised build, statically linked, that runs this server
# ~10% cheaper per request than a plain source build such as pyenv's default, and pure Python ~20% faster
# (bench/README.md, issue 13 fifth sitting). Any python3.11 (or python3) on PATH otherwise. Only one that can make
# a venv (Debian splits ensurepip into python3.11-venv, which .ci/run installs).
PYTHON ?= $(shell for p in /usr/bin/python3.11 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import ensurepip' 2>/dev/null && command -v $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
# .venv belongs to one interpreter: naming another one (PYTHON=...) makes it again
STAMP := $(BIN)/.installed-$(shell $(PYTHON) -c 'import sys, zlib; print(zlib.crc32(sys.executable.encode()))')

.PHONY: run test install migrate seed lint format schema check-schema clean bench

$(STAMP): pyproject.toml
	@if [ -x $(BIN)/python ] && [ "$$($(BIN)/python -c 'import sys; print(sys._base_executable)')" != \
		"$$($(PYTHON) -c 'import sys; print(sys.executable)')" ]; then echo "$(VENV) was made by another Python: making it again"; rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(STAMP)

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
