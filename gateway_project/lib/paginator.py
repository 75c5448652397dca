"""A paginator for the admin's changelists of tables too large to count."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
    """A paginator that never runs an unbounded COUNT(*).

    Counting a Postgres table of millions of rows reads all of it. Without filters the
    planner's own estimate (pg_class.reltuples) is good enough to draw the page links;
    with filters the count stops at `cap` rows and the changelist says "cap+".
    """

    cap = 10_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.is_estimate = False
        self.is_capped = False

    @cached_property
    def count(self) -> int:
        queryset: QuerySet[Any] = self.object_list  # type: ignore[assignment]  # the admin pages a QuerySet
        if not queryset.query.where and connections[queryset.db].vendor == "postgresql":
            estimate = self._planner_estimate(queryset)
            # Below the cap an exact count is cheap, and reltuples is -1 before the first
            # ANALYZE, so small or fresh tables fall through to counting.
            if estimate > self.cap:
                self.is_estimate = True
                return estimate
        counted = queryset.order_by().values("pk")[: self.cap + 1].count()
        if counted > self.cap:
            self.is_capped = True
            return self.cap
        return counted

    @staticmethod
    def _planner_estimate(queryset: QuerySet[Any]) -> int:
        connection = connections[queryset.db]
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [table]
            )
            row = cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else -1
