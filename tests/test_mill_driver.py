"""The grbl mill driver: its config, the character-counting streamer over a real pty to the
mill simulator (a real subprocess), and jobs through a real supervisor and driver process."""

from __future__ import annotations

import json
import time

import pytest
from conftest import wait_for
from sim_helpers import Sim

from drivers.grbl import ALARMS, ERRORS, GrblCommandError, GrblStreamer, check_line, describe_alarm, describe_error, parse_status
from drivers.transport import open_port
from ismctl import config as cellconfig


def mill_program(n: int) -> list[str]:
    """``n`` short blocks inside the simulator's travel (0..-200 mm), with feeds and the spindle."""
    lines = ["G21 G90 G94", "M3 S8000", "G0 Z-5"]
    for i in range(n - 5):
        lines.append(f"G1 X-{(i * 7) % 100 + 1}.{i % 10} Y-{(i * 13) % 80 + 1}.5 F{1200 + (i % 5) * 300}")
    return lines + ["G0 Z-1", "M5"]


class MillLink:
    """The mill simulator as a subprocess and our streamer on its pty."""

    def __init__(self, tmp_path, *sim_args: str):
        self.exec_log, self.stats = tmp_path / "exec.log", tmp_path / "stats.json"
        self.sim = Sim("--exec-log", str(self.exec_log), "--stats", str(self.stats), *sim_args, module="firmware_sim.mill", connect=False)
        self.events: list[tuple[str, dict]] = []
        self.opened = time.monotonic()
        self.streamer = GrblStreamer(open_port(self.sim.address, 115200), on_event=lambda kind, data: self.events.append((kind, data)))
        self.streamer.soft_reset()

    def finish(self) -> dict:
        """Close the streamer, stop the simulator; its counters and our connection time in seconds."""
        self.streamer.close()
        elapsed = time.monotonic() - self.opened
        self.sim.stop()
        return {**json.loads(self.stats.read_text())["counters"], "elapsed_s": elapsed}


@pytest.fixture
def mill_link(tmp_path):
    link = MillLink(tmp_path, "--speed", "max")
    yield link
    link.streamer.close()
    link.sim.stop()


# ---------------------------------------------------------------- config
def _cell_toml(tmp_path, device: str) -> cellconfig.CellConfig:
    path = tmp_path / "cell.toml"
    path.write_text(f'[cell]\nname = "t"\n{device}')
    return cellconfig.load(path, state_dir=tmp_path / "state")


def test_mill_config_keys_and_defaults(tmp_path):
    (tmp_path / "tools.toml").write_text('[tools.v-60]\nshape = "v"\n[materials.oak]\ndensity = 0.7\n')
    dev = _cell_toml(tmp_path, '[devices.m]\nclass = "mill"\nport = "sim"\ntool = "v-60"\ntooling = "tools.toml"\nmaterial = "oak"\n').devices["m"]
    assert (dev.device_class, dev.baud, dev.rx_buffer, dev.tool, dev.material) == ("mill", 115200, 128, "v-60", "oak")
    assert dev.tooling == (tmp_path / "tools.toml").resolve() and dev.simulated
    bundled = _cell_toml(tmp_path, '[devices.m]\nclass = "mill"\nport = "/dev/ttyUSB0"\n').devices["m"]
    assert bundled.tooling == cellconfig.BUNDLED_TOOLING and bundled.material == "PLA" and bundled.tool == ""


