"""The persona tenants the proxy tests call the gateway as, typed.

`acme` owns things: its key and a private route only it may use. `globex` is a second tenant
with a key and a private route of its own, and must never see acme's. Both may call the
global route `echo`, whose one target is the in-process stub upstream (`local`).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from providers.models import Provider, ProviderModel
from routing.models import Route
from tenants.models import ApiKey, Tenant
from tenants.services import IssuedKey
from tests import factories


@dataclass(frozen=True)
class Persona:
    """A tenant calling the gateway: its first API key and its private route."""

    tenant: Tenant
    key: ApiKey
    plaintext_key: str  # what the client sends as `Authorization: Bearer ...`
    route: Route  # `<slug>-private`: only this tenant's keys may call it

    def issue_key(self, *, name: str = "another key", **policy: object) -> IssuedKey:
        """Another key of the same tenant (an allow-list, an expiry, a tighter policy...)."""
        return factories.make_key(self.tenant, name=name, **policy)


@dataclass(frozen=True)
class Personas:
    """Both personas and what they share: the stub upstream and its global route."""

    provider: Provider  # `local`: the stub upstream, in-process, no network
    model: ProviderModel  # `echo` on the stub: $1.50 in, $6 out per million tokens unless told
    route: Route  # `echo`: the global route every tenant may call
    acme: Persona  # owns things
    globex: Persona  # must never see acme's things


def make_persona(slug: str, model: ProviderModel) -> Persona:
    tenant = factories.make_tenant(slug)
    issued = factories.make_key(tenant)
    route = factories.make_route(f"{slug}-private", model, tenant=tenant)
    return Persona(tenant=tenant, key=issued.api_key, plaintext_key=issued.plaintext, route=route)


def make_personas(*, input_per_million: str = "1.50", output_per_million: str = "6") -> Personas:
    # One transaction, as an import or an admin save would be: one configuration version
    # for the lot rather than one per row (each is an export of the whole configuration).
    with transaction.atomic():
        return _make_personas(input_per_million, output_per_million)


def _make_personas(input_per_million: str, output_per_million: str) -> Personas:
    provider = factories.make_provider("local", kind="stub")
    model = factories.make_model(
        provider,
        "echo",
        input_per_million=input_per_million,
        output_per_million=output_per_million,
    )
    return Personas(
        provider=provider,
        model=model,
        route=factories.make_route("echo", model),
        acme=make_persona("acme", model),
        globex=make_persona("globex", model),
    )


def make_fake_openai_route(owner: Persona, base_url: str) -> Route:
    """`gpt`: a route of `owner`'s to the model `ok` of a fake OpenAI server at `base_url`."""
    provider = factories.make_provider(
        "fake-openai", kind="openai", base_url=base_url, timeout_s=5, connect_timeout_s=1
    )
    return factories.make_route("gpt", factories.make_model(provider, "ok"), tenant=owner.tenant)
