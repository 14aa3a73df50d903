"""Virtual clock shared by every simulated device.

Physics and protocol timers run on *virtual* seconds so that a test can run an
hour of heating and printing in seconds.  ``speed`` is virtual seconds per real
second; ``speed=inf`` ("max") never waits: virtual time stands still while the
firmware waits for the host and jumps straight to the next event while the
firmware waits on itself (a move, a heater, a dwell).  That makes a run at max
speed depend only on the bytes received, not on how fast the host is.
"""

from __future__ import annotations

import math
import time


def parse_speed(text: str) -> float:
    """Parse a ``--speed`` value: a positive number or ``max``."""
    if text.strip().lower() in ("max", "inf"):
        return math.inf
    value = float(text)
    if not value > 0 or math.isinf(value) or math.isnan(value):
        raise ValueError(f"speed must be a positive number or 'max', got {text!r}")
    return value


class VirtualClock:
    """Monotonic virtual time with a speed factor."""

    def __init__(self, speed: float = 1.0, start: float = 0.0):
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self.is_max = math.isinf(speed)
        self._virtual = start
        self._real = time.monotonic()

    def now(self) -> float:
        if self.is_max:
            return self._virtual
        return self._virtual + (time.monotonic() - self._real) * self.speed

    def jump_to(self, virtual: float) -> None:
        """Advance to ``virtual`` at once (max speed only; finite speed just runs)."""
        if self.is_max and virtual > self._virtual:
            self._virtual = virtual

    def real_timeout(self, deadline: float | None) -> float | None:
        """Real seconds to sleep until virtual ``deadline`` (None = forever)."""
        if deadline is None:
            return None
        if self.is_max:
            return 0.0
        return max(0.0, (deadline - self.now()) / self.speed)

    def get_status(self) -> dict:
        return {"virtual_time": self.now(), "speed": "max" if self.is_max else self.speed}
