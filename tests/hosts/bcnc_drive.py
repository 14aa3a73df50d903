"""bCNC, an independent grbl host, drives a grbl board headless with its own code.

Run by the Python of a virtualenv that has bCNC installed (``pip install bCNC``);
it prints one JSON line with what bCNC's controller parsed (bCNC's own prints go
to stderr) and exits 0, or 1 with ``{"failed": why}``.  Everything on the
wire is bCNC's: ``Sender.open`` (pyserial ``serial_for_url``, DTR toggle, two
newlines), the ``Sender.serialIO`` thread (``?`` every 0.125 s, character
counting against ``RX_BUFFER_SIZE = 128``), the ``GRBL1`` controller's
``parseLine``/``parseBracketAngle``/``parseBracketSquare``, its soft reset,
``$$``/``$G``/``$I``, feed hold, resume, the post-job purge and ``Sender.close``.
The program goes through ``GCode.load`` and ``GCode.compile`` into bCNC's queue.

bCNC's GUI class (``bmain.Application``, a Tk window) is not created.  This
script stands in for its non-widget parts only: ``run`` is the queue-filling
body of ``Application.run`` and ``pump`` the bookkeeping of
``Application._monitorSerial`` (drain the log, ``_pause`` follows a Hold state,
end the run once every queued line is answered); ``disable``/``enable`` grey out
widgets there and do nothing here.

    bcnc-venv/bin/python tests/hosts/bcnc_drive.py /dev/pts/5 program.nc
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import time
from queue import Empty


def import_bcnc():
    """Put bCNC's module folders on sys.path as its ``__main__`` does, then import."""
    spec = importlib.util.find_spec("bCNC")
    if spec is None:
        sys.exit("bCNC is not installed in this Python: pip install bCNC==0.9.16")
    root = os.path.dirname(spec.origin)
    sys.path += [root] + [os.path.join(root, d) for d in ("lib", "plugins", "controllers")]
    import Helpers  # noqa: F401  (installs gettext's _ as bCNC's modules expect)
    import Utils
    Utils.loadConfiguration()
    import CNC
    import Sender
    return Sender, CNC


with contextlib.redirect_stdout(sys.stderr):   # bCNC prints its chatter; stdout is the JSON
    SenderModule, CNCModule = import_bcnc()
CNC, WAIT = CNCModule.CNC, CNCModule.WAIT
Sender = SenderModule.Sender


class HeadlessSender(Sender):
    """bCNC's Sender without the Tk window that normally inherits it."""

    def __init__(self):
        super().__init__()
        self.states: list[str] = []       # every state change bCNC's controller reported
        self.sent: list[str] = []         # lines bCNC logged as written (MSG_BUFFER)
        self.errors: list[str] = []       # MSG_ERROR: error:/ALARM: replies, exceptions
        self.unrecognised: list[str] = []  # received lines no parser of bCNC took
        self.answers = 0                  # ok/error replies, counted from bCNC's log
        self.banners = 0                  # "Grbl 1.1h ..." welcome lines received
        self.jobs_done = 0

    # -- what bmain.Application provides to Sender and the controllers ------------
    def disable(self):
        pass

    def enable(self):
        pass

    def checkStop(self):
        return self._stop

    def controllerStateChange(self, state):
        self.states.append(state)
        super().controllerStateChange(state)

    def jobDone(self):
        super().jobDone()
        self.jobs_done += 1

    def pump(self):
        """The non-widget part of ``Application._monitorSerial``."""
        while True:
            try:
                msg, line = self.log.get_nowait()
            except Empty:
                break
            line = str(line).rstrip("\n")
            if msg == Sender.MSG_BUFFER:
                self.sent.append(line)
            elif msg in (Sender.MSG_OK, Sender.MSG_ERROR):
                self.answers += 1
                if msg == Sender.MSG_ERROR:
                    self.errors.append(line)
            elif msg == Sender.MSG_RECEIVE and line.startswith("Grbl"):
                self.banners += 1
            elif msg == Sender.MSG_RECEIVE and line[:1] not in ("[", "$", "<"):
                self.unrecognised.append(line)
        if self._posUpdate:
            self._pause = "Hold" in CNC.vars["state"]
            self._posUpdate = False
        if self.running and self._gcount >= self._runLines:
            self.runEnded()

    def wait(self, condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not condition():
            if self.errors:   # bCNC stops feeding a run at an error but never ends it
                raise RuntimeError(f"bCNC: grbl answered {self.errors[0]!r} to {CNC.vars['errline'].strip()!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"bCNC: {what} within {timeout:g} s (state {CNC.vars['state']!r})")
            time.sleep(0.01)
            self.pump()

    def command(self, line: str, timeout: float = 10.0):
        """Queue one line as bCNC's buttons do and wait for its ok/error."""
        answered = self.answers
        self.sendGCode(line)
        self.wait(lambda: self.answers > answered, timeout, f"no answer to {line!r}")

    def run(self):
        """The queue-filling body of ``Application.run`` (canvas and status bar left out)."""
        self.cleanAfter = True
        CNC.vars["errline"] = ""
        self.initRun()
        self._runLines = sys.maxsize
        self._gcount = 0
        CNC.vars["running"] = True
        CNC.vars["_OvChanged"] = True
        self._paths = self.gcode.compile(self.queue, self.checkStop)
        if not self._paths:
            raise RuntimeError("bCNC compiled no G-code from the program")
        self._runLines = len(self._paths) + 1
        self.queue.put((WAIT,))


def position(prefix: str) -> list[float]:
    return [CNC.vars[prefix + axis] for axis in "xyz"]


def drive(args) -> dict:
    bcnc = HeadlessSender()
    bcnc.load(args.program)
    bcnc.open(args.port, 115200)
    try:
        bcnc.softReset()
        bcnc.wait(lambda: bcnc.banners and CNC.vars["state"] == "Idle", 10,
                  "no welcome banner and Idle report after the soft reset")
        bcnc.command("$$")
        bcnc.command("$I")
        bcnc.command("$G")
        bcnc.run()
        hold = {}
        bcnc.wait(lambda: bcnc._gcount >= args.hold_after and CNC.vars["state"] == "Run", args.timeout,
                  f"not running after {args.hold_after} answers")
        hold["answered_at_hold"] = bcnc._gcount
        bcnc.feedHold()
        bcnc.wait(lambda: CNC.vars["state"] == "Hold:0", 10, "the hold never completed")
        hold["states_after_hold"] = bcnc.states[-2:]
        hold["position_held"] = position("m")
        bcnc.resume()
        bcnc.wait(lambda: not bcnc.running, args.timeout, "the run never ended")
        bcnc.wait(lambda: bcnc.jobs_done and CNC.vars["state"] == "Idle" and bcnc.queue.empty(), 30,
                  "the post-job purge never finished")
        result = {
            "version": CNC.vars["version"],
            "build": [CNC.vars.get("VER"), CNC.vars.get("OPT")],
            "settings": {k[5:]: v for k, v in CNC.vars.items() if k.startswith("grbl_")},
            "parser_state": CNC.vars["G"],
            "tlo": CNC.vars["TLO"],
            "hold": hold,
            "state": CNC.vars["state"],
            "mpos": position("m"),
            "wpos": position("w"),
            "wco": position("wco"),
            "buffer": [CNC.vars["planner"], CNC.vars["rxbytes"]],
        }
    finally:
        bcnc.close()
        bcnc.pump()
    return {**result, "states": bcnc.states, "banners": bcnc.banners, "answers": bcnc.answers,
            "errors": bcnc.errors, "unrecognised": bcnc.unrecognised, "alarm": bcnc._alarm,
            "sent": bcnc.sent}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Drive a grbl 1.1 board with bCNC's own Sender and GRBL1 controller, no GUI: "
                    "reset, read $$/$I/$G, run a G-code file, feed hold and resume once, close; "
                    "print what bCNC parsed as one JSON line.",
        epilog="example: /tmp/bcnc-venv/bin/python tests/hosts/bcnc_drive.py /dev/pts/5 part.nc")
    ap.add_argument("port", help="serial device or pyserial URL (a pty, socket://host:port)")
    ap.add_argument("program", help="G-code file, loaded with bCNC's GCode.load")
    ap.add_argument("--hold-after", type=int, default=100, help="feed hold once this many lines are answered")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds for the run")
    args = ap.parse_args(argv)
    if not os.path.isfile(args.program):
        ap.error(f"no such G-code file: {args.program}")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = drive(args)
    except (TimeoutError, RuntimeError, OSError) as exc:
        print(json.dumps({"failed": str(exc), "state": CNC.vars["state"]}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
