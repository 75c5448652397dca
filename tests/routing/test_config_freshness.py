"""A committed configuration change reaches the snapshot whatever happened to its
announcement: a failed bump is retried, and a snapshot past its maximum age is rebuilt
even when the generation did not move (or cannot be read)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.utils import timezone

from gateway_project.lib import generation
from tenants.models import ApiKey
from tests.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)
USER = [{"role": "user", "content": "Hello there"}]


async def status_for(plaintext: str) -> int:
    response = await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps({"model": "echo", "messages": USER}),
        content_type="application/json",
        headers={"authorization": f"Bearer {plaintext}"},
    )
    return response.status_code


def revoke_behind_the_snapshots_back(persona: Persona) -> None:
    """A committed revocation whose announcement never arrived (an update sends no signal)."""
    ApiKey.objects.filter(pk=persona.key.pk).update(revoked_at=timezone.now())


def test_a_bump_that_fails_is_retried_until_it_lands(settings, tmp_path):
    settings.REDIS_URL = ""
    settings.STATE_DIR = tmp_path / "not-there-yet"  # writing the token fails
    with pytest.raises(FileNotFoundError):
        generation.bump()
    settings.STATE_DIR.mkdir()  # the outage ends; nothing changes the configuration again
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and generation.current() == "0":
        time.sleep(0.05)
    assert len(generation.current()) == 32  # the owed token was written after all


async def test_a_snapshot_past_its_maximum_age_is_rebuilt_though_the_generation_did_not_move(
    personas, settings
):
    settings.GATEWAY_SNAPSHOT_CHECK_SECONDS = 0
    settings.GATEWAY_SNAPSHOT_MAX_AGE_SECONDS = 0.5
    assert await status_for(personas.acme.plaintext_key) == 200
    await sync_to_async(revoke_behind_the_snapshots_back)(personas.acme)
    await asyncio.sleep(0.6)
    assert await status_for(personas.acme.plaintext_key) == 401


async def test_a_process_that_cannot_read_the_generation_rebuilds_after_the_maximum_age(
    personas, settings, monkeypatch
):
    settings.GATEWAY_SNAPSHOT_CHECK_SECONDS = 0
    settings.GATEWAY_SNAPSHOT_MAX_AGE_SECONDS = 0.5
    assert await status_for(personas.acme.plaintext_key) == 200

    def unreadable() -> str:
        raise ConnectionError("Redis is away")

    async def aunreadable() -> str:
        return unreadable()

    monkeypatch.setattr(generation, "current", unreadable)
    monkeypatch.setattr(generation, "acurrent", aunreadable)
    await sync_to_async(revoke_behind_the_snapshots_back)(personas.acme)
    assert await status_for(personas.acme.plaintext_key) == 200  # the snapshot is young: kept
    await asyncio.sleep(0.6)
    assert await status_for(personas.acme.plaintext_key) == 401
