"""The tooling table: bundled copy, feeds formula, and errors that name file and key."""

import math
from pathlib import Path

import pytest

from ismctl.plan.model import PlanError
from ismctl.plan.tooling import BUNDLED_TOOLING, feeds, load_tooling

REPO = Path(__file__).resolve().parent.parent


def test_bundled_table_is_the_configs_copy_and_loads():
    assert BUNDLED_TOOLING.read_text() == (REPO / "configs" / "tooling.toml").read_text()
    tooling = load_tooling()
    assert {"flat-3", "flat-6", "ball-3", "drill-3"} <= set(tooling.tools)
    assert {"PLA", "PETG", "ABS", "aluminium-6061"} <= set(tooling.materials)
    assert tooling.tool("ball-6").shape == "ball" and tooling.tool("drill-5").is_drill


def test_feeds_are_chip_load_times_flutes_times_rpm():
    tooling = load_tooling()
    tool, pla = tooling.tool("flat-6"), tooling.material("PLA")
    rpm, feed, plunge = feeds(tool, pla, spindle_max_rpm=30000)
    assert rpm == pytest.approx(150_000 / (math.pi * 6.0))
    assert feed == pytest.approx(0.10 * 2 * rpm)
    assert plunge == pytest.approx(feed * 0.3)
    # capped by the spindle: the feed follows the rpm so the chip load stays
    rpm, feed, _ = feeds(tool, pla, spindle_max_rpm=5000)
    assert rpm == 5000 and feed == pytest.approx(0.10 * 2 * 5000)
    # a drill feeds along Z only: feed and plunge are one
    drill = tooling.tool("drill-3")
    rpm, feed, plunge = feeds(drill, pla, 30000)
    assert rpm == drill.max_rpm and plunge == feed == pytest.approx(0.05 * 2 * rpm)


def test_chip_load_interpolates_between_rows_and_clamps_outside():
    al = load_tooling().material("aluminium-6061")
    assert al.chip_load(4.5) == pytest.approx((0.02 + 0.04) / 2)
    assert al.chip_load(0.5) == 0.008 and al.chip_load(20) == 0.06


def test_unknown_names_list_the_known_ones():
    tooling = load_tooling()
    with pytest.raises(PlanError, match=r"no tool named 'flat-99' \(known: .*flat-6"):
        tooling.tool("flat-99")
    with pytest.raises(PlanError, match=r"no material named 'wood' \(known: ABS, PETG, PLA"):
        tooling.material("wood")


@pytest.mark.parametrize("text, where", [
    ('[tools.a]\nshape = "square"\ndiameter = 3\nflutes = 2\nflute_length = 9\n', r"tools\.a\.shape"),
    ('[tools.a]\nshape = "flat"\ndiameter = -3\nflutes = 2\nflute_length = 9\n', r"tools\.a\.diameter"),
    ('[tools.a]\nshape = "flat"\ndiameter = 3\nflutes = 2.5\nflute_length = 9\n', r"tools\.a\.flutes"),
    ('[tools.a]\nshape = "flat"\ndiameter = 3\nflutes = 2\n', r"tools\.a\.flute_length: is required"),
    ('[tools.a]\nshape = "flat"\ndiameter = 3\nflutes = 2\nflute_length = 9\nflute_lenght = 9\n',
     r"tools\.a\.flute_lenght: unknown key"),
    ('[tools.a]\nshape = "flat"\ndiameter = 3\nflutes = 2\nflute_length = 9\n'
     '[materials.m]\nsurface_speed_m_min = 100\nchip_load_mm = [[6, 0.1], [3, 0.05]]\n',
     r"materials\.m\.chip_load_mm: .*rising"),
    ('[tools.a]\nshape = "flat"\ndiameter = 3\nflutes = 2\nflute_length = 9\n', r"materials: the table names no"),
    ("tools = [\n", r"not valid TOML"),
])
def test_bad_tables_name_file_and_key(tmp_path, text, where):
    path = tmp_path / "tools.toml"
    path.write_text(text)
    with pytest.raises(PlanError, match=where) as err:
        load_tooling(path)
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(PlanError, match="nope.toml: cannot read"):
        load_tooling(tmp_path / "nope.toml")
