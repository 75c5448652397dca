"""Production settings and pages: `check --deploy` clean with the variables .env.example
documents, the landing page behind the admin's "View site", plain 404s, and /docs that
needs no CDN."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from gateway_project.lib.env import dotenv_read

ROOT = Path(__file__).resolve().parent.parent


def production_env() -> dict[str, str]:
    """.env.example's values, with a real secret where it says to generate one."""
    values = dotenv_read(ROOT / ".env.example")
    assert values["DEBUG"] == "0"
    values["SECRET_KEY"] = secrets.token_urlsafe(50)
    return values


def test_check_deploy_is_clean_with_the_production_variables_of_env_example(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "GATEWAY_ENV_FILE": "",  # only what .env.example says, not a developer's .env
        "GATEWAY_STATE_DIR": str(tmp_path),
        **production_env(),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_env_example_documents_every_https_setting():
    values = dotenv_read(ROOT / ".env.example")
    assert values["SECURE_SSL_REDIRECT"] == "1"
    assert int(values["SECURE_HSTS_SECONDS"]) >= 31536000
    for name in (
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
    ):
        assert values[name] == "1", name
    assert values["SECURE_PROXY_SSL_HEADER"] == "HTTP_X_FORWARDED_PROTO,https"


def test_it_refuses_a_malformed_proxy_ssl_header(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "GATEWAY_ENV_FILE": "",
        "GATEWAY_STATE_DIR": str(tmp_path),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER must be HEADER_NAME,value" in result.stderr


def test_https_settings_are_off_by_default(settings):
    # So `make serve` over plain HTTP (a laptop, the tests, the bench) keeps working.
    assert settings.SECURE_SSL_REDIRECT is False
    assert settings.SECURE_HSTS_SECONDS == 0
    assert settings.SESSION_COOKIE_SECURE is False
    assert settings.SECURE_PROXY_SSL_HEADER is None


@pytest.mark.django_db
def test_the_ssl_redirect_spares_health_probes(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/admin/login/").status_code == 301
    assert client.get("/health").status_code == 200


@pytest.mark.django_db
def test_the_admins_view_site_link_leads_to_a_landing_page_not_a_404(client, settings):
    settings.DEBUG = True  # as under `make run`, where a 404 lists every URL pattern
    staff = get_user_model().objects.create_superuser("ops", password="pw-for-tests-only")
    client.force_login(staff)
    index = client.get("/admin/").content.decode()
    site_url = re.search(r'<a href="([^"]*)">View site</a>', index).group(1)
    page = client.get(site_url)
    assert page.status_code == 200
    body = page.content.decode()
    assert "URLconf" not in body
    assert 'href="/docs"' in body and 'href="/admin/"' in body


@pytest.mark.django_db
def test_a_non_api_404_lists_no_url_patterns_with_debug_off(client, settings):
    settings.DEBUG = False
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "URLconf" not in body and "admin/" not in body


@pytest.mark.django_db
def test_the_docs_page_loads_swagger_ui_from_this_server_not_a_cdn(client):
    body = client.get("/docs").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', body)
    assert "/static/ninja/swagger-ui-bundle.js" in assets
    assert "/static/ninja/swagger-ui.css" in assets
    assert not [url for url in assets if url.startswith(("http:", "https:", "//"))]
