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

from gateway_project.lib.env import envbool, envfloat, envint, envlist, envsecret, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
# pytest sets PYTEST_VERSION; the gateway processes that tests start do not inherit it.
TESTING = "PYTEST_VERSION" in os.environ
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

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
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

MIDDLEWARE = [
    "gateway_project.lib.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
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
            "NAME": STATE_DIR / "db.sqlite3",
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
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
    }
    CELERY_BROKER_URL = REDIS_URL
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_BEAT_SCHEDULE = {
    "audit-purge-expired": {"task": "audit.tasks.audit_purge_expired", "schedule": 3600.0},
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
STATIC_ROOT = STATE_DIR / "static"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "EXCEPTION_HANDLER": "gateway_project.lib.drf.exception_handler",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        # httpx logs every upstream request at INFO: one line per proxied call.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# --- The gateway itself ------------------------------------------------------------------------
# How long a process trusts its in-memory config snapshot before asking whether the
# admin changed something (one Redis GET or one stat() per interval, never the ORM).
GATEWAY_SNAPSHOT_CHECK_SECONDS = envfloat("GATEWAY_SNAPSHOT_CHECK_SECONDS", 1.0)
# API keys each process keeps in memory after their first use (routing.snapshot.KeyDirectory).
GATEWAY_KEY_CACHE_SIZE = envint("GATEWAY_KEY_CACHE_SIZE", 50_000)
GATEWAY_MAX_BODY_BYTES = envint("GATEWAY_MAX_BODY_BYTES", 4 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = GATEWAY_MAX_BODY_BYTES + 1024
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
# Behind a reverse proxy, name the header carrying the client IP (else all share its IP).
RATELIMIT_IP_META_KEY = envstr("RATELIMIT_IP_META_KEY", "") or None

# --- Circuit breakers ------------------------------------------------------------------------
GATEWAY_CIRCUIT_CACHE_SECONDS = envfloat("GATEWAY_CIRCUIT_CACHE_SECONDS", 0.5)
GATEWAY_CIRCUIT_WINDOW_SECONDS = envfloat("GATEWAY_CIRCUIT_WINDOW_SECONDS", 60.0)
GATEWAY_CIRCUIT_MIN_ATTEMPTS = envint("GATEWAY_CIRCUIT_MIN_ATTEMPTS", 20)
GATEWAY_CIRCUIT_FAILURE_RATE = envfloat("GATEWAY_CIRCUIT_FAILURE_RATE", 0.5)
