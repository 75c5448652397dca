"""Indexes for the admin's audit search by status, alone or with the tenant.

Built CONCURRENTLY on Postgres (gateway_project/lib/concurrent_index.py): the audit log
may hold millions of rows, and a plain CREATE INDEX would block the audit writer's inserts
for as long as it reads them. Hence not atomic. Each build reads the table once; on
5,000,000 rows bench/README.md has how long it took.
"""

from django.db import migrations, models

from gateway_project.lib.concurrent_index import AddIndexConcurrently


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0004_cached_and_reasoning_tokens"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="auditevent",
            index=models.Index(
                fields=["tenant", "status_code", "created_at"], name="audit_tenant_status_time"
            ),
        ),
        AddIndexConcurrently(
            model_name="auditevent",
            index=models.Index(fields=["status_code", "created_at"], name="audit_status_time"),
        ),
    ]
