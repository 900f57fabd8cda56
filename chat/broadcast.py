"""Sending frames to a thread's subscribers, on any process, through the channel layer."""

import uuid
from typing import Any

from channels.layers import get_channel_layer


def thread_group(thread_id: str | uuid.UUID) -> str:
    """The channel-layer group of a thread's subscribers."""
    return f"thread.{thread_id}"


async def publish(thread_id: str, frame: dict[str, Any]) -> None:
    """Send a frame to every subscriber of the thread. A wake-up, not the record: see live.py."""
    await get_channel_layer().group_send(
        thread_group(thread_id), {"type": "chat.frame", "frame": frame}
    )
