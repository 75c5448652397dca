"""manage.py seed_demo [--port N]: what `make run` calls to make a bare checkout usable.

Idempotent for the configuration it needs (a `demo` tenant, an offline stub provider
`local` with a free chat model `echo` and a free embedding model `stub-embed`, global
routes `demo` and `echo` to the first and `demo-embed` to the second, since embeddings go
only to targets that name an embedding model): each is created only when missing, so an
edited setup is never overwritten. A new key is issued
on every run, because an old key's plaintext cannot be recovered.

It lives in routing, the top app, because the seed spans every app below it; every write
goes through that app's services.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.management.base import CommandParser
from django.db import transaction

from gateway_project.lib.actor import ActorCommand
from providers.models import Provider, ProviderModel
from providers.selectors import provider_find, provider_model_find
from providers.services import provider_model_upsert, provider_upsert
from routing.selectors import route_find
from routing.services import TargetSpec, route_upsert
from tenants.models import ApiKey
from tenants.selectors import tenants_by_slug
from tenants.services import IssuedKey, api_key_issue, tenant_create

TENANT_SLUG = "demo"
PROVIDER_NAME = "local"
MODEL_NAME = "echo"
ROUTE_NAMES = ("demo", "echo")
EMBEDDING_MODEL_NAME = "stub-embed"  # `embed` in the name: routing/endpoints.py's rule
EMBEDDING_ROUTE_NAME = "demo-embed"
KEY_NAME = "demo key (make run)"


class Command(ActorCommand):  # its configuration changes are recorded as its own
    help = "Create the demo tenant, stub provider and routes if missing, and issue a demo key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="Port shown in the examples.")

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            tenant = tenants_by_slug(slugs=[TENANT_SLUG]).get(TENANT_SLUG) or tenant_create(
                slug=TENANT_SLUG, name="Demo"
            )
            provider = self._ensure_provider()
            model = self._ensure_model(provider, MODEL_NAME)
            embedder = self._ensure_model(provider, EMBEDDING_MODEL_NAME)
            routes = {name: model for name in ROUTE_NAMES} | {EMBEDDING_ROUTE_NAME: embedder}
            for name, target in routes.items():
                if route_find(name=name) is None:
                    route_upsert(name=name, targets=[TargetSpec(provider_model=target)])
            issued = api_key_issue(tenant=tenant, name=KEY_NAME)
        if not tenant.is_active:
            self.stderr.write(self.style.WARNING(f"Tenant {TENANT_SLUG} is {tenant.status}."))
        self.stdout.write(self._banner(issued, options["port"]))

    def _ensure_provider(self) -> Provider:
        provider = provider_find(name=PROVIDER_NAME)
        if provider is None:
            provider = provider_upsert(name=PROVIDER_NAME, kind=Provider.Kind.STUB).instance
        elif provider.kind != Provider.Kind.STUB or not provider.enabled:
            self.stderr.write(
                self.style.WARNING(
                    f"Provider {PROVIDER_NAME} exists and is not an enabled stub; "
                    "the demo routes use it as it is."
                )
            )
        return provider

    def _ensure_model(self, provider: Provider, name: str) -> ProviderModel:
        model = provider_model_find(provider=provider, name=name)
        if model is None:
            zero = Decimal(0)
            model = provider_model_upsert(
                provider=provider,
                name=name,
                input_per_million=zero,
                output_per_million=zero,
            ).instance
        return model

    def _banner(self, issued: IssuedKey, port: int) -> str:
        key = issued.plaintext
        base = f"http://127.0.0.1:{port}"
        body = '{"model": "demo", "messages": [{"role": "user", "content": "Hello!"}]}'
        older = (
            ApiKey.objects.filter(tenant=issued.api_key.tenant, name=KEY_NAME, revoked_at=None)
            .exclude(pk=issued.api_key.pk)
            .count()
        )
        lines = [
            "",
            "LLM gateway demo",
            "================",
            f"API key for tenant '{TENANT_SLUG}' (shown once, only its hash is stored):",
            "",
            f"    {key}",
            "",
            "Try it with curl:",
            "",
            f"    curl {base}/v1/chat/completions -H 'Authorization: Bearer {key}' "
            f"-H 'Content-Type: application/json' -d '{body}'",
            "",
            "Or with the OpenAI Python SDK:",
            "",
            "    from openai import OpenAI",
            f'    client = OpenAI(base_url="{base}/v1", api_key="{key}")',
            '    messages = [{"role": "user", "content": "Hello!"}]',
            '    reply = client.chat.completions.create(model="demo", messages=messages)',
            "    print(reply.choices[0].message.content)",
            f'    vectors = client.embeddings.create(model="{EMBEDDING_ROUTE_NAME}", input="Hello!")',
            "    print(len(vectors.data[0].embedding))",
            "",
            f"Admin: {base}/admin/",
            "    No login yet? .venv/bin/python manage.py createsuperuser",
        ]
        if older:
            keys = "key still works" if older == 1 else "keys still work"
            lines += ["", f"({older} earlier demo {keys}; revoke them in the admin if you like.)"]
        return "\n".join(lines) + "\n"
