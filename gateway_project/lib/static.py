"""WhiteNoise's middleware, made async-capable so it costs the proxy path nothing.

WhiteNoiseMiddleware is sync-only: under ASGI, Django would run every request, the hot
path's included, through a thread hop to call it. Here a request whose path is not under
STATIC_URL goes straight to the next async handler; only a static file is served from a
worker thread (opening and stat-ing the file blocks).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        if not request.path_info.startswith(self.static_prefix):
            return await get_response(request)
        response = await sync_to_async(self._static_response, thread_sensitive=False)(request)
        return response if response is not None else await get_response(request)

    def _static_response(self, request: HttpRequest) -> HttpResponseBase | None:
        if self.autorefresh:  # DEBUG: look the file up on disk every time
            static_file = self.find_file(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        return None if static_file is None else self.serve(static_file, request)
