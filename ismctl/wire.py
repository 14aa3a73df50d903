"""The wire contract (docs/protocol.md): one msgpack header frame plus raw array frames.

Everything that arrives from a socket goes through :func:`decode` before any
other code sees it, so that malformed, oversized, unknown-type and
unknown-version messages are rejected in one place with a reason, never with an
exception escaping into a process's main loop.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from enum import Enum

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 128 * 1024 * 1024  # a 1.4M-triangle binary STL is 70 MB
MAX_ARRAYS = 16
ALLOWED_DTYPES = frozenset({"|u1", "<i4", "<i8", "<f4", "<f8", "|b1"})


class Result(str, Enum):
    """F´-style command results, carried in every reply."""

    OK = "ok"
    INVALID = "invalid"  # the message itself is not acceptable (malformed, unknown type, ...)
    VALIDATION_ERROR = "validation_error"  # well-formed, but its content fails a check
    BUSY = "busy"  # refused now, may succeed later
    EXECUTION_ERROR = "execution_error"  # accepted, but carrying it out failed


# Message types and the body keys each one requires (type -> {key: python type}).
# Unknown types are rejected at decode time; bodies are checked here so that
# handlers can index them without guarding every key.
MESSAGE_TYPES: dict[str, dict[str, type | tuple[type, ...]]] = {
    # replies and errors, any direction
    "reply": {"result": str},
    # clients -> supervisor
    "ping": {},
    "submit": {"name": str, "gcode": str},
    "submit_mesh": {"name": str},  # + one uint8 array: the mesh file's bytes (STL, OBJ or 3MF, told by name)
    "submit_graph": {"name": str, "steps": list},  # + one uint8 array per mesh a step names; steps checked by the supervisor
    "confirm": {"job": int},  # an operator hand-off of a job graph is done
    "status": {},
    "jobs": {},
    "job": {"job": int},
    "pause": {},
    "resume": {},
    "cancel": {"job": int},
    "estop": {},
    "reset": {},
    # drivers -> supervisor
    "register": {"device": str, "device_class": str},
    "heartbeat": {},
    "device_state": {"state": str},
    "progress": {"job": int, "op": int},
    "telemetry": {},
    "job_end": {"job": int, "state": str},
    "event": {"kind": str},
    # supervisor -> drivers
    "job_start": {"job": int, "start_op": int, "line_base": int, "n_ops": int, "program": dict},
    "job_chunk": {"job": int, "offset": int, "program": dict},
    "job_pause": {"job": int},
    "job_resume": {"job": int},
    "job_cancel": {"job": int},
    "device_reset": {},
}


class WireError(ValueError):
    """A message that cannot be accepted; ``reason`` names what is wrong."""

    def __init__(self, reason: str, *, msg_id=None, src=None):
        super().__init__(reason)
        self.reason = reason
        self.msg_id = msg_id
        self.src = src


@dataclass
class Message:
    t: str
    body: dict = field(default_factory=dict)
    arrays: list[np.ndarray] = field(default_factory=list)
    id: int = 0
    src: str = ""
    re: int | None = None
    ts: float = 0.0
    v: int = PROTOCOL_VERSION

    @property
    def result(self) -> str | None:
        return self.body.get("result") if self.t == "reply" else None


class MessageFactory:
    """Stamps outgoing messages with this sender's name and a unique, increasing id."""

    def __init__(self, src: str):
        self.src = src
        # Start from a time-based value so ids stay unique across restarts of
        # the same sender name (the receiver deduplicates by (src, id)).
        self._ids = itertools.count(int(time.time() * 1000) * 1000 + os.getpid() % 1000)

    def make(self, t: str, body: dict | None = None, arrays=(), re: int | None = None) -> Message:
        return Message(t=t, body=body or {}, arrays=list(arrays), id=next(self._ids), src=self.src, re=re, ts=time.time())

    def reply(self, to: Message | None, result: Result, error: str = "", arrays=(), **data) -> Message:
        body = {"result": result.value, **data}
        if error:
            body["error"] = error
        return self.make("reply", body, arrays, re=None if to is None else to.id)


