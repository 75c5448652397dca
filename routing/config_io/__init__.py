"""Configuration as code: one declarative YAML document for providers, tenants, routes,
limits and redaction rules. `import_gateway_config` and `export_gateway_config` are
thin wrappers around these functions; docs/gateway.example.yaml documents the format.
"""

from __future__ import annotations

from routing.config_io.exporter import config_export
from routing.config_io.files import config_dump, config_load, config_load_file
from routing.config_io.importer import ImportReport, config_import
from routing.config_io.parse import parse_config
from routing.config_io.schema import ConfigError, GatewayConfig, Issue

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "ImportReport",
    "Issue",
    "config_dump",
    "config_export",
    "config_import",
    "config_load",
    "config_load_file",
    "parse_config",
]
