"""bCNC, an independent grbl host, runs a program on the mill simulator through its pty.

bCNC 0.9.16 pulls in OpenCV, Pillow and numpy (~300 MB of venv), so it lives in
its own virtualenv named by ``ISMCTL_BCNC_PYTHON``::

    python -m venv /tmp/bcnc-venv && /tmp/bcnc-venv/bin/pip install bCNC==0.9.16 'numpy<2'
    ISMCTL_BCNC_PYTHON=/tmp/bcnc-venv/bin/python pytest tests/test_bcnc.py

``tests/hosts/bcnc_drive.py`` runs in that interpreter and drives bCNC's own
``Sender`` and ``GRBL1`` controller without the Tk window (see its docstring for
exactly which of bCNC's code runs).  bCNC compacts every line it sends (spaces
dropped, numbers as ``CNC.fmt`` prints them) and sends its ``[CNC] startup``
line (``G90``) before a job, so the program here is written the way bCNC sends
it and the simulator's exec log must be ``G90`` plus the program, line for line.
"""

from __future__ import annotations

import json
import os
import subprocess


from sim_helpers import REPO, Sim, need_outside_tool

BCNC_PYTHON = os.environ.get("ISMCTL_BCNC_PYTHON")
INSTALL = "python -m venv /tmp/bcnc-venv && /tmp/bcnc-venv/bin/pip install bCNC==0.9.16 'numpy<2'"
need_outside_tool(bool(BCNC_PYTHON), "bCNC", f"{INSTALL}, then set ISMCTL_BCNC_PYTHON=/tmp/bcnc-venv/bin/python")

# The EEPROM the simulator starts from: Bf: in status reports ($10=3), brisker axes,
# and a G54 offset so that bCNC has to apply the WCO it parsed to get the work position.
EEPROM = {"settings": {"10": 3, "110": 3000, "111": 3000, "112": 1000, "120": 200, "121": 200, "122": 100},
          "coords": [[-20.0, -10.0, 0.0]] + [[0.0, 0.0, 0.0]] * 5}
END_WORK = [-5.0, -5.0, -1.0]
END_MACHINE = [w + o for w, o in zip(END_WORK, EEPROM["coords"][0])]


def number(value: float) -> str:
    """A coordinate as bCNC's ``CNC.fmt`` writes it (4 decimals, trailing zeros cut)."""
    return f"{value:.4f}".rstrip("0").rstrip(".")


def pocket(cells: int = 75) -> list[str]:
    """A line, a G2 semicircle (I/J), a G3 semicircle back (R) and a step, per cell."""
    lines = ["G21", "G90", "G94", "M3S8000", "G0Z-5"]
    for c in range(cells):
        x, y = -10 - (c % 15) * 6, -10 - (c // 15) * 6
        lines += [f"G1X{number(x)}Y{number(y)}F1200", f"G2X{number(x - 4)}Y{number(y)}I-2J0F900",
                  f"G3X{number(x)}Y{number(y)}R2F900", f"G1X{number(x - 1.5)}Y{number(y - 1.25)}F1500"]
    return lines + ["G0Z-1", f"G0X{number(END_WORK[0])}Y{number(END_WORK[1])}", "M5"]


def test_bcnc_streams_a_program_with_a_feed_hold_and_parses_the_end(tmp_path):
    program = pocket()
    program_file, eeprom = tmp_path / "pocket.nc", tmp_path / "eeprom.json"
    program_file.write_text("\n".join(program) + "\n")
    eeprom.write_text(json.dumps(EEPROM))
    exec_log, stats, home = tmp_path / "exec.log", tmp_path / "stats.json", tmp_path / "home"
    home.mkdir()   # bCNC reads ~/.bCNC and would write its history there
    # --speed 30: the ~130 virtual seconds of cutting take a few real seconds, so the
    # hold lands mid-program; nothing below depends on how long anything took.
    with Sim("--speed", "30", "--settings", str(eeprom), "--exec-log", str(exec_log), "--stats", str(stats),
             module="firmware_sim.mill", connect=False) as sim:
        run = subprocess.run([BCNC_PYTHON, str(REPO / "tests" / "hosts" / "bcnc_drive.py"), sim.address,
                              str(program_file), "--hold-after", "100"],
                             env={**os.environ, "HOME": str(home)}, capture_output=True, text=True, timeout=180)
    assert run.stdout.strip(), f"bCNC host died:\n{run.stderr[-3000:]}"
    bcnc = json.loads(run.stdout.strip().splitlines()[-1])
    assert run.returncode == 0, (bcnc, run.stderr[-3000:])

    # what ran is what bCNC sent, and that is its startup line and the program, exactly
    executed = exec_log.read_text().splitlines()
    assert executed == [line for line in bcnc["sent"] if not line.startswith("$")]
    assert executed[:len(program) + 1] == ["G90"] + program
    # the only G-code bCNC may add afterwards: its post-job purge restoring $G and the TLO
    restore = {" ".join(g for g in bcnc["parser_state"] if g.startswith("G")), f"G43.1Z{bcnc['tlo']}"}
    assert set(executed[len(program) + 1:]) <= restore
    counters = json.loads(stats.read_text())["counters"]
    assert counters["rx_overflows"] == 0 and counters["errors"] == 0 and counters["alarms"] == 0, counters

    # what bCNC's GRBL1 controller parsed from the simulator's replies
    assert bcnc["errors"] == [] and bcnc["unrecognised"] == [] and not bcnc["alarm"], bcnc
    assert bcnc["version"] == "1.1h" and bcnc["build"] == [["1.1h.20190830", ""], ["V", "15", "128"]]
    assert len(bcnc["settings"]) == 34                      # every $N of grbl 1.1's $$
    for n, value in EEPROM["settings"].items():
        assert float(bcnc["settings"][n]) == value, (n, bcnc["settings"][n])
    assert bcnc["parser_state"][:6] == ["G0", "G54", "G17", "G21", "G90", "G94"]
    assert bcnc["state"] == "Idle"
    assert bcnc["mpos"] == END_MACHINE and bcnc["wco"] == EEPROM["coords"][0] and bcnc["wpos"] == END_WORK
    assert bcnc["buffer"] == [15, 128]                      # Bf: an empty planner and RX ring

    # the feed hold: mid-program, completed (Hold:0) where bCNC saw it, then resumed to the end
    hold = bcnc["hold"]
    assert 100 <= hold["answered_at_hold"] < len(program) - 50, hold
    assert hold["states_after_hold"][-1] == "Hold:0"
    i = bcnc["states"].index("Hold:0")
    assert "Run" in bcnc["states"][i + 1:], bcnc["states"]
    held_x, held_y, held_z = hold["position_held"]
    assert held_z == -5.0 and -120 <= held_x <= -20 and -50 <= held_y <= -10, hold
