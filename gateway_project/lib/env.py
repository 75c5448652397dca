"""Tiny typed readers for settings that come from the environment."""

from __future__ import annotations

import ipaddress
import os
from decimal import Decimal


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def envfloat(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def envdecimal(name: str, default: str) -> Decimal:
    return Decimal(os.environ.get(name) or default)


def envsecret(name: str, default: str = "") -> str:
    """Read a secret from NAME, or from the file named by NAME_FILE (Docker/K8s secrets)."""
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(f"{name}_FILE")
    if path:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    return default


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def envnetworks(name: str, default: str = "") -> list[str]:
    """A comma-separated list of networks (`10.0.0.0/8`, `::1`), each checked: a typo stops
    the start rather than letting in (or shutting out) the wrong clients."""
    values = envlist(name, default)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return values


def dotenv_read(path: str | os.PathLike[str]) -> dict[str, str]:
    """The `NAME=value` lines of an env file (docker compose's `env_file` format).

    Blank lines and `#` comments are skipped (also after an unquoted value), an `export `
    prefix is allowed, and a value in matching single or double quotes loses them
    (nothing inside is expanded). A missing file reads as empty: `.env` is optional.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name.isidentifier():
            raise ValueError(f"{path}:{number}: expected NAME=value, got {raw!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:  # as docker compose reads it: " #" starts a comment after an unquoted value
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def dotenv_load(path: str | os.PathLike[str]) -> None:
    """Put an env file's values into os.environ, under the real environment: a variable
    already set (even to "") keeps its value, so `DEBUG=0 make serve` beats the file."""
    for name, value in dotenv_read(path).items():
        os.environ.setdefault(name, value)
