"""What the simulators' command lines share: option types, the address line,
faults, the executed-command log and the port, built the same way for each."""

from __future__ import annotations

import argparse

from .clock import VirtualClock, parse_speed
from .faults import LineFaults
from .marlin import ExecLog
from .serial_port import PtyPort, TcpPort


def host_port(text: str) -> tuple:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 127.0.0.1:0")
    return host or "127.0.0.1", int(port)


def rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a probability within 0..1")
    return value


def speed(text: str) -> float:
    try:
        return parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def announce(text: str) -> None:
    try:
        print(text, flush=True)
    except (BrokenPipeError, ValueError):
        pass


class TimedExecLog(ExecLog):
    """Exec log whose lines start with the virtual time the command started at."""

    def __init__(self, path: str, clock: VirtualClock):
        super().__init__(path)
        self.clock = clock

    def write(self, text: str) -> None:
        super().write(f"{self.clock.now():.6f} {text}")


def open_link(args: argparse.Namespace, clock: VirtualClock):
    """Faults, exec log and port from the shared options; the port's address is announced.

    Returns ``(faults, exec_log or None, port)``.
    """
    faults = LineFaults(args.seed, args.corrupt_rate, args.drop_rate, args.disconnect_rate, args.disconnect_after)
    exec_log = None
    if args.exec_log:
        exec_log = TimedExecLog(args.exec_log, clock) if args.exec_log_times else ExecLog(args.exec_log)
    port = TcpPort(announce, *args.tcp) if args.tcp else PtyPort(announce, args.link)
    announce(port.address)
    return faults, exec_log, port
