"""Seed the bench database with many tenants and keys (the scale measurement of `make bench`).

Run by bench/run.py with the bench's Django environment, after the main measurements:

    python bench/scale_seed.py --tenants 10000 --keys 100000 --sample 1000 --out keys.txt

Every tenant gets `keys / tenants` API keys, its own rate limit (RPM + TPM) and a hard
monthly budget, like the bench's one tenant, so that each request does the same
governance work as in the main run. All of them share the global route `bench`
(named like the bench tenant's own route, to the same fake upstream). `--sample` plaintext keys, one per tenant from
evenly spread tenants, are written to `--out` for the load generator; the other keys are
stored as hashes of random keys nobody knows.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=1_000)
    parser.add_argument("--route", default="bench")  # the model name the load asks for
    parser.add_argument("--provider-model", default="bench-model")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    import django

    django.setup()
    from django.db import transaction

    from billing.models import Budget, RateLimit, Scope
    from gateway_project.lib import generation
    from providers.models import ProviderModel
    from routing.models import Route, RouteTarget
    from tenants.keys import generate_key, hash_key, key_prefix
    from tenants.models import ApiKey, Tenant

    started = time.perf_counter()
    per_tenant = max(1, args.keys // args.tenants)
    step = max(1, args.tenants // args.sample)
    sample: list[str] = []
    with transaction.atomic():
        model = ProviderModel.objects.get(name=args.provider_model)
        route = Route.objects.create(name=args.route, tenant=None)
        RouteTarget.objects.create(route=route, provider_model=model, position=0)
        tenants = Tenant.objects.bulk_create(
            [Tenant(slug=f"scale-{i:05d}", name=f"Scale tenant {i}") for i in range(args.tenants)],
            batch_size=2_000,
        )
        RateLimit.objects.bulk_create(
            [
                RateLimit(scope=Scope.TENANT, tenant=t, rpm=100_000_000, tpm=100_000_000_000)
                for t in tenants
            ],
            batch_size=2_000,
        )
        Budget.objects.bulk_create(
            [
                Budget(
                    scope=Scope.TENANT,
                    tenant=t,
                    period=Budget.Period.MONTHLY,
                    max_cost_usd=Decimal("10000000"),
                    hard=True,
                )
                for t in tenants
            ],
            batch_size=2_000,
        )
        keys = []
        for index, tenant in enumerate(tenants):
            for n in range(per_tenant):
                plaintext = generate_key()
                if n == 0 and index % step == 0 and len(sample) < args.sample:
                    sample.append(plaintext)
                keys.append(
                    ApiKey(
                        tenant=tenant,
                        name=f"key {n}",
                        prefix=key_prefix(plaintext),
                        key_hash=hash_key(plaintext),
                    )
                )
        ApiKey.objects.bulk_create(keys, batch_size=5_000)
    generation.bump()
    args.out.write_text("\n".join(sample) + "\n")
    print(
        f"seeded {len(tenants)} tenants, {len(keys)} keys, {2 * len(tenants)} limits and "
        f"budgets in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
