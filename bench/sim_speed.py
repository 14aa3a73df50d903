"""Printer simulator throughput: lines/s at --speed max, through a real pty.

    python bench/sim_speed.py [--lines 20000] [--repeat 3] [--windows 1,8]

Starts ``python -m firmware_sim.printer --speed max``, opens its pty raw and
streams framed G1 lines (``N<n> G1 X.. Y.. E.. F..*cs``, ~40 bytes) keeping W
lines unacknowledged (W=1: ping-pong; W=8: sending ahead), counting ``ok``.
Also times the firmware in-process (receive + service, no pty, no host) on the
same lines, in CPU seconds: that is the simulator's own cost per line.  Prints the best of
``--repeat`` runs per row (the host shares the CPU with the simulator, so the
best run is the least disturbed one).  A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import termios
import time
import tty
from functools import reduce
from operator import xor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_lines(n: int) -> list[bytes]:
    """n framed G1 moves (numbered from 1) after an M110 N0 and a G28-free setup."""
    out = []
    for i in range(1, n + 1):
        body = f"N{i} G1 X{10 + i % 180 * 0.5:.2f} Y{20 + i % 97 * 0.7:.2f} E{i * 0.01:.3f} F3000"
        out.append(f"{body}*{reduce(xor, body.encode(), 0)}\n".encode())
    return out


def run_pty(lines: list[bytes], window: int) -> float:
    """Lines/s through the simulator's pty with ``window`` lines in flight."""
    proc = subprocess.Popen([sys.executable, "-m", "firmware_sim.printer", "--speed", "max"],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        path = proc.stdout.readline().strip()
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        termios.tcflush(fd, termios.TCIFLUSH)
        buf = b""
        # wait for the banner (delivered shortly after the open)
        deadline = time.monotonic() + 10
        while b"Hardcoded" not in buf:
            if time.monotonic() > deadline:
                raise SystemExit("no banner from the simulator")
            if select.select([fd], [], [], 0.5)[0]:
                buf += os.read(fd, 65536)
        m110 = b"N0 M110 N0*" + str(reduce(xor, b"N0 M110 N0", 0)).encode() + b"\n"
        os.write(fd, m110)
        buf = b""
        while b"ok" not in buf:
            buf += os.read(fd, 65536)
        total = len(lines)
        sent = acked = 0
        pending = b""
        t0 = time.perf_counter()
        while acked < total:
            k = min(window - (sent - acked), total - sent)
            if k > 0:
                os.write(fd, b"".join(lines[sent:sent + k]))
                sent += k
            data = pending + os.read(fd, 65536)
            *complete, pending = data.split(b"\n")
            for line in complete:
                if line.startswith(b"ok"):
                    acked += 1
                elif line.startswith((b"Error", b"Resend")):
                    raise SystemExit(f"simulator rejected a line: {line!r}")
        elapsed = time.perf_counter() - t0
        os.close(fd)
        return total / elapsed
    finally:
        proc.terminate()
        proc.wait(10)


def run_in_process(lines: list[bytes]) -> float:
    """Lines per CPU second of the firmware alone: receive + service per line."""
    from firmware_sim.clock import VirtualClock
    from firmware_sim.marlin import MarlinFirmware
    from firmware_sim.motion import MotionConfig, Planner
    from firmware_sim.thermal import ThermalManager

    clock = VirtualClock(float("inf"))
    fw = MarlinFirmware(clock, ThermalManager(), Planner(MotionConfig()))
    fw.take_output()
    fw.receive(b"N0 M110 N0*" + str(reduce(xor, b"N0 M110 N0", 0)).encode() + b"\n")
    fw.service()
    fw.take_output()
    t0 = time.process_time()            # CPU time: less disturbed by other load
    for line in lines:
        fw.receive(line)
        fw.service()
        while fw.blocked():                 # the event loop's jump at max speed
            deadline = fw.next_deadline()
            clock.jump_to(deadline)
            fw.service()
        fw.take_output()
    elapsed = time.process_time() - t0
    if fw.last_n != len(lines):
        raise SystemExit(f"in-process run stopped at line {fw.last_n}")
    return len(lines) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--windows", default="1,8", help="lines in flight, comma-separated")
    args = ap.parse_args()
    lines = make_lines(args.lines)
    print(f"{args.lines} G1 lines of ~{sum(map(len, lines)) // len(lines)} bytes, "
          f"best of {args.repeat}, {os.cpu_count()} CPUs")
    print(f"{'host behaviour':<36} {'lines/s':>9} {'us/line':>8}")
    rows = [(f"{w} line{'s' if w > 1 else ''} in flight (pty)", lambda w=w: run_pty(lines, w))
            for w in (int(x) for x in args.windows.split(","))]
    rows.append(("in-process (no pty, no host, CPU s)", lambda: run_in_process(lines)))
    for name, fn in rows:
        best = max(fn() for _ in range(args.repeat))
        print(f"{name:<36} {best:>9,.0f} {1e6 / best:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
