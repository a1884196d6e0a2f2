# Fleet: `make demo` runs the whole system on embedded defaults; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
# The full suite runs on PostgreSQL; the registry and API suites run again on SQLite (the embedded default).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/fleet
SQLITE_TESTS ?= tests/devices tests/accounts tests/fleet/test_api_errors.py tests/fleet/test_health.py
PYTEST_ARGS ?=

.PHONY: install demo test test-postgres test-sqlite lint format bench-api clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo: install
	$(BIN)/python manage.py demo

test: test-postgres test-sqlite

test-postgres: install
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/pytest $(PYTEST_ARGS)

test-sqlite: install
	DATABASE_URL=sqlite:///$(CURDIR)/var/test.sqlite3 $(BIN)/pytest $(PYTEST_ARGS) $(SQLITE_TESTS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench-api: install
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) var
