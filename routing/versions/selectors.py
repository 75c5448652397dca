"""Reads for configuration versions (the admin's pages, the recorder, the REST API)."""

from __future__ import annotations

from datetime import datetime

import orjson
from django.db.models import QuerySet

from routing.config_io import config_dump, config_export
from routing.models import ConfigVersion

_LISTED = ("id", "created_at", "user_id", "actor", "summary", "routing_version", "rollback_of_id")


def config_version_list(*, routing_version: str = "") -> QuerySet[ConfigVersion]:
    """Newest first, without the documents (a list never shows them)."""
    versions = ConfigVersion.objects.only(*_LISTED).order_by("-id")
    if routing_version:
        versions = versions.filter(routing_version=routing_version)
    return versions


def config_version_get(*, pk: object) -> ConfigVersion | None:
    """The version with id `pk`, or None (also for an id that is not a number)."""
    try:
        number = int(str(pk))
    except ValueError:
        return None
    return ConfigVersion.objects.filter(pk=number).first()


def config_version_latest() -> ConfigVersion | None:
    return ConfigVersion.objects.order_by("-id").first()


def config_version_before(*, version: ConfigVersion) -> ConfigVersion | None:
    return ConfigVersion.objects.filter(pk__lt=version.pk).order_by("-id").first()


def config_version_serving(*, routing_version: str, at: datetime | None) -> ConfigVersion | None:
    """The version a request stamped `routing_version` at time `at` was served under: the
    latest with that hash recorded by then. Versions that change no route or rule (a
    budget, a key) share their hash, and a hash can come back (a rollback), so the time
    decides (to within the instant between a commit and its record). Without a time, or
    before any version with the hash, the first one with it."""
    versions = ConfigVersion.objects.filter(routing_version=routing_version)
    if at is not None:
        found = versions.filter(created_at__lte=at).order_by("-created_at", "-id").first()
        if found is not None:
            return found
    return versions.order_by("created_at", "id").first()


def config_version_document(*, version: ConfigVersion) -> str:
    """The version's YAML document, as `export_gateway_config` wrote it then."""
    return config_dump(orjson.loads(version.content))


def config_document_live() -> str:
    """The configuration in force, as a version would record it."""
    return config_dump(config_export())