def encode(msg: Message) -> list[bytes | memoryview]:
    arrays = [np.ascontiguousarray(a) for a in msg.arrays]
    header = {
        "v": msg.v,
        "t": msg.t,
        "id": msg.id,
        "src": msg.src,
        "re": msg.re,
        "ts": msg.ts,
        "body": msg.body,
        "arrays": [[a.dtype.str, list(a.shape)] for a in arrays],
    }
    return [msgpack.packb(header, use_bin_type=True)] + [memoryview(a).cast("B") if a.size else b"" for a in arrays]


def decode(frames: list[bytes]) -> Message:
    """Parse and validate frames into a Message, or raise WireError with the reason."""
    if not frames:
        raise WireError("empty message")
    total = sum(len(f) for f in frames)
    if total > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {total} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        header = msgpack.unpackb(frames[0], raw=False, strict_map_key=True, max_bin_len=MAX_MESSAGE_BYTES)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise WireError(f"header is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict):
        raise WireError(f"header must be a map, got {type(header).__name__}")
    msg_id, src = header.get("id"), header.get("src")
    if not isinstance(msg_id, int) or isinstance(msg_id, bool):
        raise WireError("header field 'id' must be an integer", src=src if isinstance(src, str) else None)
    if not isinstance(src, str):
        raise WireError("header field 'src' must be a string", msg_id=msg_id)
    ctx = {"msg_id": msg_id, "src": src}
    v = header.get("v")
    if v != PROTOCOL_VERSION:
        raise WireError(f"unsupported protocol version {v!r} (this end speaks {PROTOCOL_VERSION})", **ctx)
    t = header.get("t")
    if t not in MESSAGE_TYPES:
        raise WireError(f"unknown message type {t!r}", **ctx)
    body = header.get("body", {})
    if not isinstance(body, dict):
        raise WireError("header field 'body' must be a map", **ctx)
    for key, typ in MESSAGE_TYPES[t].items():
        if key not in body:
            raise WireError(f"{t}: body lacks required key {key!r}", **ctx)
        value = body[key]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise WireError(f"{t}: body key {key!r} has the wrong type {type(value).__name__}", **ctx)
    re_, ts = header.get("re"), header.get("ts", 0.0)
    if re_ is not None and not isinstance(re_, int):
        raise WireError("header field 're' must be an integer or nil", **ctx)
    if not isinstance(ts, (int, float)):
        raise WireError("header field 'ts' must be a number", **ctx)
    arrays = _decode_arrays(header.get("arrays", []), frames[1:], ctx)
    return Message(t=t, body=body, arrays=arrays, id=msg_id, src=src, re=re_, ts=float(ts), v=v)


def _decode_arrays(specs, frames, ctx) -> list[np.ndarray]:
    if not isinstance(specs, list) or len(specs) > MAX_ARRAYS:
        raise WireError(f"header field 'arrays' must be a list of at most {MAX_ARRAYS} specs", **ctx)
    if len(specs) != len(frames):
        raise WireError(f"header announces {len(specs)} arrays but {len(frames)} frames follow", **ctx)
    arrays = []
    for i, (spec, frame) in enumerate(zip(specs, frames)):
        if (
            not isinstance(spec, list)
            or len(spec) != 2
            or spec[0] not in ALLOWED_DTYPES
            or not isinstance(spec[1], list)
            or not all(isinstance(d, int) and d >= 0 for d in spec[1])
        ):
            raise WireError(f"array {i}: bad spec {spec!r} (want [dtype, shape] with dtype in {sorted(ALLOWED_DTYPES)})", **ctx)
        dtype = np.dtype(spec[0])
        count = int(np.prod(spec[1], dtype=np.int64)) if spec[1] else 1
        if count * dtype.itemsize != len(frame):
            raise WireError(f"array {i}: {len(frame)} bytes do not hold shape {spec[1]} of {spec[0]}", **ctx)
        arrays.append(np.frombuffer(frame, dtype=dtype).reshape(spec[1]))
    return arrays
