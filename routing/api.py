"""The OpenAI-compatible proxy endpoints (thin: the work is in routing/proxy.py)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router

from routing import proxy

router = Router(tags=["proxy"])


@router.post("/chat/completions", summary="Create a chat completion (OpenAI-compatible)")
async def chat_completions(request: HttpRequest) -> HttpResponse:
    return await proxy.handle_chat_completion(request)


@router.get("/models", summary="List the models and routes this key may use")
async def list_models(request: HttpRequest) -> HttpResponse:
    return await proxy.handle_list_models(request)
