# Every target creates the virtualenv first when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
WORKERS ?= 2
STAMP := $(VENV)/.installed
# The test suite also needs the semantic cache's local embedding model (torch, CPU).
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run serve migrate test lint format bench worker beat clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,semantic]'
	touch $(TEST_STAMP)

# Development: embedded SQLite, in-process caches, the stub provider. No services needed.
run: $(STAMP)
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py seed_demo --port $(PORT)
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

# Production: uvicorn with WORKERS processes; set DATABASE_URL, REDIS_URL and SECRET_KEY.
serve: $(STAMP)
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/uvicorn gateway_project.asgi:application --host $${HOST:-0.0.0.0} --port $(PORT) \
		--workers $(WORKERS) --loop uvloop --http httptools --lifespan on \
		--timeout-graceful-shutdown $${GRACEFUL_TIMEOUT:-30} --no-access-log

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

worker: $(STAMP)
	$(BIN)/celery -A gateway_project worker --loglevel INFO

beat: $(STAMP)
	$(BIN)/celery -A gateway_project beat --loglevel INFO

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
