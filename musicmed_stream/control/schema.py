"""Export the control protocol as JSON Schema (``protocols/control-v1.schema.json``).

Run ``python -m musicmed_stream.control.schema [--check] [DIR]`` (or ``musicmed-stream ctl schema
--write``). The file is generated from :mod:`musicmed_stream.control.protocol`; a test regenerates it
in memory and fails when the committed file has drifted from the code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from musicmed_stream.audio_io import write_text_atomic
from musicmed_stream.control import protocol

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "protocols"


def schema_filename(version: int = protocol.PROTOCOL_VERSION) -> str:
    return f"control-v{version}.schema.json"


def build_schema() -> dict[str, Any]:
    """The JSON Schema document: ``$defs`` for every message and event payload, and the unions."""
    models = [(m, "validation") for m in protocol.CLIENT_MODELS]
    models += [(m, "serialization") for m in protocol.SERVER_MODELS]
    _, top = models_json_schema(models, ref_template="#/$defs/{model}")
    defs = top["$defs"]

    def union(models: tuple[type[BaseModel], ...], key: str, refs: dict[str, str]) -> dict[str, Any]:
        return {
            "oneOf": [{"$ref": ref} for ref in dict.fromkeys(refs.values())],
            "discriminator": {"propertyName": key, "mapping": refs},
        }

    def ref(model: type[BaseModel]) -> str:
        return f"#/$defs/{model.__name__}"

    client = {protocol.message_type(m): ref(m) for m in protocol.CLIENT_MODELS}
    # Server messages: ``type`` first; every ``event`` message then by its ``event`` field.
    server = {protocol.message_type(m): ref(m) for m in protocol.SERVER_MODELS[:3]}
    server["event"] = "#/$defs/EventMessage"
    events = {protocol.event_type(m): ref(m) for m in protocol.EVENT_MESSAGES}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"musicmed-stream/{schema_filename()}",
        "title": f"musicmed-stream control protocol v{protocol.PROTOCOL_VERSION}",
        "description": (
            "Websocket messages between the musicmed-stream daemon (/ws) and its clients. "
            "Generated from musicmed_stream/control/protocol.py and events.py; do not edit by hand."
        ),
        "protocol_version": protocol.PROTOCOL_VERSION,
        "oneOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
        "$defs": {
            "ClientMessage": union(protocol.CLIENT_MODELS, "type", client),
            "ServerMessage": union(protocol.SERVER_MODELS, "type", server),
            "EventMessage": union(protocol.EVENT_MESSAGES, "event", events),
            **dict(sorted(defs.items())),
        },
    }


def render_schema() -> str:
    """The schema file's exact text (stable key order, trailing newline)."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(directory: Path = SCHEMA_DIR) -> Path:
    """Write the schema file into ``directory`` (atomically) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(directory / schema_filename(), render_schema())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicmed_stream.control.schema", description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=SCHEMA_DIR)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the code")
    args = parser.parse_args(argv)
    path = args.directory / schema_filename()
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != render_schema():
            print(f"{path} is out of date; run python -m musicmed_stream.control.schema", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    print(write_schema(args.directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
