# `make run`: the local stack (PostgreSQL, Asterisk sandbox, siaga112) answering 112.
# `make test`: lint, types and every test, against real PostgreSQL and real Asterisk.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap run test lint typecheck pytest bench-surge clean

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	$(BIN)/siaga112 stack

lint:
	$(BIN)/ruff check src tests bench migrations
	$(BIN)/ruff format --check src tests bench migrations

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

test:
	@WANT_DEV_DB=0 scripts/bootstrap.sh
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory typecheck
	$(MAKE) --no-print-directory pytest

bench-surge: bootstrap
	$(BIN)/python -m bench.surge

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis
