"""LOG_FORMAT=json: every log record as one JSON object a line, for a log pipeline to index.

A record's `fields` (passed as `extra={"fields": {...}}`, as a reply's end does) become keys
of its object beside `ts`, `level`, `logger` and `message`.
"""

import datetime
import json
import logging


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
