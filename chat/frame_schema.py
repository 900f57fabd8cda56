"""The protocol's shapes as JSON Schema, derived from the TypedDicts of chat.frames.

One schema for three readers: the code builds frames with those types, docs/protocol.md's
field tables are rendered from this schema (scripts/protocol_doc.py), and the protocol test
validates every frame it receives against it. Only what the frames use is understood: str,
int, float, bool, None, Literal, list, unions, Annotated notes and TypedDicts (as `$ref`s).
"""

import inspect
import types
from typing import (
    Annotated,
    Any,
    Literal,
    NotRequired,
    Required,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from chat import frames

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def type_schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of one type; a TypedDict is a `$ref` into `definitions()`."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return {**type_schema(args[0]), "description": args[1]}
    if origin in (NotRequired, Required):
        return type_schema(args[0])
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        return {"anyOf": [type_schema(arg) for arg in args]}
    if origin is list:
        return {"type": "array", "items": type_schema(args[0])}
    if is_typeddict(tp):
        return {"$ref": f"#/$defs/{tp.__name__}"}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    raise TypeError(f"no JSON Schema for {tp!r}")


def object_schema(typed_dict: type) -> dict[str, Any]:
    """A TypedDict as a closed JSON object: its docstring, fields, and required fields."""
    hints = get_type_hints(typed_dict, include_extras=True)
    return {
        "type": "object",
        "description": " ".join(inspect.cleandoc(typed_dict.__doc__ or "").split()),
        "properties": {name: type_schema(tp) for name, tp in hints.items()},
        "required": [name for name in hints if name in typed_dict.__required_keys__],
        "additionalProperties": False,
    }


def _typed_dicts_in(tp: Any) -> list[type]:
    if is_typeddict(tp):
        return [tp]
    return [found for arg in get_args(tp) for found in _typed_dicts_in(arg)]


def definitions() -> dict[str, dict[str, Any]]:
    """Every frame, command and object they contain, by class name: frames first, in the
    order of `Frame`, then commands, then objects as first met; then the objects only the
    HTTP API carries (`frames.API_OBJECTS`) and theirs."""
    found: dict[str, dict[str, Any]] = {}
    for roots in ([*get_args(frames.Frame), *get_args(frames.Command)], frames.API_OBJECTS):
        pending = list(roots)
        while pending:
            typed_dict = pending.pop(0)
            if typed_dict.__name__ in found:
                continue
            found[typed_dict.__name__] = object_schema(typed_dict)
            for tp in get_type_hints(typed_dict, include_extras=True).values():
                pending.extend(_typed_dicts_in(tp))
    return found


def _by_literal(union: Any, key: str) -> dict[str, str]:
    return {
        get_args(get_type_hints(typed_dict)[key])[0]: typed_dict.__name__
        for typed_dict in get_args(union)
    }


def frame_types() -> dict[str, str]:
    """Each frame `type` and the name of its definition, in the order of `Frame`."""
    return _by_literal(frames.Frame, "type")


def command_names() -> dict[str, str]:
    """Each `command` and the name of its definition, in the order of `Command`."""
    return _by_literal(frames.Command, "command")


def schema(name: str | None = None) -> dict[str, Any]:
    """A whole JSON Schema document: of one definition, or (no name) of any server frame."""
    document: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": definitions(),
    }
    if name is not None:
        document["$ref"] = f"#/$defs/{name}"
    else:
        document["oneOf"] = [{"$ref": f"#/$defs/{n}"} for n in frame_types().values()]
    return document
