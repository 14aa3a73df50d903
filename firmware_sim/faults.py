"""Seeded fault injection on the received line stream and on the heaters.

Each received line gets its fate from a hash of (seed, line bytes, how many
times this exact line was received before), not from a shared random stream.
So the same seed and the same bytes give the same faults, and a retransmitted
line gets a fresh draw, however the host's writes happen to be split or timed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

HEATER_LETTERS = {"hotend": "T", "0": "T", "t": "T", "bed": "B", "b": "B"}


@dataclass(frozen=True)
class ThermalFault:
    """``--thermal-fault AT[:HEATER[:KIND]]``: at virtual second AT the heater
    cartridge stops heating (``heater``) or the thermistor opens (``sensor``)."""

    at: float
    heater: str = "T"
    kind: str = "heater"

    @classmethod
    def parse(cls, text: str) -> "ThermalFault":
        parts = text.split(":")
        if len(parts) > 3:
            raise ValueError(f"thermal fault is AT[:hotend|bed[:heater|sensor]], got {text!r}")
        at = float(parts[0])
        if at < 0:
            raise ValueError("thermal fault time must be >= 0")
        heater = HEATER_LETTERS.get(parts[1].lower()) if len(parts) > 1 else "T"
        if heater is None:
            raise ValueError(f"thermal fault heater must be hotend or bed, got {parts[1]!r}")
        kind = parts[2].lower() if len(parts) > 2 else "heater"
        if kind not in ("heater", "sensor"):
            raise ValueError(f"thermal fault kind must be heater or sensor, got {parts[2]!r}")
        return cls(at, heater, kind)


def _check_rate(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within 0..1, got {value}")
    return value


class LineFaults:
    """Decides, per received line, whether it is dropped, corrupted or ends the link."""

    def __init__(self, seed: int = 0, corrupt_rate: float = 0.0, drop_rate: float = 0.0,
                 disconnect_rate: float = 0.0, disconnect_after: int | None = None):
        self.seed = seed
        self.corrupt_rate = _check_rate("corrupt rate", corrupt_rate)
        self.drop_rate = _check_rate("drop rate", drop_rate)
        self.disconnect_rate = _check_rate("disconnect rate", disconnect_rate)
        if disconnect_after is not None and disconnect_after < 1:
            raise ValueError("disconnect-after must be >= 1")
        self.disconnect_after = disconnect_after
        self.enabled = bool(corrupt_rate or drop_rate or disconnect_rate or disconnect_after)
        self.lines = 0
        self.counts = {"dropped": 0, "corrupted": 0, "disconnects": 0}
        self._seen = {}
        self._key = str(seed).encode() + b"\0"

    def apply(self, line: bytes) -> tuple[bytes | None, bool]:
        """Return (line as received or None if it vanished, whether the link drops now)."""
        self.lines += 1
        occurrence = self._seen.get(line, 0)
        self._seen[line] = occurrence + 1
        digest = hashlib.blake2b(self._key + str(occurrence).encode() + b"\0" + line,
                                 digest_size=16).digest()
        u_drop, u_corrupt, u_disconnect, u_pos, u_bit = (
            int.from_bytes(digest[i:i + 3], "big") / 0x1000000 for i in range(0, 15, 3))
        disconnect = (u_disconnect < self.disconnect_rate
                      or self.lines == self.disconnect_after)
        if disconnect:
            self.counts["disconnects"] += 1
        if u_drop < self.drop_rate:
            self.counts["dropped"] += 1
            return None, disconnect
        if line and u_corrupt < self.corrupt_rate:
            self.counts["corrupted"] += 1
            line = self._flip(line, u_pos, u_bit)
        return line, disconnect

    @staticmethod
    def _flip(line: bytes, u_pos: float, u_bit: float) -> bytes:
        """Flip one bit of one byte; never into an end-of-line byte (framing stays)."""
        pos = int(u_pos * len(line))
        bit = int(u_bit * 8)
        for k in range(8):
            flipped = line[pos] ^ (1 << ((bit + k) % 8))
            if flipped not in (10, 13):
                return line[:pos] + bytes((flipped,)) + line[pos + 1:]
        return line

    def get_status(self) -> dict:
        return {"lines": self.lines, **self.counts}


class ReplyNoise:
    """Line noise on the way back: each line the firmware sends has, with
    probability ``rate``, one bit of one of its bytes flipped (never into CR or
    LF, and never the line end itself, so the line count survives).  Anything
    can be hit: an ``ok``, a ``Resend:`` number, a temperature report.

    The draws come from a random stream seeded with ``--seed`` (independent of
    the received-line faults), one per output line: the same seed and the same
    sequence of output lines give the same corruption.
    """

    def __init__(self, seed: int = 0, rate: float = 0.0):
        self.rate = _check_rate("reply noise", rate)
        self.enabled = rate > 0
        self._random = random.Random(f"reply-noise:{seed}").random
        self.lines = 0
        self.corrupted = 0

    def apply(self, lines: list[str]) -> None:
        """Corrupt ``lines`` (latin-1 text, without line ends) in place."""
        rnd, rate = self._random, self.rate
        self.lines += len(lines)
        for i, line in enumerate(lines):
            if rnd() < rate and line:
                pos = int(rnd() * len(line))
                bit = int(rnd() * 8)
                c = ord(line[pos])
                for k in range(8):
                    flipped = c ^ (1 << ((bit + k) % 8))
                    if flipped not in (10, 13):
                        break
                lines[i] = line[:pos] + chr(flipped) + line[pos + 1:]
                self.corrupted += 1

    def get_status(self) -> dict:
        return {"lines": self.lines, "corrupted": self.corrupted}
