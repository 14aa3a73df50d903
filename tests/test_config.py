"""Config loading: every bad value is refused at load, naming its key."""

import pytest

from conftest import REPO
from ismctl import config
from ismctl.config import ConfigError

GOOD = """
[cell]
name = "bench"
[bus]
clients = "tcp://127.0.0.1:6000"
[devices.p1]
class = "printer"
port = "sim"
[devices.p1.sim]
speed = "max"
"""


def write(tmp_path, text):
    path = tmp_path / "cell.toml"
    path.write_text(text)
    return path


def test_demo_config_loads():
    cfg = config.load("configs/demo-cell.toml")
    assert cfg.devices["printer"].simulated and cfg.clients.startswith("ipc://")


def test_good_config(tmp_path):
    cfg = config.load(write(tmp_path, GOOD), state_dir=tmp_path / "s")
    assert cfg.clients == "tcp://127.0.0.1:6000"
    assert cfg.drivers == f"ipc://{tmp_path / 's'}/drivers.sock"
    assert cfg.devices["p1"].sim.speed == "max"


@pytest.mark.parametrize(
    "change, key",
    [
        (('class = "printer"', 'class = "laser"'), "devices.p1.class"),
        (('port = "sim"', "port = 5"), "devices.p1.port"),
        (('speed = "max"', "speed = -3"), "devices.p1.sim.speed"),
        (('speed = "max"', 'speed = "fast"'), "devices.p1.sim.speed"),
        (('speed = "max"', 'speed = 1\ncorrupt_rate = 2.0'), "devices.p1.sim.corrupt_rate"),
        (('speed = "max"', 'speed = 1\nsped = 2'), "devices.p1.sim.sped"),
        (('clients = "tcp://127.0.0.1:6000"', 'clients = "http://x"'), "bus.clients"),
        (('name = "bench"', 'name = "bench"\nstate_dri = "x"'), "cell.state_dri"),
        (('port = "sim"', 'port = "sim"\nbaud = "fast"'), "devices.p1.baud"),
        (('port = "sim"', 'port = "sim"\nwindow = 0'), "devices.p1.window"),
    ],
)
def test_bad_value_names_the_key(tmp_path, change, key):
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, GOOD.replace(*change)))
    assert err.value.key == key and key in str(err.value)


def test_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="syntax"):
        config.load(write(tmp_path, "[cell\nname="))
    with pytest.raises(ConfigError, match="no such file"):
        config.load(tmp_path / "absent.toml")


def test_sim_table_on_real_port_is_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, GOOD.replace('port = "sim"', 'port = "/dev/ttyACM0"')))
    assert err.value.key == "devices.p1.sim"


def test_slicing_profile_is_read_and_checked(tmp_path):
    path = tmp_path / "cell.toml"
    base = '[cell]\nname = "c"\n[devices.printer]\nclass = "printer"\nport = "sim"\n[slicing]\n'
    path.write_text(base + 'layer_height = 0.15\ninfill_pattern = "gyroid"\nperimeters = 3\n')
    slicing = config.load(path).slicing
    assert (slicing.layer_height, slicing.infill_pattern, slicing.perimeters) == (0.15, "gyroid", 3)
    path.write_text(base + "layer_hieght = 0.15\n")
    with pytest.raises(config.ConfigError, match="layer_hieght"):
        config.load(path)
    path.write_text(base + "perimeters = 2.5\n")
    with pytest.raises(config.ConfigError, match="perimeters must be int"):
        config.load(path)


def test_every_device_class_has_its_simulator_and_driver_options():
    """A class added to the config without its process options would fail only when a cell starts."""
    from ismctl.config import DEVICE_CLASSES
    from ismctl.supervisor.processes import DRIVER_OPTIONS, SIMULATOR_OPTIONS

    assert set(SIMULATOR_OPTIONS) == set(DRIVER_OPTIONS) == set(DEVICE_CLASSES)
    for name in DEVICE_CLASSES:
        assert (REPO / "firmware_sim" / f"{name}.py").is_file() and (REPO / "drivers" / f"{name}.py").is_file()