@pytest.mark.parametrize("device, key, problem", [
    ('[devices.p]\nclass = "printer"\nport = "sim"\ntool = "flat-6"\n', "devices.p.tool", "does not apply to a printer"),
    ('[devices.m]\nclass = "mill"\nport = "sim"\nwindow = 4\n', "devices.m.window", "does not apply to a mill"),
    ('[devices.m]\nclass = "mill"\nport = "sim"\n[devices.m.motion]\naccel = 5.0\n', "devices.m.motion", "its grbl $ settings"),
    ('[devices.m]\nclass = "mill"\nport = "sim"\ntool = "flat-66"\n', "devices.m.tool", "'flat-66' is not in"),
    ('[devices.m]\nclass = "mill"\nport = "sim"\nmaterial = "unobtainium"\n', "devices.m.material", "known: "),
    ('[devices.m]\nclass = "mill"\nport = "sim"\ntooling = "nowhere.toml"\n', "devices.m.tooling", "no such file"),
    ('[devices.m]\nclass = "mill"\nport = "sim"\nrx_buffer = 8\n', "devices.m.rx_buffer", "between 16 and 65536"),
    ('[devices.m]\nclass = "lathe"\nport = "sim"\n', "devices.m.class", "printer, mill"),
])
def test_mill_config_errors_name_the_key(tmp_path, device, key, problem):
    with pytest.raises(cellconfig.ConfigError) as err:
        _cell_toml(tmp_path, device)
    assert err.value.key == key and problem in str(err.value)


def test_demo_cell_has_the_mill():
    cell = cellconfig.load(cellconfig.Path(__file__).parent.parent / "configs" / "demo-cell.toml")
    assert cell.devices["mill"].device_class == "mill" and cell.devices["mill"].tool == "flat-6"


# ------------------------------------------------------- protocol pieces
def test_status_reports_parse_with_work_position():
    status = parse_status("<Hold:0|MPos:-10.000,-2.500,-1.000|Bf:15,128|FS:0,8000|WCO:-5.000,0.000,1.000|Ov:100,100,100|A:S>")
    assert status["state"] == "Hold" and status["substate"] == 0
    assert status["mpos"] == [-10.0, -2.5, -1.0] and status["wco"] == [-5.0, 0.0, 1.0]
    assert (status["planner_free"], status["rx_free"], status["feed"], status["spindle"]) == (15, 128, 0.0, 8000.0)
    assert status["overrides"] == [100, 100, 100] and status["accessories"] == "S"
    assert parse_status("<Idle|MPos:0.000,0.000,0.000|FS:0,0>")["substate"] is None
    assert parse_status("ok") is None and parse_status("<Run|MPos:1,x,3>") is None


def test_grbl_messages_use_grbls_own_words():
    assert set(ERRORS) == set(range(1, 18)) | set(range(20, 39)) and set(ALARMS) == set(range(1, 10))
    assert describe_error(22) == "error:22 (Undefined feed rate: Feed rate has not yet been set or is undefined.)"
    assert describe_alarm(2).startswith("ALARM:2 (Soft limit: Soft limit alarm. G-code motion target exceeds machine travel.")


def test_lines_grbl_cannot_take_are_named():
    assert check_line("G1 X-5 F600", 127) is None
    assert "real-time" in check_line("G1 X-5 (stop!)", 127)
    assert "127" in check_line("G1 X1" + " " * 130, 127)


# ----------------------------------------------------- streamer, real pty
def test_long_program_streams_without_overflow_and_runs_exactly(tmp_path):
    link = MillLink(tmp_path, "--speed", "max")
    program = mill_program(4000)
    result = link.streamer.stream(program)
    assert (result.status, result.last_op, result.lines_sent) == ("completed", len(program) - 1, len(program))
    assert 100 < result.peak_bytes <= 127  # grbl's buffer kept full, never more
    progress = [data["op"] for kind, data in link.events if kind == "progress"]
    assert progress == sorted(progress) and progress[-1] == len(program) - 1
    counters = link.finish()
    assert counters["rx_overflows"] == 0 and counters["rx_overflow_bytes"] == 0
    assert link.exec_log.read_text().splitlines() == program
    # '?' polled every 0.2 s at most (grbl asks for <= 5 Hz): never more reports than the time allows
    assert 1 <= counters["status_reports"] <= counters["elapsed_s"] / 0.2 + 1


