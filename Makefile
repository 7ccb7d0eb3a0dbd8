# Two commands on a fresh machine: `make run` and `make test`. Both create .venv and install first.
# The distribution's CPython 3.11 first: Debian's is an optimised build, statically linked, that runs this server
# ~10% cheaper per request than a plain source build such as pyenv's default, and pure Python ~20% faster
# (bench/README.md, issue 13 fifth sitting); then any python3.11 or python3 on PATH. Only a Python 3.11 (what
# pyproject.toml requires) that can make a venv: Debian ships ensurepip apart, in python3.11-venv (.ci/run installs
# it). `make PYTHON=/path/to/python3.11 ...` (or PYTHON exported) names another one, for every command.
PYTHON ?= $(shell for p in /usr/bin/python3.11 python3.11 python3; do command -v $$p >/dev/null && \
	$$p -c 'import sys, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null && command -v $$p && break; done)
# the interpreter itself (symlinks and pyenv's shims resolved), found once
PY := $(shell $(PYTHON) -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null)
VENV := .venv
BIN := $(VENV)/bin
# .venv belongs to one interpreter: naming another one makes it again
STAMP := $(BIN)/.installed-$(shell echo '$(PY)' | cksum | cut -d' ' -f1)

.PHONY: run test install migrate seed lint format schema check-schema clean bench

$(STAMP): pyproject.toml
	@if [ -z "$(PY)" ]; then echo "No Python 3.11 that can make a venv (PYTHON='$(PYTHON)'): install python3.11 and" \
		"python3.11-venv, or name one with make PYTHON=/path/to/python3.11" >&2; exit 1; fi
	@if [ -d $(VENV) ] && [ "$$($(BIN)/python -c 'import os, sys; print(os.path.realpath(sys._base_executable))' \
		2>/dev/null)" != "$(PY)" ]; then echo "$(VENV) was made by another Python: making it again with $(PY)"; \
		rm -rf $(VENV); fi
	$(PY) -m venv $(VENV)
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
