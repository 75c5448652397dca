"""Helpers the configuration version tests share."""

from __future__ import annotations

from routing.models import ConfigVersion
from routing.versions.selectors import config_version_document


def doc(version: ConfigVersion) -> str:
    """The version's YAML document."""
    return config_version_document(version=version)
