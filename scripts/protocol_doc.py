"""Render the generated parts of docs/protocol.md from the code: the commands, frames and
objects (from chat.frames through chat.frame_schema), the error codes and the close codes.

    python -m scripts.protocol_doc           # rewrite the generated parts in place
    python -m scripts.protocol_doc --check   # exit 1 if they are stale (a test does this)
    python -m scripts.protocol_doc --schema  # print the frames' JSON Schema

A generated part sits between `<!-- generated: NAME -->` and `<!-- end generated -->`; the
prose around it is written by hand and kept as it is.
"""

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chat import frame_schema, frames

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S
)


def _anchor(name: str) -> str:
    return f"[{name}](#{name.lower()})"


def _type_text(schema: dict[str, Any]) -> str:
    """A field's type for a table cell: `"a"` \\| `"b"`, [Object](#object) or null, ..."""
    if "$ref" in schema:
        return _anchor(schema["$ref"].rsplit("/", 1)[1])
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_type_text(option) for option in schema["anyOf"])
    if schema["type"] == "array":
        return f"array of {_type_text(schema['items'])}"
    return schema["type"]


def _fields(definition: dict[str, Any]) -> list[str]:
    rows = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for name, schema in definition["properties"].items():
        required = "yes" if name in definition["required"] else "no"
        meaning = schema.get("description", "").replace("|", "\\|")
        rows.append(f"| `{name}` | {_type_text(schema)} | {required} | {meaning} |")
    return rows


def _sections(names: dict[str, str], heading: Callable[[str, str], str]) -> str:
    definitions = frame_schema.definitions()
    lines: list[str] = []
    for key, name in names.items():
        definition = definitions[name]
        lines += [heading(key, name), "", definition["description"], ""]
        lines += [*_fields(definition), ""]
    return "\n".join(lines)


def commands() -> str:
    """One section per command: what it does and its fields."""
    return _sections(frame_schema.command_names(), lambda key, _: f"### `{key}`")


def server_frames() -> str:
    """One section per server frame: when it comes and its fields."""
    return _sections(frame_schema.frame_types(), lambda key, _: f"### `{key}`")


def objects() -> str:
    """One section per object that frames and the API carry."""
    names = [n for n in frame_schema.definitions() if not n.endswith(("Frame", "Command"))]
    return _sections({name: name for name in names}, lambda _, name: f"### {name}")


def error_codes() -> str:
    """The error codes with their `recoverable` and the HTTP status of a request refused."""
    from chat.errors import HTTP_STATUS  # (imports Django: only when rendering)

    rows = [
        "| code | recoverable | HTTP status | meaning |",
        "|---|---|---|---|",
    ]
    for code, info in frames.ERRORS.items():
        recoverable = "depends" if info.recoverable is None else str(info.recoverable).lower()
        status = HTTP_STATUS.get(code, "—")
        rows.append(f"| `{code}` | {recoverable} | {status} | {info.meaning} |")
    return "\n".join(rows) + "\n"


def close_codes() -> str:
    """The WebSocket close codes and what each asks of the client."""
    rows = ["| code | meaning |", "|---|---|"]
    rows += [f"| {code} | {meaning} |" for code, meaning in frames.CLOSE_CODES.items()]
    return "\n".join(rows) + "\n"


BLOCKS: dict[str, Callable[[], str]] = {
    "commands": commands,
    "frames": server_frames,
    "objects": objects,
    "error-codes": error_codes,
    "close-codes": close_codes,
}


def render(text: str) -> str:
    """The document with every generated part made again from the code."""

    def again(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise ValueError(f"docs/protocol.md names an unknown generated part {name!r}")
        return f"{match[1]}\n{BLOCKS[name]().rstrip()}\n\n{match[4]}"

    return _BLOCK.sub(again, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the doc is stale")
    parser.add_argument("--schema", action="store_true", help="print the JSON Schema")
    options = parser.parse_args()
    if options.schema:
        print(json.dumps(frame_schema.schema(), indent=2))
        return 0
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    import django

    django.setup()
    current = DOC.read_text()
    fresh = render(current)
    if options.check:
        if fresh != current:
            print(f"{DOC} is stale: run python -m scripts.protocol_doc", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
