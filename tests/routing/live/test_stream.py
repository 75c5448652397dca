"""The live traffic stream (/admin/live/stream/) in-process, on each channel layer: the
in-memory one and channels-redis on the real Redis. Who may watch, what a watcher is sent
of each proxied request, the filters, and leaving."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model

from routing.live.feed import GROUP, live_feed
from tests.gateway_project.management_api import make_staff
from tests.routing.live.stream import Stream, ask, login_cookie, ops_cookie, staff_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def group_members(layer_name: str) -> set[str]:
    """The channels in the live group, read from the layer's own bookkeeping."""
    layer = get_channel_layer()
    if layer_name == "memory":
        return set(layer.groups.get(GROUP, {}))
    connection = layer.connection(layer.consistent_hash(GROUP))
    return {name.decode() for name in await connection.zrange(layer._group_key(GROUP), 0, -1)}


async def test_staff_with_the_permission_see_each_request_as_it_finishes(personas, channel_layer):
    stream = Stream(await ops_cookie())
    status, headers = await stream.open()
    assert status == 200
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"cache-control"].startswith(b"no-cache")
    assert b": watching" in await stream.chunk()  # the stream is open before any traffic

    first = await ask(personas.acme.plaintext_key, personas.acme.route.name)
    second = await ask(personas.globex.plaintext_key, "echo", stream=True)
    _ = [part async for part in second.streaming_content]
    events = await stream.events(2)

    assert [e["id"] for e in events] == [first["x-request-id"], second["x-request-id"]]
    acme, globex = events
    assert acme["tenant"] == "acme"
    assert acme["route"] == "acme-private"
    assert (acme["provider"], acme["model"]) == ("local", "echo")
    assert (acme["status"], acme["outcome"]) == (200, "success")
    assert acme["stream"] is False and globex["stream"] is True
    assert globex["tenant"] == "globex" and globex["route"] == "echo"
    for event in events:
        assert event["latency_ms"] >= 0
        assert event["prompt_tokens"] > 0 and event["completion_tokens"] > 0
        assert event["total_tokens"] == event["prompt_tokens"] + event["completion_tokens"]
        assert Decimal(event["cost_usd"]) > 0
        assert event["fallback"] is False and event["attempts"] == 1
    assert globex["ttft_ms"] is not None and globex["ttft_ms"] >= 0
    await stream.close()


@pytest.mark.parametrize(
    "who",
    ["anonymous", "staff without the permission", "not staff", "inactive"],
)
async def test_anyone_else_is_refused_with_403(transactional_db, channel_layer, who):
    def cookie() -> str | None:
        if who == "anonymous":
            return None
        if who == "staff without the permission":
            return staff_cookie("sam", "audit.view_auditevent")
        # Logged in with the permission, then no longer staff, or deactivated.
        user = make_staff("nina", "routing.view_live_traffic")
        cookie = login_cookie(user)
        change = {"is_staff": False} if who == "not staff" else {"is_active": False}
        get_user_model().objects.filter(pk=user.pk).update(**change)
        return cookie

    stream = Stream(await sync_to_async(cookie)())
    status, headers = await stream.open()
    assert status == 403
    assert headers[b"content-type"] == b"application/json"
    error = (await stream.answer())["error"]
    assert error["type"] == "permission_error"
    assert await group_members(channel_layer) == set()
    assert live_feed.active is False


async def test_a_tenant_filter_sends_only_that_tenants_requests(personas, channel_layer):
    stream = Stream(await ops_cookie(), "tenant=globex")
    assert (await stream.open())[0] == 200
    await ask(personas.acme.plaintext_key, "echo")
    wanted = await ask(personas.globex.plaintext_key, "echo")
    await ask(personas.acme.plaintext_key, personas.acme.route.name)
    [event] = await stream.events(1)
    assert event["id"] == wanted["x-request-id"]
    await stream.no_more_events()
    await stream.close()


