"""A reply's frames as ChatKit events (chat/chatkit/server.py), without a server. (How a
stream that missed frames catches up is the subscriber's: tests/test_subscription.py.)"""

from chatkit.errors import CustomStreamError
from chatkit.types import ThreadMetadata
from django.utils import timezone

from chat import frames
from chat.chatkit import server

THREAD = ThreadMetadata(id="t-1", created_at=timezone.now())
REPLY = "r-1"


def tokens(*texts: str, first_seq: int = 1) -> list[dict]:
    return [
        frames.token(message_id=REPLY, seq=first_seq + i, text=text) for i, text in enumerate(texts)
    ]


def metrics():
    return frames.metrics(tokens=2, elapsed_ms=10, first_token_ms=1)


def translate(received: list[dict]) -> tuple[server.ReplyEvents, list]:
    reply = server.ReplyEvents(THREAD, REPLY)
    return reply, [event for frame in received for event in reply.of(frame)]


def test_a_reply_is_an_item_added_a_delta_per_token_and_the_item_done():
    reply, events = translate(
        [
            frames.start(message_id=REPLY, model="m"),
            *tokens("Hel", "lo"),
            frames.token(message_id="another reply", seq=3, text="not ours"),
            tokens("lo")[0],  # a repeat
            frames.complete(message_id=REPLY, seq=3, status="complete", metrics=metrics()),
        ]
    )
    assert [e.type for e in events] == [
        "thread.item.added",
        "thread.item.updated",  # content part added
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.updated",  # content part done
        "thread.item.done",
    ]
    assert [e.update.delta for e in events[2:4]] == ["Hel", "lo"]
    assert events[-1].item.id == REPLY and events[-1].item.content[0].text == "Hello"
    assert reply.ended and reply.failure is None


def test_a_stopped_reply_ends_with_a_notice_and_a_failed_one_with_its_reason():
    _, events = translate(
        [
            frames.start(message_id=REPLY, model="m"),
            *tokens("Par"),
            frames.complete(message_id=REPLY, seq=2, status="cancelled", metrics=metrics()),
        ]
    )
    assert events[-2].item.content[0].text == "Par"
    assert events[-1].type == "notice" and "stopped" in events[-1].message

    reply, events = translate(
        [
            frames.start(message_id=REPLY, model="m"),
            frames.error(
                code="provider_error",
                message="The model failed.",
                recoverable=True,
                message_id=REPLY,
                seq=1,
            ),
        ]
    )
    assert events[-1].item.content[0].text == "_The model failed._"  # nothing was written
    assert isinstance(reply.failure, CustomStreamError) and reply.failure.allow_retry
