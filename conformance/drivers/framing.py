"""The pipe framing between the harness and an isolated child: length-prefixed pickles."""

from __future__ import annotations

import pickle
import struct
from typing import Any


def read(stream: Any) -> Any:
    """The next message, or None at the end of the stream."""
    header = stream.read(4)
    if len(header) < 4:
        return None
    (length,) = struct.unpack("!I", header)
    return pickle.loads(stream.read(length))


def write(stream: Any, message: object) -> None:
    data = pickle.dumps(message)
    stream.write(struct.pack("!I", len(data)) + data)
    stream.flush()
