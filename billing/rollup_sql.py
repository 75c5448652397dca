"""How one (tenant, billing day) roll-up is computed from ledger lines: on Postgres by one
INSERT ... SELECT ... GROUP BY (a day of a million lines never leaves the server), elsewhere
by the ORM and a dict. Both give the same rows; tests/billing/test_rollups.py holds them to
it, the canonical tag text included.

The tag set: the request's `metadata["tags"]` object as canonical JSON, keys sorted by
code point, `"key":value` pairs joined by "," in braces, no spaces, non-ASCII characters
as they are (not \\u escapes), "" for none. Postgres's own jsonb text does not do: it
orders keys by length first and puts spaces after ":" and ",". Tag values are strings
(routing.proxy.hints.parse_tags); other JSON values are rendered by Postgres's jsonb text,
which Python matches for scalars but not for nested objects.

Longer than DailyUsage.tags holds (4000 characters, where 50 tags of 600 may reach
30,000), the set keeps its first pairs in key order while they fit: still valid JSON, one
value per request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Q, Value

from billing.models import DailyUsage, UsageLine

TAGS_MAX_CHARS = 4000  # DailyUsage.tags
ROLLUP_WORK_MEM = "64MB"


@dataclass(frozen=True)
class LinePart:
    """Which ledger lines of the tenant go into the day's roll-up, flagged late or not."""

    late: bool
    lines: Q


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def canonical_tags(metadata: Any) -> str:
    """The tag set of a ledger line's metadata, as the roll-up stores it."""
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    if not isinstance(tags, dict):
        return ""
    pairs: list[str] = []
    used = 1  # the closing brace; each pair brings itself and "{" or ","
    for key in sorted(tags):
        pair = f"{_json_text(key)}:{_json_text(tags[key])}"
        used += len(pair) + 1
        if used > TAGS_MAX_CHARS:
            break
        pairs.append(pair)
    return "{" + ",".join(pairs) + "}" if pairs else ""


# The same in SQL over a jsonb value `raw`: to_json(text) and a jsonb string's text escape
# as Python's json does with ensure_ascii off (", \, \b \f \n \r \t, other controls as
# lowercase \u00XX); COLLATE "C" orders UTF-8 bytes, which is code point order; length()
# counts characters, as len() does.
_CANONICAL_TAGS_SQL = f"""
CASE WHEN jsonb_typeof(g.raw_tags) = 'object' THEN coalesce((
  SELECT '{{' || string_agg(q.pair, ',' ORDER BY q.k COLLATE "C") || '}}'
  FROM (
    SELECT p.k, p.pair, 1 + sum(length(p.pair) + 1) OVER (ORDER BY p.k COLLATE "C") AS used
    FROM (
      SELECT e.key AS k, to_json(e.key)::text || ':' || e.value::text AS pair
      FROM jsonb_each(g.raw_tags) AS e
    ) AS p
  ) AS q
  WHERE q.used <= {TAGS_MAX_CHARS}
), '') ELSE '' END
"""

_LINE_COLUMNS = (
    "tenant_slug",
    "api_key_id",
    "key_prefix",
    "route_id",
    "route",
    "provider",
    "model",
    "price_version_id",
    "metadata",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
)
_GROUP = ("late", "api_key_id", "key_prefix", "route_id", "route", "provider", "model")
_COUNTS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
)


def _part_sql(tenant_id: int, part: LinePart) -> tuple[str, Sequence[Any]]:
    queryset = (
        UsageLine.objects.filter(part.lines, tenant_id=tenant_id)
        .order_by()
        .annotate(late=Value(part.late))
        .values(*_LINE_COLUMNS, "late")
    )
    sql, params = queryset.query.sql_with_params()
    return sql, params


