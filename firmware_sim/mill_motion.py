"""Motion for the grbl mill simulator: a planner ring of straight blocks, run one
after the other on the virtual clock, with a feed hold that really decelerates.

Each block runs a trapezoid from rest to rest (no junction blending: timing is a
little pessimistic for chains of short segments).  A feed hold replaces the
running profile by a deceleration at the block's acceleration; the block keeps
the distance it reached and, on resume, runs the rest from rest.  Positions are
machine coordinates in mm (X Y Z).
"""

from __future__ import annotations

import math
from collections import deque

EPS = 1e-9


class Segment:
    """Distance-versus-time along one block: start at v0, cruise at most at vmax,
    stop at the end of ``length`` (the distance ``s0`` is already behind)."""

    def __init__(self, t0: float, s0: float, length: float, v0: float, vmax: float, accel: float):
        self.t0, self.s0, self.length, self.v0, self.a = t0, s0, max(length, 0.0), v0, accel
        vmax = max(vmax, v0)
        d_acc = (vmax * vmax - v0 * v0) / (2 * accel)
        d_dec = vmax * vmax / (2 * accel)
        if d_acc + d_dec > self.length:
            vmax = max(v0, math.sqrt(max(0.0, (2 * accel * self.length + v0 * v0) / 2)))
            d_acc = (vmax * vmax - v0 * v0) / (2 * accel)
            d_dec = max(0.0, self.length - d_acc)
        self.vpk = vmax
        self.d_acc, self.d_dec = d_acc, d_dec
        self.t_acc = (vmax - v0) / accel
        self.t_cru = (self.length - d_acc - d_dec) / vmax if vmax > EPS else 0.0
        self.t_dec = vmax / accel
        self.t1 = t0 + self.t_acc + max(self.t_cru, 0.0) + self.t_dec

    def at(self, t: float) -> tuple[float, float]:
        """(distance along the block, speed mm/s) at virtual time t."""
        if t >= self.t1:
            return self.s0 + self.length, 0.0
        tau = max(0.0, t - self.t0)
        a, v0, vpk = self.a, self.v0, self.vpk
        if tau <= self.t_acc:
            return self.s0 + v0 * tau + a * tau * tau / 2, v0 + a * tau
        tau -= self.t_acc
        if tau <= self.t_cru:
            return self.s0 + self.d_acc + vpk * tau, vpk
        tau -= max(self.t_cru, 0.0)
        s = self.d_acc + max(self.t_cru, 0.0) * vpk + vpk * tau - a * tau * tau / 2
        return self.s0 + min(s, self.length), max(0.0, vpk - a * tau)


class Block:
    __slots__ = ("accel", "done", "end", "jog", "length", "line", "seg", "start", "vmax")

    def __init__(self, start, end, vmax, accel, length=None, jog=False, line=None):
        self.start, self.end = list(start), list(end)
        chord = math.dist(start, end)
        self.length = chord if length is None else length
        self.vmax, self.accel, self.jog, self.line = vmax, accel, jog, line
        self.seg = None
        self.done = 0.0           # distance reached before the current segment

    def position(self, s: float) -> list:
        if self.length <= EPS:
            return list(self.end)
        f = min(1.0, s / self.length)
        return [a + (b - a) * f for a, b in zip(self.start, self.end)]


class MillMotion:
    """The planner ring (``slots`` entries hold slots-1 blocks, as grbl's does) and the stepper."""

    def __init__(self, slots: int = 16):
        self.capacity = slots - 1
        self.blocks = deque()
        self.pos = [0.0, 0.0, 0.0]     # where the last finished block ended
        self.hold = None               # None, "decel" or "held"
        self.cancel = False            # jog cancel: flush once the hold is complete
        self.blocks_done = 0

    # -- queue -----------------------------------------------------------------------
    def free(self) -> int:
        return self.capacity - len(self.blocks)

    def busy(self) -> bool:
        return bool(self.blocks)

    def push(self, block: Block, now: float) -> None:
        self.blocks.append(block)
        if len(self.blocks) == 1 and self.hold is None:
            self._start(block, now)

    @staticmethod
    def _start(block: Block, t: float) -> None:
        block.seg = Segment(t, block.done, block.length - block.done, 0.0, block.vmax, block.accel)

    # -- time ------------------------------------------------------------------------
    def update(self, now: float) -> None:
        blocks = self.blocks
        while blocks:
            b = blocks[0]
            if b.seg is None or b.seg.t1 > now:
                return
            t1 = b.seg.t1
            if self.hold == "decel":
                b.done, _ = b.seg.at(t1)
                b.seg = None
                self.hold = "held"
                if self.cancel:
                    self._flush(b)
                return
            blocks.popleft()
            self.blocks_done += 1
            self.pos = list(b.end)
            if blocks and self.hold is None:
                self._start(blocks[0], t1)

    def next_deadline(self) -> float | None:
        if self.blocks and self.blocks[0].seg is not None:
            return self.blocks[0].seg.t1
        return None

    def position(self, now: float) -> list:
        self.update(now)
        if not self.blocks:
            return list(self.pos)
        b = self.blocks[0]
        s = b.seg.at(now)[0] if b.seg is not None else b.done
        return b.position(s)

    def rate(self, now: float) -> float:
        """Current speed, mm/min."""
        self.update(now)
        if self.blocks and self.blocks[0].seg is not None:
            return self.blocks[0].seg.at(now)[1] * 60.0
        return 0.0

    # -- hold, resume, stop ------------------------------------------------------------
    def feed_hold(self, now: float) -> None:
        self.update(now)
        if self.hold is not None:
            return
        if not self.blocks or self.blocks[0].seg is None:
            self.hold = "held"
            return
        b = self.blocks[0]
        s, v = b.seg.at(now)
        if v <= EPS:
            b.done, b.seg, self.hold = s, None, "held"
            return
        stop = min(v * v / (2 * b.accel), b.length - s)
        b.seg = Segment(now, s, stop, v, v, b.accel)
        self.hold = "decel"

    def resume(self, now: float) -> bool:
        """Cycle start: only once the hold is complete (Hold:0)."""
        self.update(now)
        if self.hold != "held":
            return False
        self.hold = None
        if self.blocks:
            self._start(self.blocks[0], now)
        return True

    def jog_cancel(self, now: float) -> None:
        self.cancel = True
        self.feed_hold(now)
        if self.hold == "held":
            self._flush(self.blocks[0] if self.blocks else None)

    def _flush(self, current) -> None:
        if current is not None:
            self.pos = current.position(current.done)
        self.blocks.clear()
        self.hold = None
        self.cancel = False

    def stop(self, now: float) -> list:
        """Reset: the steppers stop where they are; every block is dropped."""
        self.pos = self.position(now)
        self.blocks.clear()
        self.hold = None
        self.cancel = False
        return list(self.pos)
