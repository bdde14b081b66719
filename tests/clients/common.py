"""Shared by the client checks: a tiny PNG made without any imaging library,
and the tool and schema the checks send."""

import struct
import zlib


def png(width=32, height=24):
    """A small RGB PNG: a bright square on a dark background."""
    rows = b""
    for y in range(height):
        row = bytearray([0])  # filter: none
        for x in range(width):
            lit = 8 <= x < 24 and 6 <= y < 18
            row += bytes((230, 200, 40) if lit else (20, 20, 30))
        rows += bytes(row)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


SNAPSHOT_TOOL = {
    "type": "function",
    "function": {
        "name": "get_camera_snapshot",
        "description": "Take a snapshot from one camera",
        "parameters": {
            "type": "object",
            "properties": {"camera": {"type": "string", "description": "the camera's name"}},
            "required": ["camera"],
        },
    },
}

TOOL_PROMPT = "Take a snapshot from the driveway camera."

TRIAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "urgency": {"type": "string", "enum": ["normal", "monitor", "suspicious", "critical"]},
        "reason": {"type": "string"},
    },
    "required": ["urgency", "reason"],
    "additionalProperties": False,
}

TRIAGE_PROMPT = "A stranger is trying the door handles of parked cars at 3 am. Classify the urgency."

LONG_PROMPT = "camera " * 4000
