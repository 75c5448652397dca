"""Settings for the gateway.

Everything comes from the environment with an embedded default, so a bare checkout runs
on SQLite and in-process caches; DATABASE_URL and REDIS_URL switch to Postgres and Redis.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from gateway_project.lib import metrics_dir
from gateway_project.lib.env import (
    dotenv_load,
    envbool,
    envfloat,
    envint,
    envlist,
    envnetworks,
    envsecret,
    envstr,
)
from gateway_project.lib.logs import log_settings
from gateway_project.lib.tracing import tracing_settings

BASE_DIR = Path(__file__).resolve().parent.parent
# pytest sets PYTEST_VERSION; the gateway processes that tests start do not inherit it.
TESTING = "PYTEST_VERSION" in os.environ
if TESTING:
    # Tests must not depend on the developer's .env (a REDIS_URL in it would switch the
    # gateway processes they start to Redis): set here, so those processes inherit it.
    os.environ["GATEWAY_ENV_FILE"] = ""
    # Nor on a collector the developer's shell points at: tests turn tracing on themselves.
    for _name in [name for name in os.environ if name.startswith("OTEL_")]:
        del os.environ[_name]
# `make run` writes .env with a generated SECRET_KEY, so manage.py works in any terminal.
# Real environment variables win over the file; GATEWAY_ENV_FILE names another file, or
# none when empty.
GATEWAY_ENV_FILE = os.environ.get("GATEWAY_ENV_FILE", str(BASE_DIR / ".env"))
if GATEWAY_ENV_FILE:
    dotenv_load(GATEWAY_ENV_FILE)
# A test run gets a state directory of its own (its SQLite file, its config generation
# file), so two runs side by side cannot disturb each other.
STATE_DIR = Path(
    envstr(
        "GATEWAY_STATE_DIR",
        str(BASE_DIR / "var" / f"test-{os.getpid()}" if TESTING else BASE_DIR / "var"),
    )
)
STATE_DIR.mkdir(parents=True, exist_ok=True)
DEBUG = envbool("DEBUG", False)
SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG and not TESTING:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off.")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if not DEBUG else "*")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

# --- HTTPS ------------------------------------------------------------------------------------
# All off by default, so `make serve` on plain HTTP (a laptop, the tests, the bench) keeps
# working; .env.example lists the production values, with which `check --deploy` is clean.
# Behind a proxy that terminates TLS, name the header it sets, as "HEADER_NAME,value"
# (Django's META spelling): HTTP_X_FORWARDED_PROTO,https. Only if the proxy always sets
# or strips it, or a client could claim HTTPS.
_proxy_ssl_header = envlist("SECURE_PROXY_SSL_HEADER")
if _proxy_ssl_header and len(_proxy_ssl_header) != 2:
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER must be HEADER_NAME,value, like HTTP_X_FORWARDED_PROTO,https"
    )
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) if _proxy_ssl_header else None
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
# Load balancers probe workers over plain HTTP: a redirect would read as "down".
# (Prometheus scrapes /metrics over plain HTTP too; it is protected by its own settings.)
SECURE_REDIRECT_EXEMPT = envlist("SECURE_REDIRECT_EXEMPT", r"^health$,^ready$,^metrics$")
# Browsers remember HSTS for this many seconds: start small (3600) before a year.
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Listed so /docs renders Swagger UI from its bundled static files, not from a CDN.
    "ninja",
    "rest_framework",
    # The management API's OpenAPI schema (/api/v1/schema/, gateway_project/rest_urls.py).
    "drf_spectacular",
    # Management API tokens, hashed and expiring: knox's machinery, our model
    # (tenants.ManagementToken, KNOX_TOKEN_MODEL below). manage.py management_token_issue.
    "knox",
    "channels",
    "tenants",
    "providers",
    "routing",
    "billing",
    "audit",
]

# daphne turns `manage.py runserver` (make run) into an ASGI development server. Production
# workers are uvicorn (make serve, ARCHITECTURE.md): there daphne would only load Twisted
# and friends, about 20 MB of every worker's memory for nothing.
if sys.argv[1:2] == ["runserver"]:
    INSTALLED_APPS.insert(0, "daphne")

# The proxy API (/v1/) runs only PROXY_MIDDLEWARE (gateway_project/asgi.py); these see it
# only under Django's test client. The two proxy ones touch nothing outside /v1/.
PROXY_MIDDLEWARE = [
    "gateway_project.lib.middleware.RequestIdMiddleware",
    "gateway_project.lib.cors.ProxyCorsMiddleware",
    "gateway_project.lib.middleware.ProxyMethodNotAllowedMiddleware",
]
MIDDLEWARE = [
    *PROXY_MIDDLEWARE,
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's styles, Swagger UI) straight from STATIC_ROOT under uvicorn,
    # before sessions and auth: a stylesheet needs neither.
    "gateway_project.lib.static.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Remembers the request, so a configuration version can name who changed it.
    "gateway_project.lib.actor.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gateway_project.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "gateway_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
DATABASE_URL = envstr("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(STATE_DIR / "db.sqlite3"),
            # WAL lets the audit writer append while the admin reads.
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20},
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tests run a real gateway process beside pytest: it must see the same file.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(STATE_DIR / "test.sqlite3")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, channels, celery --------------------------------------------------------
REDIS_URL = envstr("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
            "KEY_PREFIX": "gw",
        }
    }
    # The live traffic page (routing/live/): every worker and replica publishes to one
    # group, so one watcher sees them all. A member that vanished without leaving (a killed
    # worker) drops out of the group after group_expiry: watchers re-join every few seconds.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "gw:asgi", "group_expiry": 60},
        },
    }
    CELERY_BROKER_URL = REDIS_URL
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
# The live traffic page (/admin/live/, routing/live/). Each process re-reads whether anyone
# watches at most this often (one Redis EXISTS, on a thread of its own, never per request).
LIVE_TRAFFIC_CHECK_SECONDS = envfloat("LIVE_TRAFFIC_CHECK_SECONDS", 1.0)
# Finished requests waiting to be published, per process; past it they are dropped.
LIVE_TRAFFIC_QUEUE_MAX = envint("LIVE_TRAFFIC_QUEUE_MAX", 1000)
# A comment line this often keeps proxies from closing an idle stream.
LIVE_TRAFFIC_HEARTBEAT_SECONDS = envfloat("LIVE_TRAFFIC_HEARTBEAT_SECONDS", 15.0)
CELERY_TASK_ACKS_LATE = True
# Workers log through LOGGING (JSON lines, like the web processes), not Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Billing roll-ups (billing.rollups): how often beat rebuilds the days of new ledger lines,
# and how long a line id must have been seen before the cursor may pass it
# (billing.rollup_cursor). Months close that many minutes after their end (billing.closing).
BILLING_ROLLUP_INTERVAL_SECONDS = envint("BILLING_ROLLUP_INTERVAL_SECONDS", 300)
BILLING_ROLLUP_SETTLE_SECONDS = envint("BILLING_ROLLUP_SETTLE_SECONDS", 60)
BILLING_CLOSE_GRACE_MINUTES = envint("BILLING_CLOSE_GRACE_MINUTES", 60)
CELERY_BEAT_SCHEDULE = {
    "audit-purge-expired": {"task": "audit.tasks.audit_purge_expired", "schedule": 3600.0},
    "billing-rollup-pending": {
        "task": "billing.tasks.billing_rollup_pending",
        "schedule": float(BILLING_ROLLUP_INTERVAL_SECONDS),
    },
}

# --- Auth, i18n, static ----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# `make serve` runs collectstatic into it; WhiteNoise serves what is there at start-up.
STATIC_ROOT = STATE_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)

# The management API (gateway_project/lib/drf.py): a DRF token (`Authorization: Token
# <key>`) for scripts, the admin session (CSRF enforced) for browsers, never HTTP Basic;
# staff with the Django model permission each request needs, reads included.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.rest_auth.ManagementTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["gateway_project.lib.drf_permissions.ModelPermissions"],
    "EXCEPTION_HANDLER": "gateway_project.lib.drf.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LLM Gateway management API",
    "DESCRIPTION": "Tenants, keys, routes, cache statistics and billing. Authenticate with "
    "`Authorization: Token <token>` (manage.py management_token_issue) or the admin session.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# Management API tokens (django-rest-knox): only a SHA-512 digest is stored. The model is
# ours, with a name and a last-use time; knox's own AuthToken is swapped out, and its
# migrations would only create an empty second token table, so they are switched off
# (Django skips a swapped model when it creates tables for an app without migrations).
KNOX_TOKEN_MODEL = "tenants.ManagementToken"
MIGRATION_MODULES = {"knox": None}
REST_KNOX = {
    # Tells a management token from a gateway key (gwk_) at a glance and to secret scanners.
    "TOKEN_PREFIX": "gwm_",
    # Every token is issued with its own expiry (management_token_issue --days), and an
    # expiry is never pushed back by use: a leaked token dies on its date.
    "TOKEN_TTL": None,
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
}

# --- Logs and traces ---------------------------------------------------------------------------
# GATEWAY_LOG_FORMAT (json, or text when DEBUG is on), LOG_LEVEL and LOGGING: lib/logs.py.
GATEWAY_LOG_FORMAT, LOG_LEVEL, LOGGING = log_settings(debug=DEBUG)
# Tracing is on only when an OTLP endpoint is set; prompts on spans only when asked for
# (GATEWAY_TRACE_CONTENT): lib/tracing.py.
GATEWAY_TRACING, GATEWAY_TRACE_CONTENT = tracing_settings()

# --- The gateway itself ------------------------------------------------------------------------
# How long a process trusts its in-memory config snapshot before asking whether the
# admin changed something (one Redis GET or one stat() per interval, never the ORM).
GATEWAY_SNAPSHOT_CHECK_SECONDS = envfloat("GATEWAY_SNAPSHOT_CHECK_SECONDS", 1.0)
# A snapshot older than this is rebuilt from the database even if the generation did not
# move: the bound on how long a committed change (a revoked key) can go unseen whatever
# Redis did when it was announced (a lost bump, a token nobody can read).
GATEWAY_SNAPSHOT_MAX_AGE_SECONDS = envfloat("GATEWAY_SNAPSHOT_MAX_AGE_SECONDS", 30.0)
# API keys each process keeps in memory after their first use (tenants.snapshot.KeyDirectory).
GATEWAY_KEY_CACHE_SIZE = envint("GATEWAY_KEY_CACHE_SIZE", 50_000)
# The largest proxy request body, received only after the key is checked (413 past it;
# a declared Content-Length over it is refused before a byte is read).
GATEWAY_MAX_BODY_BYTES = envint("GATEWAY_MAX_BODY_BYTES", 4 * 1024 * 1024)
# Messages, and content parts (summed over every message), in one chat request: far above
# normal use, low enough that one request cannot hold the event loop for long (400 past it).
GATEWAY_MAX_MESSAGES = envint("GATEWAY_MAX_MESSAGES", 2000)
GATEWAY_MAX_CONTENT_PARTS = envint("GATEWAY_MAX_CONTENT_PARTS", 10_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = GATEWAY_MAX_BODY_BYTES + 1024
# Browser origins that may call the proxy API (/v1/ only): comma-separated
# `https://app.example.com` origins, or `*` (safe: credentials are never allowed, keys
# travel in headers). Empty, the default: no CORS headers, preflights get 405.
GATEWAY_CORS_ALLOWED_ORIGINS = [
    origin.rstrip("/").lower() for origin in envlist("GATEWAY_CORS_ALLOWED_ORIGINS")
]
# How long a browser may cache a preflight's answer.
GATEWAY_CORS_MAX_AGE_SECONDS = envint("GATEWAY_CORS_MAX_AGE_SECONDS", 600)
# The audit writer batches rows off the response path.
AUDIT_FLUSH_INTERVAL_SECONDS = envfloat("AUDIT_FLUSH_INTERVAL_SECONDS", 0.2)
AUDIT_BATCH_SIZE = envint("AUDIT_BATCH_SIZE", 500)
AUDIT_QUEUE_MAX = envint("AUDIT_QUEUE_MAX", 50_000)
# In-process tests write audit rows explicitly (audit_writer.flush) on their own connection.
# Off only for benchmarks that measure what the audit layer costs; never in production.
AUDIT_ENABLED = envbool("AUDIT_ENABLED", True)
# API keys' last_used_at is written at most this often per key and process.
AUDIT_KEY_TOUCH_SECONDS = envfloat("AUDIT_KEY_TOUCH_SECONDS", 60)
AUDIT_BACKGROUND_WRITER = envbool("AUDIT_BACKGROUND_WRITER", not TESTING)
AUDIT_RETENTION_DAYS = envint("AUDIT_RETENTION_DAYS", 0)  # 0 keeps rows forever
AUDIT_MAX_TEXT_CHARS = envint("AUDIT_MAX_TEXT_CHARS", 100_000)
# Default output cap sent to Anthropic, which requires max_tokens.
ANTHROPIC_DEFAULT_MAX_TOKENS = envint("ANTHROPIC_DEFAULT_MAX_TOKENS", 4096)

# --- Governance (rate limits, budgets, policies) ---------------------------------------------
# Calendar boundaries of daily/weekly/monthly budgets.
GATEWAY_BUDGET_TIMEZONE = envstr("GATEWAY_BUDGET_TIMEZONE", "UTC")
# A reservation whose request never settled (a killed process) is released this long after
# the longest the proxy could have waited for that request (its targets' timeouts, retries
# and the client's timeout hint): the margin covers the settlement's own round trip, a
# slow client still reading the answer and clocks that disagree a little between hosts.
GATEWAY_RESERVATION_MARGIN_SECONDS = envfloat("GATEWAY_RESERVATION_MARGIN_SECONDS", 30.0)
# Budget reservations hold the prompt at this multiple of our own token count for a target
# that has not reported its usage to this process yet; after that, at the largest ratio of
# billed to counted prompt tokens it reported lately (never below 1): upstreams whose
# tokenizer is not ours often bill more prompt tokens than we count.
GATEWAY_PROMPT_ESTIMATE_MARGIN = envfloat("GATEWAY_PROMPT_ESTIMATE_MARGIN", 1.25)
# A request without max_tokens that would not fit a hard budget at its worst case is sent
# upstream with the output cap that still fits, when that is at least this many tokens;
# below it the request is refused with the reason.
GATEWAY_BUDGET_MIN_OUTPUT_TOKENS = envint("GATEWAY_BUDGET_MIN_OUTPUT_TOKENS", 64)
GATEWAY_REDIS_TIMEOUT_SECONDS = envfloat("GATEWAY_REDIS_TIMEOUT_SECONDS", 0.5)
# When Redis is unreachable: "open" serves without the check, "closed" answers 503.
GATEWAY_RATE_LIMIT_FAILURE_MODE = envstr("GATEWAY_RATE_LIMIT_FAILURE_MODE", "open")
GATEWAY_BUDGET_FAILURE_MODE = envstr("GATEWAY_BUDGET_FAILURE_MODE", "closed")
# Output cap assumed (and sent upstream) when neither the request nor the route sets one
# and a budget or token limit applies: the worst case must be bounded to be reserved.
GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS = envint("GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS", 4096)
GATEWAY_GOVERNANCE_ENABLED = envbool("GATEWAY_GOVERNANCE_ENABLED", True)
GATEWAY_MAX_JSON_DEPTH = envint("GATEWAY_MAX_JSON_DEPTH", 64)
# Soft-budget alerts go to these addresses when e-mail is configured (EMAIL_HOST).
GATEWAY_ALERT_EMAILS = envlist("GATEWAY_ALERT_EMAILS")
EMAIL_HOST = envstr("EMAIL_HOST", "")
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "gateway@localhost")

# --- Brute-force protection of the admin login and the management API ----------------------
GATEWAY_ADMIN_LOGIN_RATE = envstr("GATEWAY_ADMIN_LOGIN_RATE", "10/m")  # per client IP
GATEWAY_ADMIN_LOGIN_USERNAME_RATE = envstr("GATEWAY_ADMIN_LOGIN_USERNAME_RATE", "20/m")
GATEWAY_API_AUTH_RATE = envstr("GATEWAY_API_AUTH_RATE", "60/m")  # failed API auth per IP
# Monitoring reads /metrics, /ready's checks and /health/providers with `Authorization:
# Bearer <this>` (or, for the last two, a staff session). Also read from ..._FILE.
GATEWAY_METRICS_TOKEN = envsecret("GATEWAY_METRICS_TOKEN")
# Behind a reverse proxy, name the header carrying the client IP (else all share its IP).
RATELIMIT_IP_META_KEY = envstr("RATELIMIT_IP_META_KEY", "") or None


# --- Metrics (GET /metrics, Prometheus: routing/metrics/; off: none recorded, a 404) -----------
GATEWAY_METRICS_ENABLED = envbool("GATEWAY_METRICS_ENABLED", True)
# Who may scrape without the token: client addresses (CIDRs). The default is this machine
# only, so `curl http://127.0.0.1:8000/metrics` works after `make run`; empty: token only.
GATEWAY_METRICS_ALLOWED_IPS = envnetworks("GATEWAY_METRICS_ALLOWED_IPS", "127.0.0.0/8,::1/128")
# Reverse proxies (CIDRs) whose X-Forwarded-For that check believes; none by default: any
# client can send it. (uvicorn's own FORWARDED_ALLOW_IPS, loopback unless set, comes first.)
GATEWAY_METRICS_TRUSTED_PROXIES = envnetworks("GATEWAY_METRICS_TRUSTED_PROXIES")
# A `key` label (its public prefix) on requests, tokens, cost and refusals: a series per key.
GATEWAY_METRICS_KEY_LABEL = envbool("GATEWAY_METRICS_KEY_LABEL", False)
# Remaining budget is read from Redis at each scrape, for at most this many budgets.
GATEWAY_METRICS_MAX_BUDGETS = envint("GATEWAY_METRICS_MAX_BUDGETS", 1000)
# Every worker writes its counters under here, one directory per running server
# (gateway_project/lib/metrics_dir.py). Set before prometheus_client is first imported.
GATEWAY_METRICS_DIR = Path(envstr("GATEWAY_METRICS_DIR", str(STATE_DIR / "metrics")))
PROMETHEUS_MULTIPROC_DIR = metrics_dir.claim(GATEWAY_METRICS_DIR)

# --- Circuit breakers ------------------------------------------------------------------------
GATEWAY_CIRCUIT_CACHE_SECONDS = envfloat("GATEWAY_CIRCUIT_CACHE_SECONDS", 0.5)
GATEWAY_CIRCUIT_WINDOW_SECONDS = envfloat("GATEWAY_CIRCUIT_WINDOW_SECONDS", 60.0)
GATEWAY_CIRCUIT_MIN_ATTEMPTS = envint("GATEWAY_CIRCUIT_MIN_ATTEMPTS", 20)
GATEWAY_CIRCUIT_FAILURE_RATE = envfloat("GATEWAY_CIRCUIT_FAILURE_RATE", 0.5)

# SQLite has no covering indexes: it builds audit_time (audit/models.py) on created_at alone,
# which is all the small embedded setup needs; Django warns about it on every command.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# --- The admin dashboard (gateway_project/dashboard/) ----------------------------------------
# Its figures are kept this long in the cache and shared by every staff member who may see
# them (0: computed on every load; the tests' default, whose figures change test by test).
# Budgets used at least this percentage of their limit are listed.
DASHBOARD_CACHE_SECONDS = envint("DASHBOARD_CACHE_SECONDS", 0 if TESTING else 30)
DASHBOARD_BUDGET_WARN_PERCENT = envint("DASHBOARD_BUDGET_WARN_PERCENT", 80)