def test_status_polling_stays_at_or_below_5_hz_while_idle(tmp_path):
    link = MillLink(tmp_path, "--speed", "max")
    before = link.streamer._statuses
    wait_for(lambda: link.streamer._statuses >= before + 4, 10, "four status reports")
    counters = link.finish()
    assert counters["status_reports"] <= counters["elapsed_s"] / 0.2 + 1


def test_streamer_refuses_a_polling_rate_above_5_hz():
    with pytest.raises(ValueError, match="5 Hz"):
        GrblStreamer(None, status_interval=0.1, start_threads=False)


def test_rejected_line_fails_the_stream_with_grbls_text_and_stops_the_rest(mill_link):
    program = ["G21 G90", "G1 X-5 F600", "G4", *[f"G1 X-{i} Y-{i} F900" for i in range(6, 60)]]
    result = mill_link.streamer.stream(program)
    assert result.status == "failed" and result.last_op == 1
    assert result.reason.startswith("op 2 ('G4'): grbl answered error:28 (Invalid gcode ID:28: G-code command is missing a required value word.)")
    ran = mill_link.exec_log.read_text().splitlines()
    assert ran[:2] == program[:2] and "G4" not in ran
    assert len(ran) < len(program) - 1  # held and flushed: the lines behind the bad one did not all run
    assert not mill_link.streamer.locked  # the hold completed, so the flush was unlocked
    assert mill_link.streamer.command("G0 X-1") == []  # and grbl takes G-code again


def test_system_commands_go_alone_once_grbl_is_idle(mill_link):
    program = ["G1 X-20 F3000", "$22=1", "G0 X-1"]
    assert mill_link.streamer.stream(program).status == "completed"
    assert mill_link.streamer.read_settings()[22] == "1"
    assert mill_link.exec_log.read_text().splitlines() == ["G1 X-20 F3000", "G0 X-1"]  # $ lines are not G-code blocks
    with pytest.raises(GrblCommandError) as err:
        mill_link.streamer.command("$20=-1")
    assert err.value.code == 4 and "Negative value received" in err.value.text


def test_settings_and_parser_state_are_read(mill_link):
    settings = mill_link.streamer.read_settings()
    assert len(settings) == 34 and settings[110] == "500.000" and settings[22] == "0"
    assert mill_link.streamer.parser_state().startswith("G0 G54 G17 G21 G90 G94")


# ------------------------------------------- through supervisor and driver
def test_mill_job_runs_through_the_cell_exactly(make_cell):
    """A cell of both device classes: the printer is there and idle while the mill works."""
    cell = make_cell(mill=True).start()
    wait_for(lambda: cell.device_state("mill") == "idle" and cell.device_state("printer") == "idle", 30, "both devices to be idle")
    mill = cell.call("status")["devices"]["mill"]
    assert mill["class"] == "mill" and mill["firmware_state"] == "Idle" and mill["reason"] == ""
    program = mill_program(600)
    reply = cell.call("submit", name="pocket.nc", gcode="\n".join(program) + "\n", device="mill")
    assert reply["result"] == "ok" and reply["device"] == "mill"
    job = cell.wait_job(reply["job"], ("completed", "failed"), 60)
    assert job["state"] == "completed" and job["confirmed_op"] == len(program) - 1
    assert cell.mill_exec_log.read_text().splitlines() == program


def test_grbl_error_fails_the_job_naming_line_and_text(make_cell):
    """Homing on a mill whose homing is disabled ($22=0): grbl's error:5 fails the job."""
    cell = make_cell(mill=True, printer=False).start()
    wait_for(lambda: cell.device_state("mill") == "idle", 30, "the mill to be idle")
    reply = cell.call("submit", name="home", gcode="$H\n", device="mill")
    assert reply["result"] == "ok"
    job = cell.wait_job(reply["job"], ("completed", "failed"), 30)
    assert job["state"] == "failed"
    assert "op 0 ('$H'): grbl answered error:5 (Setting disabled: Homing cycle failure. Homing is not enabled via settings.)" in job["reason"]
    wait_for(lambda: cell.device_state("mill") == "idle", 10, "the mill to be idle again")


# ------------------------------------------------ operator commands (CLI)
def test_jog_line_from_axis_words():
    from ismctl.mill_cmd import jog_line

    assert jog_line(["X10", "y-2"], 500) == "$J=G91 G21 X10 Y-2 F500"
    assert jog_line(["Z.5", "X-50.25"], 1200.5, absolute=True) == "$J=G90 G21 X-50.25 Z0.5 F1200.5"
    for bad, problem in ((["X1", "x2"], "X given twice"), (["A5"], "'A5' is not an axis word"), (["X"], "is not an axis word")):
        with pytest.raises(ValueError, match=problem):
            jog_line(bad, 500)


def test_home_jog_unlock_commands_through_the_cell(make_cell, tmp_path):
    import subprocess
    import sys

    from sim_helpers import REPO

    eeprom = tmp_path / "eeprom.json"
    eeprom.write_text(json.dumps({"settings": {"20": 1, "22": 1}}))  # soft limits and homing: locked at power-up
    cell = make_cell(mill=True, printer=False, mill_sim_args=("--settings", str(eeprom))).start()
    wait_for(lambda: cell.device_state("mill") == "idle", 30, "the mill to be idle")

    def ismctl(*argv):
        done = subprocess.run([sys.executable, "-m", "ismctl", *argv, "--config", str(cell.config_path), "--state-dir", str(cell.state_dir)],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        return done.returncode, done.stdout + done.stderr

    def mpos():
        return cell.call("status")["devices"]["mill"]["mpos"]

    assert "'$H'|'$X' to unlock" in cell.call("status")["devices"]["mill"]["reason"]
    code, out = ismctl("home")
    assert code == 0 and "homing mill" in out and "home: completed" in out, out
    wait_for(lambda: mpos() == [-1.0, -1.0, -1.0], 5, "the homed position")
    code, out = ismctl("jog", "X-10", "Y-5", "--feed", "800")
    assert code == 0 and "$J=G91 G21 X-10 Y-5 F800" in out, out
    wait_for(lambda: mpos() == [-11.0, -6.0, -1.0], 5, "the jogged position")
    code, out = ismctl("jog", "X50")  # past the travel (0..-200): grbl refuses the jog
    assert code == 1 and "error:15 (Travel exceeded: Jog target exceeds machine travel." in out, out
    code, out = ismctl("unlock")
    assert code == 0 and "unlock: completed" in out, out
    code, out = ismctl("home", "--device", "printer")
    assert code == 2 and "'printer' is not a mill" in out, out


# ------------------------------------------------ an independent grbl host
def test_grbls_own_stream_algorithm_runs_the_program_exactly(tmp_path):
    """tests/hosts/grbl_stream.py (grbl's doc/script/stream.py, in Python 3) against the simulator."""
    import subprocess
    import sys

    from sim_helpers import REPO

    eeprom, program_file, settings_file = tmp_path / "eeprom.json", tmp_path / "pocket.nc", tmp_path / "settings.nc"
    program = mill_program(1500)
    program_file.write_text("\n".join(program) + "\n")
    settings_file.write_text("$110=800\n$22=1\n$20=1\n")
    exec_log, stats = tmp_path / "exec.log", tmp_path / "stats.json"
    sim = Sim("--speed", "max", "--exec-log", str(exec_log), "--stats", str(stats), "--settings", str(eeprom), module="firmware_sim.mill", connect=False)
    try:
        host = [sys.executable, str(REPO / "tests" / "hosts" / "grbl_stream.py"), "--wake-wait", "0.3"]
        done = subprocess.run([*host, "-q", str(program_file), sim.address], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        settings = subprocess.run([*host, "-s", str(settings_file), sim.address], capture_output=True, text=True, timeout=60)
        assert settings.returncode == 0 and settings.stdout.count("REC: ok") == 3, settings.stdout
    finally:
        sim.stop()
    assert exec_log.read_text().splitlines() == program
    counters = json.loads(stats.read_text())["counters"]
    assert counters["rx_overflows"] == 0 and counters["errors"] == 0
    assert json.loads(eeprom.read_text())["settings"]["110"] == 800 and json.loads(eeprom.read_text())["settings"]["20"] == 1


def test_driver_killed_mid_cut_interrupts_the_job_until_an_operator_resumes_it(make_cell):
    """grbl numbers no lines: the cell never resumes a mill job on its own (docs/mill-driver.md)."""
    import os
    import signal

    from test_mill_alarms import cut_in_progress

    cell, program, job_id = cut_in_progress(make_cell)
    os.kill(cell.driver_pid("mill"), signal.SIGKILL)
    job = cell.wait_job(job_id, ("interrupted", "failed", "completed"), 60)
    assert job["state"] == "interrupted" and "grbl cannot say which buffered lines ran" in job["reason"]
    ran = cell.mill_exec_log.read_text().splitlines()
    assert ran == program[:len(ran)]  # the buffer the dead driver left ran out; nothing else
    resume_from = cell.job(job_id)["confirmed_op"] + 1
    assert cell.call("resume", job=job_id)["result"] == "ok"
    assert cell.wait_job(job_id, ("completed", "failed", "interrupted"), 60)["state"] == "completed"
    after = cell.mill_exec_log.read_text().splitlines()
    # no flush happened, so nothing was skipped; the lines grbl ran after the last progress report ran twice
    assert resume_from <= len(ran) and after == ran + program[resume_from:]


def test_serial_noise_never_stops_the_reader():
    """Garbage, broken reports and unknown codes from the port: counted as warnings or messages,
    and the streamer still reads what follows (a real pty pair stands in for the board)."""
    import os

    master, slave = os.openpty()
    events = []
    streamer = GrblStreamer(open_port(os.ttyname(slave), 115200), on_event=lambda kind, data: events.append((kind, data)))
    try:
        os.write(master, b"\xff\xfe\x00noise\r\n<Idle|MPos:1,x,3>\r\nALARM:99\r\nok\r\n" + b"z" * 5000 + b"\r\n"
                         b"<Run|MPos:-1.000,-2.000,-3.000|FS:600,0>\r\n")
        wait_for(lambda: streamer.status.get("state") == "Run", 5, "the report after the noise")
        assert streamer.status["mpos"] == [-1.0, -2.0, -3.0]
        kinds = [kind for kind, _ in events]
        assert "alarm" in kinds and ("alarm", {"code": 99, "text": "ALARM:99 (Unknown alarm: Not a grbl 1.1 alarm code.)", "expected": False}) in events
        assert any(kind == "message" and "to nothing this host sent" in data["text"] for kind, data in events)
        assert any(kind == "message" and "unreadable status report" in data["text"] for kind, data in events)
    finally:
        streamer.close()
        os.close(master)
        os.close(slave)


def test_build_info_names_the_rx_buffer_and_a_smaller_one_is_obeyed(tmp_path):
    link = MillLink(tmp_path, "--speed", "max")
    assert link.streamer.build_info() == {"version": "1.1h.20190830", "options": "V", "planner_blocks": 15, "rx_buffer": 128}
    link.streamer.use_rx_buffer(64)  # as the driver does when a board reports less than configured
    program = mill_program(300)
    result = link.streamer.stream(program)
    assert result.status == "completed" and 40 < result.peak_bytes <= 63
    counters = link.finish()
    assert counters["rx_overflows"] == 0 and link.exec_log.read_text().splitlines() == program
