"""When a reply's deltas become a frame: BUFFER_SIZE characters, or FLUSH_INTERVAL_MS after the
first of them, whichever comes first.

Pure: no clock, no I/O, no settings. The caller (run.ReplyStream) says what time it is,
waits until `flush_at`, and sends what `flush()` gives.
"""


class Coalescer:
    """The text received and not yet sent, and whether it is due as a frame.

    Deltas added after the buffer is full still join it until `flush()`: the caller adds the
    deltas that queued up meanwhile, so under load frames grow instead of falling behind.
    """

    def __init__(self, buffer_size: int, window_s: float) -> None:
        self.buffer_size = buffer_size
        self.window_s = window_s
        self._buffer = ""
        self._since = 0.0  # when the first delta of the buffer came

    @property
    def pending(self) -> str:
        """The text received and not yet sent."""
        return self._buffer

    @property
    def flush_at(self) -> float | None:
        """When the buffer is due even if not full; None while it is empty."""
        return self._since + self.window_s if self._buffer else None

    def add(self, delta: str, now: float) -> bool:
        """Take a delta received at `now`; True when the buffer is full: send it now."""
        if not self._buffer:
            self._since = now
        self._buffer += delta
        return len(self._buffer) >= self.buffer_size

    def due(self, now: float) -> bool:
        """Whether a buffer that is not full has waited its window out by `now`."""
        return bool(self._buffer) and now >= self._since + self.window_s

    def flush(self) -> str:
        """The text of the next frame ('' when nothing is pending); the buffer starts over."""
        text, self._buffer = self._buffer, ""
        return text
