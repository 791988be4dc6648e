# `make run`: the local stack (PostgreSQL, Asterisk sandbox, siaga112) answering 112.
# `make test`: lint, types and every test, against real PostgreSQL and real Asterisk.
# `make check`: lint (with the import rules), types and unit tests, in under a minute.
# `make lock`: recompile the lockfiles after a change of pyproject.toml's dependencies (pins
# already in the lockfiles are kept where they still fit); `make lock-upgrade`: newest allowed.
VENV := .venv
BIN := $(VENV)/bin
# One lock for every platform and every Python the project supports (>= 3.11), with hashes.
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command "make lock"

.PHONY: bootstrap run test check lint typecheck pytest bench-surge docs clean lock lock-upgrade

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

# The dev lock first; the runtime lock is constrained to it, so that the image runs exactly the
# versions the tests ran with.
lock:
	@test -x $(BIN)/uv || { test -x $(BIN)/pip || python3 -m venv $(VENV); $(BIN)/pip install -q uv; }
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) $(UPGRADE) -o requirements-dev.lock
	$(BIN)/uv pip compile pyproject.toml -c requirements-dev.lock $(LOCK_FLAGS) -o requirements.lock

lock-upgrade:
	$(MAKE) --no-print-directory lock UPGRADE=--upgrade

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis
