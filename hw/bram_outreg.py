"""ECP5 block RAM output registers: move the flip-flops behind a ``DP16KD`` into it.

Yosys 0.70's ECP5 memory mapping never uses the ``DP16KD``'s own output register
(``REGMODE_A/B = "OUTREG"``): a memory read port followed by a register becomes a ``DP16KD`` in
``NOREG`` mode and ``TRELLIS_FF`` cells in the fabric. The block RAM's clock-to-output without
its register is about 5.6 ns, so the route to those flip-flops, which nextpnr may place far
from the RAM, decides the clock rate (the MNIST weight banks: 4.6 ns of routing, 97.8 MHz on the
ULX3S-85F). With the register inside, the RAM's output leaves a register (clock-to-output
about 1 ns) and nothing is left to place.

:func:`pack_output_registers` does on Yosys' JSON netlist what Yosys' out-of-tree
``ecp5_infer_bram_outreg`` plugin does (YoWASP's Yosys loads no plugins): for each port of each
``DP16KD`` in ``NOREG`` mode, if every output bit of that port that is used drives exactly one
input, the ``DI`` of a ``TRELLIS_FF``, and every such flip-flop

- is clocked by the port's clock, rising edge (``CLKMUX = "CLK"``, the port's ``CLKxMUX`` its
  clock),
- has no set/reset (``LSRMUX`` not ``"LSR"``, or its ``LSR`` the constant 0), the port's own
  reset ``RSTx`` being the constant 0,
- has the same clock enable as the others of the port (or none), which becomes ``OCEx``,
- has GSR off, as the RAM's ``GSR`` (power-up value 0 for both),

then the port is set to ``OUTREG``, its ``OCEx`` takes the flip-flops' enable, each output bit
drives what the flip-flop's ``Q`` drove, and the flip-flops are removed. The output register of
a ``DP16KD`` port is a register on each output bit, clocked by the port's clock and enabled by
``OCEx`` (Lattice TN1264, "Output register"): the same function, one cycle of latency, as the
flip-flops it replaces. The RTL, and so every simulation, keeps the flip-flops; the core's
weight-bank registers are ``reset_less`` so that they qualify.

Only ports of 18 bits or narrower are packed: in the 36-bit pseudo-dual-port mode both halves
of the output belong to port B's read, and which ``REGMODE`` then applies to the low half is not
documented, so those cells are left as they are.

Run as ``python hw/bram_outreg.py top.json`` (stdlib only, so that the build script can run it
by path in the build folder): the file is rewritten in place and one line names what was
packed. :mod:`hw.bitstream` adds that command to the ECP5 build script after Yosys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RECORD", "PackReport", "pack_output_registers", "pack_file", "main"]

#: The widest port a packed ``DP16KD`` may have (see the module docstring: not 36).
MAX_PORT_WIDTH = 18
#: The record of a run, written beside the netlist: :class:`PackReport` as JSON.
RECORD = "bram_outreg.json"
#: Output bits per ``DP16KD`` port.
PORT_BITS = 18


@dataclass
class PackReport:
    """What :func:`pack_output_registers` did: the packed ports (``cell.A`` / ``cell.B``), the
    flip-flops removed, and why each port that has flip-flops behind it was left alone."""

    ports: list[str] = field(default_factory=list)
    flip_flops: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: how many ports and flip-flops, and how many ports were left."""
        line = (f"bram_outreg: {len(self.ports)} DP16KD ports set to OUTREG, "
                f"{self.flip_flops} TRELLIS_FF moved into them")
        if self.skipped:
            line += f"; {len(self.skipped)} ports with registers left as they were"
        return line


def _text(value: Any) -> str:
    """A Yosys JSON string parameter: strings of only 0/1/x/z carry a trailing space."""
    return value[:-1] if isinstance(value, str) and value.endswith(" ") else value


def _int(value: Any) -> int:
    """A Yosys JSON integer parameter (a binary string, or a number)."""
    return value if isinstance(value, int) else int(value, 2)


def _top(netlist: dict[str, Any]) -> dict[str, Any]:
    tops = [m for m in netlist["modules"].values()
            if _int(m.get("attributes", {}).get("top", 0)) == 1]
    if len(tops) != 1:
        raise ValueError(f"the netlist has {len(tops)} top modules, not one")
    return tops[0]


def _sinks(cells: dict[str, Any]) -> dict[Any, list[tuple[str, str]]]:
    """Bit -> the (cell, port) inputs it drives."""
    sinks: dict[Any, list[tuple[str, str]]] = defaultdict(list)
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(port) == "input":
                for bit in bits:
                    if isinstance(bit, int):
                        sinks[bit].append((name, port))
    return sinks


def _no_reset(ff: dict[str, Any]) -> bool:
    """No set/reset: the ``LSR`` input unused (``LSRMUX`` ``"0"``) or the constant 0; an
    inverted ``LSR`` (``"INV"``) or a constant 1 is a reset."""
    mux = _text(ff["parameters"].get("LSRMUX", "LSR"))
    if mux == "LSR":
        return ff["connections"].get("LSR", ["0"]) == ["0"]
    return mux == "0"


def _enable(ff: dict[str, Any]) -> Any:
    """The flip-flop's clock enable: a bit, ``"1"`` for none, or ``None`` for one the output
    register cannot take (inverted, ``CEMUX = "INV"``, or the constant 0)."""
    mux = _text(ff["parameters"].get("CEMUX", "CE"))
    if mux == "1":
        return "1"
    if mux != "CE":
        return None
    return ff["connections"].get("CE", ["1"])[0]


def _port_ffs(cells, sinks, top_ports, ram: dict[str, Any], side: str):
    """The flip-flops behind port ``side`` of ``ram``: ``(outputs, flip-flops, enable)``, or a
    string saying why the port cannot be packed, or ``None`` if no flip-flop is behind it."""
    params, conns = ram["parameters"], ram["connections"]
    if _text(params.get(f"REGMODE_{side}", "NOREG")) != "NOREG":
        return None
    outputs = [(conns[f"DO{side}{i}"][0]) for i in range(PORT_BITS)
               if isinstance(conns.get(f"DO{side}{i}", ["x"])[0], int)]
    used = [bit for bit in outputs if sinks.get(bit) or bit in top_ports]
    if not used:
        return None
    ffs, reasons = [], set()
    for bit in used:
        targets = sinks.get(bit, [])
        if bit in top_ports or len(targets) != 1:
            reasons.add("an output drives more than one input")
            continue
        name, port = targets[0]
        if cells[name]["type"] != "TRELLIS_FF" or port != "DI":
            reasons.add(f"an output drives {cells[name]['type']}.{port}")
            continue
        ffs.append((bit, name))
    if not ffs:
        return None
    width = max(_int(params.get("DATA_WIDTH_A", 18)), _int(params.get("DATA_WIDTH_B", 18)))
    if width > MAX_PORT_WIDTH:
        return f"{width}-bit mode"
    clock = conns.get(f"CLK{side}", ["0"])[0]
    if _text(params.get(f"CLK{side}MUX", f"CLK{side}")) != f"CLK{side}" or clock == "0":
        return "the port's clock is inverted or unused"
    if conns.get(f"RST{side}", ["0"]) != ["0"]:
        return "the port has a reset"
    enables = set()
    for _, name in ffs:
        ff = cells[name]
        clocked = _text(ff["parameters"].get("CLKMUX", "CLK")) == "CLK"
        if not clocked or ff["connections"]["CLK"] != [clock]:
            reasons.add("a flip-flop has another clock")
        if not _no_reset(ff):
            reasons.add("a flip-flop has a set/reset")
        if _text(ff["parameters"].get("GSR", "ENABLED")) != "DISABLED" or \
                _text(params.get("GSR", "ENABLED")) != "DISABLED":
            reasons.add("GSR is on")
        if _text(ff["parameters"].get("REGSET", "RESET")) != "RESET":
            reasons.add("a flip-flop's initial value is 1")
        enable = _enable(ff)
        if enable is None:
            reasons.add("a flip-flop's enable is inverted or off")
        enables.add(enable)
    if len(enables) > 1:
        reasons.add("the flip-flops have different enables")
    if reasons:
        return "; ".join(sorted(reasons))
    return used, ffs, enables.pop()


def _rename(module: dict[str, Any], renames: dict[int, int]) -> None:
    """Every use of a bit in ``renames`` (a removed flip-flop's ``Q``) becomes its new driver."""
    def swap(bits: Iterable[Any]) -> list[Any]:
        return [renames.get(b, b) if isinstance(b, int) else b for b in bits]
    for cell in module["cells"].values():
        for port, bits in cell["connections"].items():
            cell["connections"][port] = swap(bits)
    for port in module.get("ports", {}).values():
        port["bits"] = swap(port["bits"])
    for net in module.get("netnames", {}).values():
        net["bits"] = swap(net["bits"])


def pack_output_registers(netlist: dict[str, Any]) -> PackReport:
    """Pack the flip-flops behind every eligible ``DP16KD`` port of the top module into its
    output register (the module docstring's rules); ``netlist`` (Yosys' ``write_json``) is
    changed in place. Returns what was done."""
    module = _top(netlist)
    cells = module["cells"]
    sinks = _sinks(cells)
    top_ports = {b for p in module.get("ports", {}).values() if p["direction"] != "input"
                 for b in p["bits"] if isinstance(b, int)}
    report, renames, removed = PackReport(), {}, []
    for name, ram in cells.items():
        if ram["type"] != "DP16KD":
            continue
        for side in "AB":
            found = _port_ffs(cells, sinks, top_ports, ram, side)
            if found is None:
                continue
            if isinstance(found, str):
                report.skipped[f"{name}.{side}"] = found
                continue
            _, ffs, enable = found
            for bit, ff_name in ffs:
                renames[cells[ff_name]["connections"]["Q"][0]] = bit
                removed.append(ff_name)
            ram["parameters"][f"REGMODE_{side}"] = "OUTREG"
            ram["connections"][f"OCE{side}"] = [enable]
            report.ports.append(f"{name}.{side}")
            report.flip_flops += len(ffs)
    for ff_name in removed:
        del cells[ff_name]
    _rename(module, renames)
    return report


def pack_file(path: str | Path) -> PackReport:
    """:func:`pack_output_registers` on the JSON netlist file ``path``, rewritten in place;
    what was done is recorded in :data:`RECORD` beside it (for the build's report)."""
    path = Path(path)
    try:
        netlist = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"not a JSON netlist ({e})") from None
    report = pack_output_registers(netlist)
    path.write_text(json.dumps(netlist))
    path.with_name(RECORD).write_text(json.dumps(dataclasses.asdict(report), indent=1) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bram_outreg", description="Move the flip-flops behind ECP5 DP16KD block RAMs "
        "into their output registers, in a Yosys JSON netlist (rewritten in place).")
    parser.add_argument("netlist", help="Yosys write_json output, e.g. top.json")
    parser.add_argument("--verbose", action="store_true", help="list every port")
    args = parser.parse_args(argv)
    try:
        report = pack_file(args.netlist)
    except (OSError, ValueError, KeyError) as e:
        print(f"bram_outreg: {args.netlist}: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    if args.verbose:
        for port in report.ports:
            print(f"  OUTREG {port}")
        for port, why in report.skipped.items():
            print(f"  left   {port}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
