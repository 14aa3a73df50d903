"""Helpers for tests that drive a simulator as a real subprocess over a real port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from functools import reduce
from operator import xor
from pathlib import Path

import serial

REPO = Path(__file__).resolve().parents[1]


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
