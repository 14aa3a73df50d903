"""Device-independent program model.

A Program is what the planner produces and what a driver streams: one op per
command, addressed by its index (the op sequence number).  Progress, resume and
the audit log all refer to that index, so it must never change once a job is
accepted.  Per-op facts live in contiguous numpy arrays so that planning kernels
and the wire (raw frames, no per-element packing) can use them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

SOURCE_LINE_DTYPE = np.dtype("<i4")
LAYER_DTYPE = np.dtype("<i4")
DURATION_DTYPE = np.dtype("<f8")
POSITION_DTYPE = np.dtype("<f8")


class ProgramError(ValueError):
    """A program that is inconsistent (mismatched arrays, bad text)."""


_CHECK_BATCH = 65536  # commands joined at a time by Program._check_commands


@dataclass(frozen=True)
class Program:
    device_class: str
    name: str
    commands: tuple[str, ...]
    source_line: np.ndarray  # int32: 1-based line in the source file, per op
    layer: np.ndarray  # int32: layer index per op, -1 before the first layer
    duration_s: np.ndarray  # float64: estimated execution time per op
    position: np.ndarray | None = None  # float64 (n, 3): commanded X Y Z after each op; NaN until known
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.commands)
        for attr, dtype in (
            ("source_line", SOURCE_LINE_DTYPE),
            ("layer", LAYER_DTYPE),
            ("duration_s", DURATION_DTYPE),
        ):
            arr = np.ascontiguousarray(getattr(self, attr), dtype=dtype)
            if arr.shape != (n,):
                raise ProgramError(f"{attr} has shape {arr.shape}, expected ({n},) to match the commands")
            object.__setattr__(self, attr, arr)
        if self.position is None:
            position = np.full((n, 3), np.nan, dtype=POSITION_DTYPE)
        else:
            position = np.ascontiguousarray(self.position, dtype=POSITION_DTYPE)
        if position.shape != (n, 3):
            raise ProgramError(f"position has shape {position.shape}, expected ({n}, 3)")
        object.__setattr__(self, "position", position)
        self._check_commands()

    def _check_commands(self) -> None:
        """Every command one non-empty line of text, checked in C-speed passes (join, count) over
        batches (a join of a million-line program at once would double its memory for a moment);
        the op-by-op search runs only to name a bad one."""
        commands = self.commands
        try:
            ok = all(commands)
            for first in range(0, len(commands) if ok else 0, _CHECK_BATCH):
                batch = commands[first:first + _CHECK_BATCH]
                text = "\n".join(batch)
                if text.count("\n") != len(batch) - 1 or "\r" in text:
                    ok = False
                    break
        except TypeError:  # a command that is not text
            ok = False
        if not ok:
            i, cmd = next((i, c) for i, c in enumerate(self.commands)
                          if not isinstance(c, str) or not c or "\n" in c or "\r" in c)
            raise ProgramError(f"op {i}: command must be one non-empty line, got {cmd!r}")

    def __len__(self) -> int:
        return len(self.commands)

    @cached_property
    def layer_count(self) -> int:
        return int(self.layer.max()) + 1 if len(self) and self.layer.max() >= 0 else 0

    @property
    def estimated_s(self) -> float:
        return float(self._time_from[0]) if len(self) else 0.0

    def time_left_s(self, next_op: int) -> float:
        """Estimated time for ops ``next_op`` onwards (constant time: asked on every progress report)."""
        return float(self._time_from[max(0, next_op)]) if next_op < len(self) else 0.0

    @cached_property
    def _time_from(self) -> np.ndarray:
        """Time of ops i.. for every i: one suffix sum instead of a sum per question."""
        return np.cumsum(self.duration_s[::-1])[::-1]

    def slice(self, start: int, stop: int) -> "Program":
        """Ops ``start:stop`` as a Program of their own (for sending a long program in chunks)."""
        return Program(self.device_class, self.name, self.commands[start:stop], self.source_line[start:stop],
                       self.layer[start:stop], self.duration_s[start:stop], self.position[start:stop], self.meta)

    @classmethod
    def concat(cls, parts: list["Program"]) -> "Program":
        """The inverse of slicing: parts in op order, metadata from the first."""
        first = parts[0]
        return cls(
            first.device_class,
            first.name,
            tuple(c for part in parts for c in part.commands),
            np.concatenate([p.source_line for p in parts]),
            np.concatenate([p.layer for p in parts]),
            np.concatenate([p.duration_s for p in parts]),
            np.concatenate([p.position for p in parts]),
            first.meta,
        )

    def to_wire(self) -> tuple[dict, list[np.ndarray]]:
        """Header body plus raw arrays; the command text travels as one utf-8 blob."""
        blob = np.frombuffer("\n".join(self.commands).encode("utf-8"), dtype=np.uint8)
        body = {
            "device_class": self.device_class,
            "name": self.name,
            "n": len(self),
            "meta": dict(self.meta),
        }
        return body, [blob, self.source_line, self.layer, self.duration_s, self.position]

    @classmethod
    def from_wire(cls, body: dict, arrays: list[np.ndarray]) -> "Program":
        if len(arrays) != 5:
            raise ProgramError(f"a program needs 5 arrays (text, source_line, layer, duration_s, position), got {len(arrays)}")
        blob, source_line, layer, duration_s, position = arrays
        if blob.dtype != np.uint8:
            raise ProgramError(f"program text must be uint8, got {blob.dtype}")
        try:
            text = blob.tobytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProgramError(f"program text is not utf-8: {exc}") from None
        commands = tuple(text.split("\n")) if text else ()
        n = body.get("n")
        if n != len(commands):
            raise ProgramError(f"program says n={n!r} but carries {len(commands)} commands")
        for name, arr, dtype in (
            ("source_line", source_line, SOURCE_LINE_DTYPE),
            ("layer", layer, LAYER_DTYPE),
            ("duration_s", duration_s, DURATION_DTYPE),
            ("position", position, POSITION_DTYPE),
        ):
            if arr.dtype != dtype:
                raise ProgramError(f"{name} must be {dtype}, got {arr.dtype}")
        meta = body.get("meta", {})
        if not isinstance(meta, dict):
            raise ProgramError("program meta must be a map")
        return cls(
            device_class=str(body.get("device_class", "")),
            name=str(body.get("name", "")),
            commands=commands,
            source_line=source_line,
            layer=layer,
            duration_s=duration_s,
            position=position,
            meta=meta,
        )
