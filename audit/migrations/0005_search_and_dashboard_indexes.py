"""Indexes for the admin's audit search by status (alone or with the tenant) and for its
dashboard (`audit_time`: created_at, carrying the columns the dashboard counts, so the last
day is read from the index alone on Postgres), which replaces created_at's own index.

Built, and the replaced index dropped, CONCURRENTLY on Postgres
(gateway_project/lib/concurrent_index.py): the audit log may hold millions of rows, and a
plain CREATE INDEX would block the audit writer's inserts for as long as it reads them.
Hence not atomic. The new time index is built before the old one goes, so time ranges are
never without one. bench/README.md has how long it takes on 5,000,000 rows.
"""

from django.db import migrations, models

from gateway_project.lib.concurrent_index import AddIndexConcurrently, DropFieldIndexConcurrently


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0004_cached_and_reasoning_tokens"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="auditevent",
            index=models.Index(
                fields=["created_at"],
                include=["status_code", "outcome", "latency_ms", "tenant"],
                name="audit_time",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="created_at",
                    field=models.DateTimeField(),
                ),
            ],
            database_operations=[
                DropFieldIndexConcurrently(model_name="auditevent", name="created_at"),
            ],
        ),
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
