"""The OpenAI-compatible proxy endpoints (thin: the work is in routing/proxy/handler.py)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from ninja import Router

from routing.proxy import catalog, embeddings, handler, messages
from routing.proxy import responses as responses_handler

router = Router(tags=["proxy"])


@router.post("/chat/completions", summary="Create a chat completion (OpenAI-compatible)")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    return await handler.handle_chat_completion(request)


@router.get("/models", summary="List the models and routes this key may use")
async def list_models(request: HttpRequest) -> HttpResponse:
    return await catalog.handle_list_models(request)


@router.get("/models/{path:model_id}", summary="The model or route this key may use, by id")
async def retrieve_model(request: HttpRequest, model_id: str) -> HttpResponse:
    return await catalog.handle_retrieve_model(request, model_id)


@router.post("/embeddings", summary="Create embeddings (OpenAI-compatible)")
async def create_embeddings(request: HttpRequest) -> HttpResponseBase:
    return await embeddings.handle_embeddings(request)


@router.post("/responses", summary="Create a model response (OpenAI Responses API)")
async def responses(request: HttpRequest) -> HttpResponseBase:
    return await responses_handler.handle_responses(request)


@router.post("/messages", summary="Create a message (Anthropic Messages API)")
async def create_message(request: HttpRequest) -> HttpResponseBase:
    return await messages.handle_messages(request)


@router.post("/messages/count_tokens", summary="Count a message's input tokens (Anthropic)")
async def count_message_tokens(request: HttpRequest) -> HttpResponse:
    return await messages.handle_count_tokens(request)
