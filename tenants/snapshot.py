"""Tenants and API keys as the proxy sees them: plain immutable entries read from the
database, served from memory (no ORM once a key has been seen).

`load_tenant_snapshot()` reads every tenant (a few thousand rows at most) and starts an
empty `KeyDirectory`; the routing snapshot (routing/snapshot.py) holds the result and
replaces it whenever the configuration changes, so revocation, expiry and suspension
reach every process as the rest of the configuration does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from gateway_project.lib.db import off_loop

if TYPE_CHECKING:
    from tenants.models import ApiKey


@dataclass(frozen=True, slots=True)
class Policy:
    """Request limits; None means none at this level."""

    max_prompt_tokens: int | None = None
    max_output_tokens: int | None = None
    max_n: int | None = None
    max_body_bytes: int | None = None
    max_messages: int | None = None
    max_depth: int | None = None

    @classmethod
    def of(cls, row: object) -> Policy:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})

    @classmethod
    def from_values(cls, values: dict) -> Policy:
        return cls(**{name: values[name] for name in cls.__dataclass_fields__})

    def tightened_by(self, other: Policy) -> Policy:
        """The stricter of two policies, field by field."""

        def smaller(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        return Policy(
            **{
                name: smaller(getattr(self, name), getattr(other, name))
                for name in self.__dataclass_fields__
            }
        )


@dataclass(frozen=True, slots=True)
class TenantEntry:
    id: int
    slug: str
    name: str
    active: bool
    allowed_routes: frozenset[str] = frozenset()
    policy: Policy = Policy()


@dataclass(frozen=True, slots=True)
class KeyEntry:
    id: int
    prefix: str
    key_hash: str
    name: str
    tenant_id: int
    allowed_routes: frozenset[str]
    expires_at: datetime | None
    revoked: bool
    policy: Policy = Policy()  # already tightened by the tenant's

    def may_use(self, route_name: str) -> bool:
        return not self.allowed_routes or route_name in self.allowed_routes


def _key_entry(row: ApiKey, tenants: dict[int, TenantEntry]) -> KeyEntry:
    tenant = tenants.get(row.tenant_id)
    own = Policy.of(row)
    return KeyEntry(
        id=row.id,
        prefix=row.prefix,
        key_hash=row.key_hash,
        name=row.name,
        tenant_id=row.tenant_id,
        allowed_routes=frozenset(row.allowed_routes or ()),
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        policy=tenant.policy.tightened_by(own) if tenant is not None else own,
    )


def load_key_entry(prefix: str, tenants: dict[int, TenantEntry]) -> KeyEntry | None:
    from tenants.models import ApiKey

    row = ApiKey.objects.filter(prefix=prefix).first()
    return None if row is None else _key_entry(row, tenants)


class KeyDirectory:
    """The API keys this process has been shown, read from the database one at a time.

    Tenants, routes and limits are few and read whole into the snapshot; keys can number
    in the hundreds of thousands, and reading them all would cost every worker tens of MB
    and every configuration change a full re-read. So a key is read on its first use (one
    indexed query, in a worker thread) and then served from here with no query, like the
    rest of the snapshot. The directory belongs to one snapshot: any change to keys or
    tenants moves the generation, the next snapshot starts empty, and a revoked, expired
    or new key is seen within GATEWAY_SNAPSHOT_CHECK_SECONDS as before. Unknown prefixes
    are remembered too (as None), so a stream of bad keys costs one query per distinct
    prefix; past `capacity` entries the oldest are forgotten.
    """

    def __init__(self, tenants: dict[int, TenantEntry], capacity: int) -> None:
        self._tenants = tenants
        self._capacity = max(1, capacity)
        self._entries: dict[str, KeyEntry | None] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def aget(self, prefix: str) -> KeyEntry | None:
        try:
            return self._entries[prefix]
        except KeyError:
            pass
        entry = await off_loop(functools.partial(load_key_entry, prefix, self._tenants))
        self.remember(prefix, entry)
        return entry

    def remember(self, prefix: str, entry: KeyEntry | None) -> None:
        entries = self._entries
        while len(entries) >= self._capacity:
            del entries[next(iter(entries))]  # the oldest (dicts keep insertion order)
        entries[prefix] = entry


@dataclass(frozen=True)
class TenantSnapshot:
    """Every tenant, and the directory of the keys seen so far: what authentication reads."""

    tenants: dict[int, TenantEntry]
    keys: KeyDirectory


def load_tenants() -> dict[int, TenantEntry]:
    """Every tenant, by id, in one query."""
    from tenants.models import Tenant

    # Rows as dicts, not model instances: with many thousands of tenants, building ORM
    # objects was most of a rebuild's time. Equal policies (nearly all: unset) are shared.
    policies: dict[Policy, Policy] = {}
    tenants = {}
    for t in Tenant.objects.values(
        "id", "slug", "name", "status", "allowed_routes", *Policy.__dataclass_fields__
    ):
        policy = Policy.from_values(t)
        tenants[t["id"]] = TenantEntry(
            id=t["id"],
            slug=t["slug"],
            name=t["name"],
            active=t["status"] == Tenant.Status.ACTIVE,
            allowed_routes=frozenset(t["allowed_routes"] or ()),
            policy=policies.setdefault(policy, policy),
        )
    return tenants


def load_tenant_snapshot(*, key_capacity: int) -> TenantSnapshot:
    tenants = load_tenants()
    return TenantSnapshot(tenants=tenants, keys=KeyDirectory(tenants, key_capacity))