async def test_a_status_filter_sends_only_those_statuses(personas, channel_layer):
    errors = Stream(await ops_cookie(), "status=error")
    acme_refusals = Stream(await ops_cookie("otto"), "tenant=acme&status=4xx")
    assert (await errors.open())[0] == 200
    assert (await acme_refusals.open())[0] == 200

    await ask(personas.acme.plaintext_key, "echo")  # 200: neither
    unknown_key = await ask("gwk_notakey_0000000000000000", "echo")  # 401, no tenant
    no_route = await ask(personas.acme.plaintext_key, "no-such-route")  # 404, acme's
    await ask(personas.globex.plaintext_key, "echo")  # 200: neither

    assert [(e["id"], e["status"]) for e in await errors.events(2)] == [
        (unknown_key["x-request-id"], 401),
        (no_route["x-request-id"], 404),
    ]
    [refusal] = await acme_refusals.events(1)
    assert (refusal["id"], refusal["tenant"]) == (no_route["x-request-id"], "acme")
    await errors.no_more_events()
    await acme_refusals.no_more_events(0.1)
    await errors.close()
    await acme_refusals.close()


@pytest.mark.parametrize("query", ["status=teapot", "status=999", "tenant=no%20spaces"])
async def test_a_bad_filter_is_refused_with_400(transactional_db, channel_layer, query):
    stream = Stream(await ops_cookie(), query)
    assert (await stream.open())[0] == 400
    assert (await stream.answer())["error"]["code"] == "invalid_filter"
    assert await group_members(channel_layer) == set()


async def test_events_carry_no_prompt_response_key_or_client_text(personas, channel_layer):
    stream = Stream(await ops_cookie())
    assert (await stream.open())[0] == 200
    secret = "PURPLE-ELEPHANT-7731 mail carol@example.com"
    answered = await ask(
        personas.acme.plaintext_key,
        "echo",
        content=secret,
        user="USER-FIELD-5512",
        **{"x-gateway": {"metadata": {"project": "TAG-VALUE-9043"}}},
    )
    assert answered.status_code == 200
    assert b"PURPLE-ELEPHANT" in answered.content  # the stub echoes it: it is in the row
    refused = await ask("gwk_LEAKYPREFIX_secretpart123456", "ROUTE-NAME-SECRET-1180")
    unknown_route = await ask(personas.acme.plaintext_key, "ROUTE-NAME-SECRET-2291")
    events = await stream.events(3)

    assert [e["id"] for e in events][1:] == [refused["x-request-id"], unknown_route["x-request-id"]]
    assert [e["status"] for e in events] == [200, refused.status_code, 404]
    assert events[2]["route"] == ""  # an unknown route's name is the client's text
    raw = stream.raw.decode()
    for text in (
        "PURPLE-ELEPHANT",
        "carol@example.com",
        "USER-FIELD-5512",
        "TAG-VALUE-9043",
        "LEAKYPREFIX",
        "ROUTE-NAME-SECRET",
        personas.acme.plaintext_key,
        personas.acme.key.prefix,
        "stub:echo",  # the stub's answer starts with it
    ):
        assert text not in raw
    assert set(events[0]) == {
        "id", "time", "tenant", "route", "endpoint", "provider", "model", "status", "outcome",
        "latency_ms", "ttft_ms", "stream", "prompt_tokens", "completion_tokens",
        "total_tokens", "cost_usd", "fallback", "attempts", "worker",
    }  # fmt: skip
    await stream.close()


async def test_the_watcher_leaves_the_group_when_the_client_goes(personas, channel_layer):
    stream = Stream(await ops_cookie())
    assert (await stream.open())[0] == 200
    assert len(await group_members(channel_layer)) == 1
    assert live_feed.active is True
    await stream.close()
    assert await group_members(channel_layer) == set()
    assert live_feed.active is False  # nobody else watches: back to the flag test
    published = live_feed.published
    await ask(personas.acme.plaintext_key, "echo")
    await asyncio.sleep(0.3)  # past a flush interval
    assert live_feed.published == published  # nothing queued, nothing published


async def test_heartbeats_keep_an_idle_stream_open(transactional_db, channel_layer, settings):
    settings.LIVE_TRAFFIC_HEARTBEAT_SECONDS = 0.05
    stream = Stream(await ops_cookie())
    assert (await stream.open())[0] == 200
    await stream.chunk()  # the opening comment
    assert await stream.chunk(2) == b": keep-alive\n\n"
    assert await stream.chunk(2) == b": keep-alive\n\n"
    await stream.close()


async def test_a_superuser_may_watch(transactional_db, channel_layer):
    @sync_to_async
    def cookie() -> str:
        user = get_user_model().objects.create_superuser("root", password="x")
        return login_cookie(user)

    stream = Stream(await cookie())
    assert (await stream.open())[0] == 200
    await stream.close()
