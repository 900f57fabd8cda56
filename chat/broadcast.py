"""Sending frames to a thread's subscribers, on any process, through the channel layer."""

import json
import uuid
from typing import Any

from channels.layers import get_channel_layer

from chat.outage import Softly

_health = Softly("publishing frames")


def thread_group(thread_id: str | uuid.UUID) -> str:
    """The channel-layer group of a thread's subscribers."""
    return f"thread.{thread_id}"


async def publish_strictly(thread_id: str, frame: dict[str, Any]) -> None:
    """Send a frame to every subscriber of the thread; raises if the layer is unreachable.

    The frame goes out serialized once, as `text`, beside the frame itself: every socket
    sends that text as it is instead of encoding the same frame again.
    """
    event = {"type": "chat.frame", "frame": frame, "text": json.dumps(frame)}
    await get_channel_layer().group_send(thread_group(thread_id), event)


async def publish(thread_id: str, frame: dict[str, Any]) -> bool:
    """Send a frame to every subscriber of the thread, if the layer can be reached now.

    A wake-up, not the record (see live.py): a subscriber that misses a frame sees a gap, or
    hears of it from a heartbeat, and resyncs from the live record. So a failure here (Redis
    restarting) is logged once per outage and the reply goes on; False says it failed.
    """
    try:
        await publish_strictly(thread_id, frame)
    except Exception as exc:
        _health.failed(exc)
        return False
    _health.succeeded()
    return True
