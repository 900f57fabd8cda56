"""A ChatKit client for tests: the `openai-chatkit` package's own request types sent to
`POST /api/chatkit` over real HTTP, its SSE answers read back as its own event types."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from chatkit.types import (
    InferenceOptions,
    ItemsListParams,
    ItemsListReq,
    ThreadAddUserMessageParams,
    ThreadCreateParams,
    ThreadGetByIdParams,
    ThreadItemUpdatedEvent,
    ThreadRetryAfterItemParams,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsGetByIdReq,
    ThreadsRetryAfterItemReq,
    ThreadStreamEvent,
    UserMessageInput,
    UserMessageTextContent,
)
from pydantic import BaseModel, TypeAdapter

EVENT = TypeAdapter(ThreadStreamEvent)


def user_input(text: str) -> UserMessageInput:
    return UserMessageInput(
        content=[UserMessageTextContent(text=text)],
        attachments=[],
        inference_options=InferenceOptions(),
    )


def create(text: str) -> ThreadsCreateReq:
    return ThreadsCreateReq(params=ThreadCreateParams(input=user_input(text)))


def add_message(thread_id: str, text: str) -> ThreadsAddUserMessageReq:
    return ThreadsAddUserMessageReq(
        params=ThreadAddUserMessageParams(thread_id=thread_id, input=user_input(text))
    )


def retry(thread_id: str, item_id: str) -> ThreadsRetryAfterItemReq:
    return ThreadsRetryAfterItemReq(
        params=ThreadRetryAfterItemParams(thread_id=thread_id, item_id=item_id)
    )


def get_thread(thread_id: str) -> ThreadsGetByIdReq:
    return ThreadsGetByIdReq(params=ThreadGetByIdParams(thread_id=thread_id))


def list_items(thread_id: str, **params: Any) -> ItemsListReq:
    return ItemsListReq(params=ItemsListParams(thread_id=thread_id, **params))


def deltas(events: list[Any]) -> list[str]:
    """The text deltas of a stream, in order."""
    return [
        e.update.delta
        for e in events
        if isinstance(e, ThreadItemUpdatedEvent) and e.update.type.endswith("text_delta")
    ]


class ChatKitClient:
    """One user's ChatKit front end, authenticated like the logged-in `client` it copies."""

    def __init__(self, base_url: str, client: httpx.Client | None = None, **headers: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            cookies=client.cookies if client else None,
            headers={**(client.headers if client else {}), **headers},
            timeout=30,
        )

    async def post(self, body: BaseModel | bytes | str) -> httpx.Response:
        """A request answered as a whole (a JSON answer, or a stream read to its end)."""
        content = body.model_dump_json() if isinstance(body, BaseModel) else body
        return await self.http.post("/api/chatkit", content=content)

    async def call(self, request: BaseModel) -> dict[str, Any]:
        answer = await self.post(request)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        return answer.json()

    async def events(self, request: BaseModel) -> AsyncIterator[Any]:
        """A streaming request's events, as the package's types, as they arrive."""
        async with self.http.stream(
            "POST", "/api/chatkit", content=request.model_dump_json()
        ) as answer:
            assert answer.status_code == 200, (await answer.aread()).decode()
            assert answer.headers["content-type"].startswith("text/event-stream")
            async for line in answer.aiter_lines():
                if line.startswith("data: "):
                    yield EVENT.validate_python(json.loads(line[len("data: ") :]))

    async def stream(self, request: BaseModel) -> list[Any]:
        return [event async for event in self.events(request)]

    async def close(self) -> None:
        await self.http.aclose()
