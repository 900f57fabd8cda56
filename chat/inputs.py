"""What the server accepts as JSON and as text, whatever a client sends.

JSON nested deeper than Python's recursion limit makes `json.loads` raise RecursionError, which
no caller expected (a WebSocket closed with 1011, a 500). Text with a NUL cannot be stored by
PostgreSQL, and a lone surrogate ("\\ud800", valid JSON) cannot be encoded as UTF-8 by any
database. Each is refused here as bad input, before anything is written.
"""

import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def loads(data: str | bytes) -> Any:
    """`json.loads`, with too deep a nesting raised as the ValueError of any bad JSON."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("The JSON is nested too deeply.") from None


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored (a NUL character, or a lone surrogate), or None."""
    if "\x00" in text:
        return "Text must not contain NUL characters."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "Text must be valid Unicode (it has a lone surrogate)."
    return None


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, answering too deep a nesting with 400 like any other bad JSON."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the JSON is nested too deeply.") from None
