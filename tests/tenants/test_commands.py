"""The management command that issues API keys."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tenants.keys import KEY_MARK, key_prefix, looks_like_key, matches
from tenants.models import ApiKey, Tenant
from tests import factories

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(re.escape(KEY_MARK) + r"[A-Za-z0-9]{48}")


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- issue_api_key ----------------------------------------------------------------------------
def test_issue_api_key_prints_only_a_key_that_matches_its_stored_hash(acme: Tenant) -> None:
    out, err = run("issue_api_key", "--tenant", "acme", "--name", "ci")

    plaintext = out.strip()
    assert out == plaintext + "\n"
    assert looks_like_key(plaintext)
    stored = ApiKey.objects.get(tenant=acme, name="ci")
    assert stored.prefix == key_prefix(plaintext)
    assert matches(plaintext, stored.key_hash)
    assert plaintext not in stored.key_hash
    assert stored.allowed_routes == []
    assert stored.expires_at is None
    assert err == ""


def test_issue_api_key_restricts_routes_and_sets_an_expiry(acme: Tenant) -> None:
    provider = factories.make_provider()
    factories.make_route("support", factories.make_model(provider), tenant=acme)
    factories.make_route("echo", factories.make_model(provider, "echo2"))

    out, _ = run(
        "issue_api_key", "--tenant", "acme", "--name", "ci",
        "--allow-route", "support", "echo", "--allow-route", "support",
        "--expires-days", "30",
    )  # fmt: skip

    stored = ApiKey.objects.get(prefix=key_prefix(out.strip()))
    assert stored.allowed_routes == ["support", "echo"]
    expected = timezone.now() + timedelta(days=30)
    assert abs(stored.expires_at - expected) < timedelta(minutes=1)


def test_issue_api_key_warns_on_stderr_about_an_unknown_route(acme: Tenant) -> None:
    out, err = run("issue_api_key", "--tenant", "acme", "--name", "ci", "--allow-route", "typo")

    assert KEY_RE.fullmatch(out.strip())
    assert "typo" in err


def test_issue_api_key_refuses_an_unknown_tenant(globex: Tenant) -> None:
    with pytest.raises(CommandError, match="No tenant with slug 'nobody'"):
        run("issue_api_key", "--tenant", "nobody", "--name", "ci")
    assert not ApiKey.objects.exists()


def test_issue_api_key_refuses_a_non_positive_expiry(acme: Tenant) -> None:
    with pytest.raises(CommandError, match="positive"):
        run("issue_api_key", "--tenant", "acme", "--name", "ci", "--expires-days", "0")
