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


def add_link_options(p: argparse.ArgumentParser):
    """The options :func:`open_link` reads (port, speed, exec log, line faults), in the
    groups both simulators show; returns the (connection, simulation, faults) groups
    so each simulator adds its own options beside them."""
    link = p.add_argument_group("connection")
    link.add_argument("--tcp", metavar="HOST:PORT", type=host_port,
                      help="serve TCP instead of a pty (port 0 picks a free one); prints "
                           "socket://HOST:PORT. One client at a time; the firmware keeps "
                           "running across clients")
    link.add_argument("--link", metavar="PATH",
                      help="keep a symlink PATH -> current pty slave (replaced atomically "
                           "when the pty is re-created, removed on exit)")
    sim = p.add_argument_group("simulation")
    sim.add_argument("--speed", type=speed, default=1.0, metavar="FACTOR|max",
                     help="virtual seconds per real second (default 1). 'max' never "
                          "waits: virtual time jumps to the next event whenever the "
                          "firmware waits on itself, and stands still while it waits "
                          "for the host")
    sim.add_argument("--exec-log", metavar="FILE",
                     help="append every executed command (as the firmware runs it, "
                          "without line number, checksum or line end) to FILE")
    sim.add_argument("--exec-log-times", action="store_true",
                     help="start each exec-log line with the virtual time in seconds, "
                          "e.g. '12.500000 G1 X5'")
    faults = p.add_argument_group("fault injection (seeded)")
    faults.add_argument("--seed", type=int, default=0, help="fault seed (default 0)")
    faults.add_argument("--corrupt-rate", type=rate, default=0.0, metavar="P",
                        help="probability that a received line has one bit flipped")
    faults.add_argument("--drop-rate", type=rate, default=0.0, metavar="P",
                        help="probability that a received line vanishes (no reply)")
    faults.add_argument("--disconnect-after", type=int, metavar="N",
                        help="pull the cable once, right after the Nth received line")
    faults.add_argument("--disconnect-rate", type=rate, default=0.0, metavar="P",
                        help="probability per received line that the cable is pulled "
                             "after it. The firmware keeps its state; a new pty is "
                             "created and its path printed (TCP: the client is closed)")
    return link, sim, faults


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
