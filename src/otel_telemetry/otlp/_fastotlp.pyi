"""Types of the optional C extension ``_fastotlp.c`` (see ``decode.py``)."""

from typing import Any

def decode_traces(
    body: bytes | bytearray | memoryview, /
) -> tuple[list[tuple[dict[str, Any], list[tuple[Any, ...]], int, int]], int, str | None]: ...
