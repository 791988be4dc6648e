# `make run`: the local stack (PostgreSQL, Asterisk sandbox, siaga112) answering 112.
# `make test`: lint, types and every test, against real PostgreSQL and real Asterisk.
# `make check`: lint (with the import rules), types and unit tests, in under a minute.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap run test check lint typecheck pytest bench-surge docs clean

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	$(BIN)/siaga112 stack

lint:
	$(BIN)/ruff check src tests bench migrations
	$(BIN)/ruff format --check src tests bench migrations
	$(BIN)/lint-imports --no-cache

# Lint, types and the unit tests: under a minute, no root, no Asterisk, no database.
check:
	@WANT_PBX=0 WANT_DEV_DB=0 WANT_PG=0 scripts/bootstrap.sh
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory typecheck
	$(BIN)/pytest -q tests/unit

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

test:
	@WANT_DEV_DB=0 scripts/bootstrap.sh
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory typecheck
	$(MAKE) --no-print-directory pytest

# docs/configuration.md from the settings' descriptions (src/siaga112/config.py); a unit test
# fails while it is stale.
docs:
	$(BIN)/python -m siaga112.configdoc docs/configuration.md

bench-surge: bootstrap
	$(BIN)/python -m bench.surge

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis
