"""OctoPrint, an independent host, prints through the printer simulator's pty.

OctoPrint is a big install (~1 min, ~210 MB of venv), so it lives in its own
virtualenv named by ``ISMCTL_OCTOPRINT_PYTHON``::

    python -m venv /tmp/octo && /tmp/octo/bin/pip install octoprint
    ISMCTL_OCTOPRINT_PYTHON=/tmp/octo/bin/python pytest tests/test_octoprint.py

The host script below runs in that interpreter and drives OctoPrint's own
serial layer, ``octoprint.util.comm.MachineCom``, headless (settings in a temp
basedir, the pty in ``serial.additionalPorts``, no plugins, the default printer
profile): connect, select the file, print, wait for the end.  Everything
OctoPrint sends is its stock behaviour; the simulator's exec log must be the
file's commands exactly, plus what OctoPrint sends on its own account.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ismctl.execlog import compare_exec_log
from sim_helpers import REPO, Sim, need_outside_tool

OCTO_PYTHON = os.environ.get("ISMCTL_OCTOPRINT_PYTHON")

need_outside_tool(bool(OCTO_PYTHON), "OctoPrint", "python -m venv /tmp/octo && /tmp/octo/bin/pip install "
                  "octoprint==1.11.8, then set ISMCTL_OCTOPRINT_PYTHON=/tmp/octo/bin/python")

HOST_SCRIPT = r'''
import json, logging, os, sys, threading, time

basedir, port, gcode_file, exec_log = sys.argv[1:5]
logging.basicConfig(filename=os.path.join(basedir, "octoprint.log"), level=logging.INFO,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.getLogger("SERIAL").setLevel(logging.DEBUG)       # Send:/Recv: lines

from octoprint.settings import settings
settings(init=True, basedir=basedir)
settings().set(["serial", "additionalPorts"], [port])
import octoprint.plugin
octoprint.plugin.plugin_manager(init=True, plugin_folders=[], plugin_entry_points=[],
                                plugin_disabled_list=[], plugin_blacklist=[])
from octoprint.printer.profile import PrinterProfileManager
from octoprint.util import comm

result = {"listed": port in comm.serialList(), "errors": [], "outcome": None}
done = threading.Event()

class Callback(comm.MachineComPrintCallback):
    def on_comm_error(self, error, reason, consequence=None, faq=None, logs=None):
        result["errors"].append(f"{reason}: {error}")
    def on_comm_print_job_done(self, suppress_script=False):
        result["outcome"] = "done"; done.set()
    def on_comm_print_job_failed(self, reason=None):
        result["outcome"] = f"failed: {reason}"; done.set()
    def on_comm_print_job_cancelled(self, suppress_script=False, user=None):
        result["outcome"] = "cancelled"; done.set()

def finish(code):
    com.close()
    print(json.dumps(result), flush=True)
    sys.exit(code)

profiles = PrinterProfileManager()
profiles.select("_default")
com = comm.MachineCom(port, 115200, Callback(), profiles)
com.start()
deadline = time.monotonic() + 30
while not com.isOperational():
    if time.monotonic() > deadline or com.isError():
        result["outcome"] = f"never operational: {com.getStateString()} {com.getErrorString()}"
        finish(1)
    time.sleep(0.05)
com.selectFile(gcode_file, False)
com.startPrint()
if not done.wait(120):
    result["outcome"] = "print did not end: " + com.getStateString()
    finish(1)
# OctoPrint reports "done" when the last line has been *sent* and queues an M400;
# the job is over once the firmware has executed that M400.
deadline = time.monotonic() + 30
while True:
    with open(exec_log) as f:
        lines = f.read().splitlines()
    if lines and lines[-1] == "M400" and com.isOperational():
        break
    if time.monotonic() > deadline:
        result["outcome"] = "final M400 never executed"
        finish(1)
    time.sleep(0.05)
finish(0)
'''

# What OctoPrint sends on its own account: its hello (M110 N0, repeated until the
# firmware answers, and again at the start of a job), M115 (firmware detection),
# M21 (SD init: not in this Marlin build, "Unknown command"), M155 S2 (it saw
# Cap:AUTOREPORT_TEMP), M113 S2 (it saw echo:busy and sets the keepalive to its
# own timeout) and M105 polls; plus one M400 after the last line of a job.
OCTOPRINT_OWN = ("M110 N0", "M115", "M21", "M105")


def octoprint_command(cmd: str) -> bool:
    return cmd in OCTOPRINT_OWN or cmd.startswith(("M155 S", "M113 S"))


def part() -> list[str]:
    body = ["G28", "M104 S200", "M140 S60", "M109 S200", "M190 S60", "G92 E0", "M83",
            "M106 S255", "M117 Printing"]
    body += [f"G1 X{10 + i % 40} Y{10 + (i * 7) % 40} E0.05 F3000 ; move {i}" for i in range(290)]
    body += ["M400", "M107", "M104 S0", "M140 S0", "M84"]
    return body


@pytest.mark.parametrize("faults", [(), ("--seed", "3", "--corrupt-rate", "0.03")],
                         ids=["clean", "corrupt"])
def test_octoprint_prints_a_file_to_the_end(tmp_path, faults):
    body = part()
    gcode = tmp_path / "part.gcode"
    gcode.write_text("\n".join(body) + "\n")
    script = tmp_path / "octoprint_host.py"
    script.write_text(HOST_SCRIPT)
    basedir = tmp_path / "octoprint"
    basedir.mkdir()
    log = tmp_path / "exec.log"
    log.touch()
    with Sim("--speed", "max", "--exec-log", str(log), *faults, connect=False) as s:
        run = subprocess.run([OCTO_PYTHON, str(script), str(basedir), s.address, str(gcode), str(log)],
                             cwd=REPO, capture_output=True, text=True, timeout=240)
    assert run.stdout.strip(), f"OctoPrint host died:\n{run.stderr[-3000:]}"
    result = json.loads(run.stdout.strip().splitlines()[-1])
    serial_log = (basedir / "octoprint.log").read_text(errors="replace")
    assert run.returncode == 0 and result["outcome"] == "done", (result, serial_log[-3000:])
    assert result["errors"] == [], result
    assert result["listed"], "serial.additionalPorts did not list the pty"
    if faults:
        assert "Resend: " in serial_log                  # OctoPrint did answer resends
    executed = log.read_text().splitlines()
    assert executed[-1] == "M400"                         # OctoPrint's end-of-job M400
    program = [line.split(";")[0].strip() for line in body]
    assert compare_exec_log(program, executed[:-1], octoprint_command) == ""
