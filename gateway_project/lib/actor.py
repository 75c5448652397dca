"""Who is making a change: a staff user (admin or REST API), a command, a task or the system.

Configuration versions record it (routing/versions/). Nothing has to pass a user down
through the services: `ActorMiddleware` remembers the request, whose user is read only
when asked, because DRF authenticates a management token inside the view, after every
middleware has run (and then sets the user on the underlying request too). Commands that
write configuration derive from `ActorCommand`; a Celery task is recognised by its own
context; anything else is "system".
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand
from django.http import HttpRequest, HttpResponse

SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    label: str  # what a person reads: "olga (admin)", "command import_gateway_config (root)"
    user_id: int | None = None


_request: ContextVar[HttpRequest | None] = ContextVar("actor_request", default=None)
_explicit: ContextVar[Actor | None] = ContextVar("actor_explicit", default=None)


@contextmanager
def acting_as(label: str, *, user_id: int | None = None) -> Iterator[Actor]:
    """Changes made inside are attributed to `label` (and the user `user_id`)."""
    actor = Actor(label=label, user_id=user_id)
    token = _explicit.set(actor)
    try:
        yield actor
    finally:
        _explicit.reset(token)


def _from_request(request: HttpRequest) -> Actor | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    if request.path.startswith("/api/"):
        # DRF puts the token it authenticated on the request; a session has none.
        channel = "REST API token" if getattr(request, "auth", None) is not None else "REST API"
    else:
        channel = "admin"
    return Actor(label=f"{user.get_username()} ({channel})", user_id=user.pk)


def _from_task() -> Actor | None:
    if "celery" not in sys.modules:  # never import Celery just to ask
        return None
    from celery import current_task

    # A proxy: false outside a task, whatever `is None` says.
    if not current_task or not getattr(current_task.request, "id", None):
        return None
    return Actor(label=f"task {current_task.name}")


def current_actor() -> Actor:
    explicit = _explicit.get()
    if explicit is not None:
        return explicit
    request = _request.get()
    actor = _from_request(request) if request is not None else None
    return actor or _from_task() or Actor(label=SYSTEM)


class ActorMiddleware:
    """Remembers the request being served, so that a change it makes can name its user."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in a bare container: still say it was a command
        return "unknown user"


class ActorCommand(BaseCommand):
    """A management command whose configuration changes are attributed to it."""

    def execute(self, *args: Any, **options: Any) -> str | None:
        name = type(self).__module__.rsplit(".", 1)[-1]
        with acting_as(f"command {name} ({_os_user()})"):
            return super().execute(*args, **options)
