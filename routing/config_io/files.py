"""Reading and writing the configuration as YAML text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from routing.config_io.schema import ConfigError, Issue

HEADER = (
    "# LLM gateway configuration, written by `manage.py export_gateway_config`.\n"
    "# Apply with `manage.py import_gateway_config FILE`. Secrets are never exported.\n"
)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML would silently overwrite."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key; construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"duplicate key {key!r}",
                key_node.start_mark,
            )  # fmt: skip
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def config_load(text: str, *, source: str = "<config>") -> Any:
    """Parse YAML text; a syntax error becomes a ConfigError naming the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Issue(where, f"invalid YAML: {problem}")], source=source) from exc


def config_load_file(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Issue("(file)", exc.strerror or str(exc))], source=str(path)) from exc
    return config_load(text, source=str(path))


class _Inline(dict):
    """A mapping written on one line, like `{provider: openai, model: gpt-4o-mini}`."""


class _InlineList(list):
    """A list written on one line, like `[chat, echo]`."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Inline, lambda dumper, data: dumper.represent_mapping(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, data, flow_style=True
    ),
)  # fmt: skip

_Dumper.add_representer(
    _InlineList, lambda dumper, data: dumper.represent_sequence(
        yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, data, flow_style=True
    ),
)  # fmt: skip

# Lists whose entries are short records, and the one-record form of rate_limits.
_INLINE_ITEMS = {"models", "targets", "budgets", "redaction_rules", "rate_limits"}
# Lists of short names.
_INLINE_LISTS = {"allowed_routes"}


def _styled(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        styled = {k: _styled(v, k) for k, v in value.items()}
        return _Inline(styled) if key in _INLINE_ITEMS else styled
    if isinstance(value, list):
        items = [_styled(item, key) for item in value]
        return _InlineList(items) if key in _INLINE_LISTS else items
    return value


def config_dump(data: dict[str, Any]) -> str:
    """YAML text in the style of the shipped example: entities as blocks, records inline."""
    body = yaml.dump(
        _styled(data),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=120,
    )
    return HEADER + body
