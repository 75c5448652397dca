# Every target creates the virtualenv first when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
WORKERS ?= 2
STAMP := $(VENV)/.installed
# The test suite also needs the semantic cache's local embedding model (torch, CPU).
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run serve migrate test browser lint format bench bench-billing bench-audit worker beat clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,semantic]'
	touch $(TEST_STAMP)

# A local .env with a generated SECRET_KEY, written once (never overwritten) by `make run`.
# Settings read .env, so the README's manage.py commands work in a second terminal as
# written. Only the key: DEBUG stays on the command line, so neither `make serve` nor
# docker compose (which reads .env too) ever runs with DEBUG on because of this file.
.env:
	@umask 077 && printf '%s\n' \
		'# Written once by `make run`; settings read it. Real environment variables win.' \
		"SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" > $@
	@echo "Wrote $@ with a generated SECRET_KEY."

# Development: embedded SQLite, in-process caches, the stub provider. No services needed.
run: $(STAMP) .env
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py seed_demo --port $(PORT)
	exec env DEBUG=$${DEBUG:-1} $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

# Production: uvicorn with WORKERS processes; set DATABASE_URL, REDIS_URL and SECRET_KEY.
# exec: uvicorn replaces the recipe's shell, so the SIGTERM make forwards to its child
# reaches uvicorn itself, which drains requests and the audit queue (a shell would die
# and leave uvicorn orphaned). --log-config: the supervisor process, which never loads
# Django's settings, logs in the workers' format too (GATEWAY_LOG_FORMAT).
serve: $(STAMP)
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	exec $(BIN)/uvicorn gateway_project.asgi:application --host $${HOST:-0.0.0.0} --port $(PORT) \
		--workers $(WORKERS) --loop uvloop --http httptools --lifespan on \
		--timeout-graceful-shutdown $${GRACEFUL_TIMEOUT:-30} --no-access-log \
		--log-config gateway_project/uvicorn_logging.json

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

worker: $(STAMP)
	exec $(BIN)/celery -A gateway_project worker --loglevel INFO

beat: $(STAMP)
	exec $(BIN)/celery -A gateway_project beat --loglevel INFO

test: $(TEST_STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The Finance browser test's headless Chromium, from Debian's packages when missing (as root
# with apt-get only; otherwise that test skips and says why).
browser:
	@bash .ci/install-chromium

# Every check runs even when an earlier one fails, so one run shows everything to fix; the
# target fails when any did. mypy's Django plugin loads the settings, which want a
# SECRET_KEY when DEBUG is off: a placeholder for this one process unless one is set.
lint: $(STAMP)
	@status=0; \
	echo '$$ ruff check .'; $(BIN)/ruff check . || status=1; \
	echo '$$ ruff format --check .'; $(BIN)/ruff format --check . || status=1; \
	echo '$$ lint-imports'; $(BIN)/lint-imports --no-cache --no-logo || status=1; \
	echo '$$ mypy'; SECRET_KEY="$${SECRET_KEY:-type-check-only}" $(BIN)/mypy || status=1; \
	exit $$status

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Billing at scale, on the local Postgres in databases of their own (dropped and rebuilt):
# a month's report and the full CSV export over 1,000,000 ledger lines, then one day's
# roll-up of 1,000,000 lines.
bench-billing: $(STAMP)
	$(BIN)/python bench/billing_report.py
	DATABASE_URL=$${BENCH_ROLLUP_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/gw_bench_rollup} \
		$(BIN)/python bench/billing_rollup.py

# The audit log's admin and the dashboard over 5,000,000 audit rows, on the local Postgres
# (BENCH_AUDIT_DATABASE_URL; a "bench" database is dropped and rebuilt). Under 0.5 s each.
bench-audit: $(STAMP)
	$(BIN)/python bench/audit_admin.py $(BENCH_AUDIT_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
