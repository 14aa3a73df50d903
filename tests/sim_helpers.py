"""Helpers for tests that drive a simulator as a real subprocess over a real port."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from functools import reduce
from operator import xor
from pathlib import Path

import pytest
import serial

REPO = Path(__file__).resolve().parents[1]


def need_outside_tool(available: bool, what: str, install: str) -> None:
    """Skip the calling test module when an outside tool is missing, naming how to install it;
    under ISMCTL_CI=1 (.ci/run, which installs them all) fail instead, so CI never skips one silently."""
    if available:
        return
    if os.environ.get("ISMCTL_CI"):
        pytest.fail(f"{what} is required in CI: {install}", pytrace=False)
    pytest.skip(f"{what} not available: {install}", allow_module_level=True)


def checksum(text: str) -> int:
    return reduce(xor, text.encode("latin-1"), 0)


def framed(n: int, command: str) -> str:
    """``N<n> <command>*<checksum>`` as a Marlin host sends it (no newline)."""
    body = f"N{n} {command}"
    return f"{body}*{checksum(body)}"


class Sim:
    """A running ``python -m firmware_sim.printer`` and one connection to it."""

    def __init__(self, *args: str, module: str = "firmware_sim.printer", connect=True):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError("simulator did not start: " + self.proc.stderr.read())
        self.port = self.open(self.address) if connect else None
        self.n = 0

    @staticmethod
    def open(address: str, timeout: float = 5.0):
        if address.startswith("socket://"):
            return serial.serial_for_url(address, timeout=timeout)
        return serial.Serial(address, 115200, timeout=timeout)

    def write_line(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode("latin-1")
        self.port.write(data + b"\n")

    def send(self, command: str) -> None:
        """Send the next numbered, checksummed line."""
        self.n += 1
        self.write_line(framed(self.n, command))

    def readline(self, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            buf += self.port.readline()
            if buf.endswith(b"\n"):
                return buf[:-1].decode("latin-1")
        raise TimeoutError(f"no complete line within {timeout}s (got {buf!r})")

    def read_until(self, predicate, timeout: float = 10.0) -> list[str]:
        """Lines up to and including the first one for which predicate(line) holds."""
        deadline = time.monotonic() + timeout
        lines = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"condition not met; got {lines!r}")
            line = self.readline(left)
            lines.append(line)
            if predicate(line):
                return lines

    def until_ok(self, timeout: float = 10.0) -> list[str]:
        return self.read_until(lambda line: line.startswith("ok"), timeout)

    def command(self, command: str, timeout: float = 10.0) -> list[str]:
        """Send a numbered command and return its reply lines up to its ok."""
        self.send(command)
        return self.until_ok(timeout)

    def read_banner(self) -> list[str]:
        return self.read_until(lambda line: line.startswith("echo:Hardcoded"))

    def stop(self) -> int:
        if self.port is not None:
            self.port.close()
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(10)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# -- motion time: the estimate against the simulator's virtual clock -------------------

_MOVE = re.compile(r"[Gg]0*[0-3](?![0-9.])")


def simulated_motion_s(commands, exec_log: Path, *sim_args: str) -> float:
    """Virtual seconds the simulator (``--speed max``) takes from the start of the first move
    in ``commands`` to the end of the last one, read from its timed exec log.

    Cold extrusion is allowed first (``M302 P1``), so E moves count whether or not the
    program heats; ``sim_args`` pass machine limits (``--max-accel ...``).
    """
    moves = [i for i, c in enumerate(commands) if _MOVE.match(c)]
    if not moves:
        raise ValueError("no G0-G3 move in the program")
    first, last = moves[0], moves[-1]
    with Sim("--speed", "max", "--exec-log", str(exec_log), "--exec-log-times", *sim_args) as sim:
        sim.read_banner()
        sim.command("M302 P1")
        for command in commands[:last + 1]:
            sim.command(command, timeout=120)
        sim.command("M400", timeout=120)
        sim.command("M105")                     # runs once the last move has finished
    logged = [line.split(" ", 1) for line in exec_log.read_text().splitlines()]
    start_time, start_text = logged[1 + first]
    if start_text != commands[first] or logged[-1][1] != "M105":
        raise AssertionError(f"exec log out of step with the program at {start_text!r}")
    return float(logged[-1][0]) - float(start_time)


def check_motion_estimate(program, exec_log: Path, *sim_args: str, tolerance: float = 0.05) -> tuple[float, float]:
    """Assert that ``program``'s estimated time from its first move to its last (ops in
    between included) is within ``tolerance`` of the simulator's; -> (estimated, simulated) s."""
    moves = [i for i, c in enumerate(program.commands) if _MOVE.match(c)]
    estimated = float(program.duration_s[moves[0]:moves[-1] + 1].sum())
    simulated = simulated_motion_s(program.commands, exec_log, *sim_args)
    assert abs(estimated - simulated) <= tolerance * simulated, (
        f"estimated {estimated:.2f} s, simulator {simulated:.2f} s "
        f"({(estimated / simulated - 1) * 100:+.2f} %, allowed {tolerance * 100:g} %)")
    return estimated, simulated
