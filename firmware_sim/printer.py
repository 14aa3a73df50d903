"""Marlin-compatible FDM printer simulator: ``python -m firmware_sim.printer``.

Wires the pieces together (clock, port, faults, heaters, planner, Marlin
protocol) from the command line and runs the event loop until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import sys

from . import loop
from .clock import VirtualClock
from .faults import ReplyNoise, ThermalFault
from .marlin import MarlinFirmware
from .motion import MotionConfig, Planner
from .sim_cli import add_link_options, open_link, rate
from .thermal import ThermalManager

EPILOG = """\
The first line on stdout is where to connect: a pty path such as /dev/pts/5,
or socket://HOST:PORT with --tcp.  Each time the link is re-created (see
--disconnect-*) the new pty path is printed on its own line; --link keeps a
stable symlink to it.  SIGUSR1 presses the reset button (prints "start" and the
banner again, line numbers back to 0); SIGINT/SIGTERM exit cleanly with 0.

Example session:

  $ python -m firmware_sim.printer --speed 50 --link /tmp/printer &
  /dev/pts/7
  $ python -m serial.tools.miniterm /tmp/printer
  start
  echo:Marlin 2.1.2.1
  ...
  M105                       -> ok T:25.0 /0.0 B:25.0 /0.0 T0:25.0 /0.0 @:0 B@:0
  N1 M109 S200*107           -> " T:..  W:?" lines every second, echo:busy: processing
                                every 2 virtual s, then ok after about 100 virtual s
  N2 G1 X10 Y5 F3000*122     -> ok

Line framing is Marlin's: "N<n> <command>*<xor of the bytes before *>".
Fault injection is seeded: the same --seed and the same bytes give the same
faults.  See docs/printer-simulator.md for the protocol and physics details.
"""


def _axis_list(text: str) -> list:
    values = [float(v) for v in text.split(",")]
    if len(values) != 4 or min(values) <= 0:
        raise argparse.ArgumentTypeError("need 4 positive numbers: X,Y,Z,E")
    return values


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("need a positive number")
    return value


def _thermal_fault(text: str) -> ThermalFault:
    try:
        return ThermalFault.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m firmware_sim.printer",
        description="Simulated Marlin 2.1 printer firmware on a pseudo-terminal or TCP port: "
                    "Marlin's line protocol byte for byte, heaters with PID and thermal "
                    "protection, trapezoidal motion, all on a virtual clock, with seeded "
                    "fault injection.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    link, sim, faults = add_link_options(p)
    link.add_argument("--advanced-ok", action="store_true",
                      help="answer 'ok N<line> P<planner free> B<queue free>' (ADVANCED_OK)")
    sim.add_argument("--busy-interval", type=float, default=2.0, metavar="SEC",
                     help="'echo:busy: processing' interval during long commands, "
                          "virtual seconds (default 2, 0 disables; M113 S changes it)")
    sim.add_argument("--ambient", type=float, default=25.0, metavar="C",
                     help="ambient and start temperature of the heaters (default 25)")
    sim.add_argument("--max-feedrate", type=_axis_list, metavar="X,Y,Z,E",
                     help="max feedrate mm/s (default 300,300,5,25)")
    sim.add_argument("--max-accel", type=_axis_list, metavar="X,Y,Z,E",
                     help="max acceleration mm/s^2 (default 3000,3000,100,10000)")
    sim.add_argument("--accel", type=_positive, metavar="MM/S2",
                     help="print acceleration, M204 P (default 3000)")
    sim.add_argument("--retract-accel", type=_positive, metavar="MM/S2",
                     help="retract acceleration for E-only moves, M204 R (default 3000)")
    sim.add_argument("--travel-accel", type=_positive, metavar="MM/S2",
                     help="travel acceleration for moves without E, M204 T (default 3000)")
    sim.add_argument("--junction-deviation", type=_positive, metavar="MM",
                     help="junction deviation mm, M205 J (default 0.013)")
    faults.add_argument("--reply-noise", type=rate, default=0.0, metavar="P",
                        help="probability that a line the firmware sends has one bit of "
                             "one byte flipped on the way to the host (an ok, a Resend: "
                             "number, a temperature report...)")
    faults.add_argument("--thermal-fault", type=_thermal_fault, action="append", default=[],
                        metavar="AT[:hotend|bed[:heater|sensor]]",
                        help="at virtual second AT the heater stops heating (default; "
                             "thermal protection then trips) or its thermistor opens "
                             "(MINTEMP). Repeatable")
    return p


def motion_config(args: argparse.Namespace) -> MotionConfig:
    """The planner's limits: MotionConfig's defaults, overridden by the motion options."""
    names = ("max_feedrate", "max_accel", "accel", "retract_accel", "travel_accel",
             "junction_deviation")
    return MotionConfig(**{name: getattr(args, name) for name in names
                           if getattr(args, name) is not None})


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.busy_interval < 0:
        raise SystemExit("--busy-interval must be >= 0")
    clock = VirtualClock(args.speed)
    thermal = ThermalManager(ambient=args.ambient)
    for fault in args.thermal_fault:
        thermal.schedule_fault(fault.at, fault.heater, fault.kind)
    faults, exec_log, port = open_link(args, clock)
    firmware = MarlinFirmware(clock, thermal, Planner(motion_config(args)), faults, exec_log,
                              advanced_ok=args.advanced_ok, busy_interval=args.busy_interval,
                              reply_noise=ReplyNoise(args.seed, args.reply_noise))
    try:
        loop.run_until_signalled(firmware, port, clock, firmware.reset)
    finally:
        port.close()
        if exec_log is not None:
            exec_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