def _insert_postgres(tenant_id: int, day: date, parts: list[LinePart], built_at: datetime) -> int:
    """Lines are grouped twice: first by the raw jsonb tags (hashing a jsonb is cheap;
    canonical text made for each of a million lines is not), then by the canonical text of
    each group's tags (two jsonb values may share one: a non-object and {}, or sets cut at
    the same length)."""
    quote = connection.ops.quote_name
    selects = [_part_sql(tenant_id, part) for part in parts]
    union = " UNION ALL ".join(f"({sql})" for sql, _ in selects)
    params: list[Any] = [tenant_id, day, built_at]
    for _, part_params in selects:
        params.extend(part_params)
    sums = ", ".join(f"sum(l.{column}) AS {column}" for column in _COUNTS)
    outer_sums = ", ".join(f"sum(g.{column})" for column in _COUNTS)
    columns = [
        "tenant_id",
        "day",
        "built_at",
        "tenant_slug",
        *_GROUP,
        "price_version_id",
        "tags",
        "requests",
        *_COUNTS,
    ]
    sql = f"""
        INSERT INTO {quote(DailyUsage._meta.db_table)} ({", ".join(map(quote, columns))})
        SELECT %s, %s, %s, max(g.tenant_slug), {", ".join(f"g.{c}" for c in _GROUP)},
               g.price_version_id, t.tags, sum(g.requests), {outer_sums}
        FROM (
          SELECT l.late, coalesce(l.api_key_id, 0) AS api_key_id, l.key_prefix,
                 coalesce(l.route_id, 0) AS route_id, l.route, l.provider, l.model,
                 coalesce(l.price_version_id, 0) AS price_version_id,
                 l.metadata -> 'tags' AS raw_tags, max(l.tenant_slug) AS tenant_slug,
                 count(*) AS requests, {sums}
          FROM ({union}) AS l
          GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
        ) AS g
        CROSS JOIN LATERAL (SELECT {_CANONICAL_TAGS_SQL} AS tags) AS t
        GROUP BY {", ".join(f"g.{c}" for c in _GROUP)}, g.price_version_id, t.tags
    """
    with connection.cursor() as cursor:
        # For the rest of this transaction only. JIT: the planner prices the tag text as if
        # made per line, so it compiles the query, which takes longer (0.7 s) than running
        # it. work_mem: the grouping of a day's lines then fits in memory, not on disk.
        cursor.execute(
            "SELECT set_config('jit', 'off', true), set_config('work_mem', %s, true)",
            [ROLLUP_WORK_MEM],
        )
        cursor.execute(sql, params)
        return cursor.rowcount


def _insert_orm(tenant_id: int, day: date, parts: list[LinePart], built_at: datetime) -> int:
    groups: dict[tuple, dict[str, Any]] = {}
    for part in parts:
        lines = UsageLine.objects.filter(part.lines, tenant_id=tenant_id).values(*_LINE_COLUMNS)
        for line in lines.iterator(chunk_size=5000):
            key = (
                part.late,
                line["api_key_id"] or 0,
                line["key_prefix"],
                line["route_id"] or 0,
                line["route"],
                line["provider"],
                line["model"],
                line["price_version_id"] or 0,
                canonical_tags(line["metadata"]),
            )
            group = groups.get(key)
            if group is None:
                group = groups[key] = {column: 0 for column in _COUNTS}
                group.update(requests=0, cost_usd=Decimal(0), tenant_slug="")
            group["requests"] += 1
            group["tenant_slug"] = max(group["tenant_slug"], line["tenant_slug"])
            for column in _COUNTS:
                group[column] += line[column]
    rows = [
        DailyUsage(
            tenant_id=tenant_id,
            day=day,
            built_at=built_at,
            **dict(zip((*_GROUP, "price_version_id", "tags"), key, strict=True)),
            **group,
        )
        for key, group in groups.items()
    ]
    DailyUsage.objects.bulk_create(rows, batch_size=500)
    return len(rows)


def rollup_rows_insert(
    *, tenant_id: int, day: date, parts: list[LinePart], built_at: datetime
) -> int:
    """Insert the day's roll-up rows of these lines; how many. The caller has deleted the
    day's rows, in the same transaction."""
    if not parts:
        return 0
    if connection.vendor == "postgresql":
        return _insert_postgres(tenant_id, day, parts, built_at)
    return _insert_orm(tenant_id, day, parts, built_at)
