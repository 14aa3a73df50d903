"""`ismctl home`, `ismctl jog`, `ismctl unlock`: the mill operator's grbl commands.

Each is a tiny job on the cell's mill whose program is one grbl system line
(``$H``, ``$J=...``, ``$X``): it is queued, recorded and audited like any other
job, waits its turn behind running work, and the mill driver sends ``$`` lines
alone once grbl is idle (docs/mill-driver.md).  The command waits for the job
to end and exits 0 when it completed, 1 with grbl's reason when it did not.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOCAL_COMMANDS = ()
DEFAULT_JOG_FEED = 500.0  # mm/min
WAIT_S = 300.0  # a homing cycle on a large machine takes a minute or two
_AXIS_WORD = re.compile(r"([XYZ])([+-]?(?:\d+\.?\d*|\.\d+))", re.IGNORECASE)

HOME_EPILOG = """\
examples:
  ismctl home                          home the cell's mill ($H; needs homing enabled, $22=1)
  ismctl home --device mill2           another mill of the cell
"""
JOG_EPILOG = """\
examples:
  ismctl jog X10 Y-2 --feed 500        move 10 mm in +X and 2 mm in -Y at 500 mm/min
  ismctl jog Z5                        lift 5 mm (default feed 500 mm/min)
  ismctl jog X-50 Y-50 --absolute      go to X-50 Y-50 in work coordinates
grbl refuses a jog past the machine's travel (error:15) when soft limits are on.
"""
UNLOCK_EPILOG = """\
examples:
  ismctl unlock                        $X: clear the alarm lock without homing
Use it after an alarm that kept the machine position (a soft limit, a cancelled
job); after a hard limit or a reset in motion, home instead.
"""


def _cell_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="the mill's name in the cell config (default: the cell's first mill)")
    p.add_argument("--config", type=Path, help="cell config (TOML); default: $ISMCTL_CONFIG or ./configs/demo-cell.toml")
    p.add_argument("--state-dir", type=Path, help="where the database, logs and sockets live (default: from the config)")
    p.add_argument("--json", action="store_true", help="print the finished job as JSON")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the supervisor to answer (default 5)")


def add_parsers(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("home", help="home the mill ($H) and wait for it", epilog=HOME_EPILOG, formatter_class=fmt,
                       description="Run grbl's homing cycle on the mill: each axis seeks its switch and pulls off; "
                                   "machine position is then known and the alarm lock is cleared.")
    _cell_options(p)
    p = sub.add_parser("jog", help="jog the mill ($J=...) and wait for it", epilog=JOG_EPILOG, formatter_class=fmt,
                       description="Move the mill with grbl's jog command: relative to where it is (default), or to "
                                   "work coordinates with --absolute. Distances in mm.")
    p.add_argument("axes", nargs="+", metavar="AXIS", help="axis words: X10 Y-2 Z0.5 (each axis once)")
    p.add_argument("--feed", type=_positive, default=DEFAULT_JOG_FEED, metavar="MM/MIN", help=f"jog feed rate (default {DEFAULT_JOG_FEED:g})")
    p.add_argument("--absolute", action="store_true", help="the axis words are a target in work coordinates (G90)")
    _cell_options(p)
    p = sub.add_parser("unlock", help="clear the mill's alarm lock ($X)", epilog=UNLOCK_EPILOG, formatter_class=fmt,
                       description="Send grbl's kill-alarm-lock ($X): the mill takes G-code again without homing.")
    _cell_options(p)


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def jog_line(words: list[str], feed: float, absolute: bool = False) -> str:
    """``["X10", "y-2"], 500`` -> ``$J=G91 G21 X10 Y-2 F500``; ValueError names a bad word."""
    axes = {}
    for word in words:
        m = _AXIS_WORD.fullmatch(word.strip())
        if m is None:
            raise ValueError(f"{word!r} is not an axis word (X, Y or Z and a distance, e.g. X10 or Z-0.5)")
        axis = m.group(1).upper()
        if axis in axes:
            raise ValueError(f"{axis} given twice ({axes[axis]} and {word})")
        axes[axis] = f"{axis}{float(m.group(2)):g}"
    mode = "G90" if absolute else "G91"
    return f"$J={mode} G21 {' '.join(axes[a] for a in 'XYZ' if a in axes)} F{feed:g}"


def _mill(args) -> str:
    """The device the command targets: --device, else the cell's first mill."""
    from .cli import _config

    config = _config(args)
    if args.device:
        device = config.devices.get(args.device)
        if device is None or device.device_class != "mill":
            raise LookupError(f"{args.device!r} is not a mill of cell {config.name} (mills: {', '.join(_mills(config)) or 'none'})")
        return args.device
    mills = _mills(config)
    if not mills:
        raise LookupError(f"cell {config.name} has no mill ({config.path})")
    return mills[0]


def _mills(config) -> list[str]:
    return [name for name, dev in config.devices.items() if dev.device_class == "mill"]


def _run(args, what: str, line: str) -> int:
    """Queue ``line`` as a one-line job on the mill, wait for it to end, say how it went."""
    from .cli import _client, _show

    try:
        device = _mill(args)
    except LookupError as exc:
        print(f"ismctl {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client = _client(args)
    reply = client.call("submit", name=f"{args.command}: {line}", gcode=line + "\n", device=device)
    if not args.json:
        print(f"{what} {device} (job {reply['job']}: {line})", flush=True)
    job = _wait_for_end(client, reply["job"])
    _show(args, job, lambda j: print(f"{args.command}: {j['state']}" + (f": {j['reason']}" if j.get("reason") else "")))
    return EXIT_OK if job["state"] == "completed" else EXIT_FAILED


def _wait_for_end(client, job_id: int) -> dict:
    from .watch import ended

    deadline = time.monotonic() + WAIT_S
    while True:
        job = client.call("job", job=job_id)["job"]
        if ended(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def cmd_home(args) -> int:
    return _run(args, "homing", "$H")


def cmd_unlock(args) -> int:
    return _run(args, "unlocking", "$X")


def cmd_jog(args) -> int:
    try:
        line = jog_line(args.axes, args.feed, args.absolute)
    except ValueError as exc:
        print(f"ismctl jog: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _run(args, "jogging", line)


COMMANDS = {"home": cmd_home, "jog": cmd_jog, "unlock": cmd_unlock}
