"""grbl 1.1h CNC mill simulator: ``python -m firmware_sim.mill``.

Wires the pieces together (clock, port, faults, settings file, grbl protocol)
from the command line and runs the shared event loop until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from . import loop
from .clock import VirtualClock
from .grbl import GrblFirmware, Settings
from .sim_cli import add_link_options, open_link

EPILOG = """\
The first line on stdout is where to connect: a pty path such as /dev/pts/5,
or socket://HOST:PORT with --tcp.  SIGUSR1 is the same as sending 0x18 (soft
reset); SIGINT/SIGTERM exit cleanly with 0.  Replies end in CR LF, as grbl's.

Example session (what you type on the left, what grbl answers on the right):

  $ python -m firmware_sim.mill --speed 10 --link /tmp/mill &
  /dev/pts/7
  $ python -m serial.tools.miniterm --eol CRLF /tmp/mill 115200
                             -> (empty line) Grbl 1.1h ['$' for help]
  ?                          -> <Idle|MPos:0.000,0.000,0.000|FS:0,0|WCO:0.000,0.000,0.000>
  G1 X-10 F600               -> ok            (a block in the planner; '?' shows Run)
  G4                         -> error:28      (value word missing: G4 needs P)
  $22=1  then  $20=1         -> ok, ok        (soft limits need homing enabled)
  G0 X5                      -> ALARM:2  [MSG:Reset to continue]   (travel is 0..-200)
  Ctrl-X                     -> Grbl 1.1h ['$' for help]  [MSG:'$H'|'$X' to unlock]
  $X                         -> [MSG:Caution: Unlocked]  ok
  $H                         -> ok after the timed homing cycle; MPos -1,-1,-1

Real-time bytes (never enter the 128-byte RX buffer): ? status, ! feed hold,
~ cycle start, 0x18 reset, 0x85 jog cancel, 0x90-0x9D overrides.
Stream with character counting (keep unacknowledged bytes below 128) or
send-and-wait: a host that sends more overflows the RX buffer, and the bytes
are lost as on a real board (counted, see --stats).
See docs/mill-simulator.md for the protocol coverage and what is not modelled.
"""


def _nonnegative(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("need a number >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m firmware_sim.mill",
        description="Simulated grbl 1.1h CNC mill firmware on a pseudo-terminal or TCP "
                    "port: grbl's line protocol, real-time bytes, settings, alarms and "
                    "status reports byte for byte, a 128-byte RX buffer and a 16-slot "
                    "planner timed on a virtual clock, with seeded fault injection.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    link, sim, faults = add_link_options(p)
    sim.add_argument("--settings", metavar="FILE",
                     help="the EEPROM: $N settings, G54-G59, G28/G30 and $N lines are "
                          "read from and written to FILE (JSON), so they survive a "
                          "restart. Default: a file in the temp directory, removed on exit")
    sim.add_argument("--spinup", type=_nonnegative, default=0.0, metavar="SEC",
                     help="virtual seconds M3/M4 waits for the spindle to reach speed "
                          "before its ok (default 0, as grbl)")
    sim.add_argument("--stats", metavar="FILE",
                     help="on exit write the counters (lines, ok, errors, alarms, "
                          "rx_overflows, rx_overflow_bytes, ...) to FILE as JSON")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    clock = VirtualClock(args.speed)
    temp_settings = None
    settings_path = args.settings
    if settings_path is None:
        temp_settings = settings_path = os.path.join(
            tempfile.gettempdir(), f"ismctl-mill-{os.getpid()}.settings.json")
    settings = Settings(settings_path)
    faults, exec_log, port = open_link(args, clock)
    firmware = GrblFirmware(clock, settings, faults, exec_log, spinup=args.spinup)
    try:
        loop.run_until_signalled(firmware, port, clock, firmware.soft_reset)
    finally:
        port.close()
        if exec_log is not None:
            exec_log.close()
        if args.stats:
            with open(args.stats, "w") as f:
                json.dump({**firmware.get_status(), "faults": faults.get_status()}, f)
        if temp_settings and os.path.exists(temp_settings):
            os.unlink(temp_settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
