"""Verilator lint of the exported core: only the warning kinds explained in docs/ARCHITECTURE.md.

Amaranth's Verilog (written by Yosys) trips three of Verilator's default lint warnings, all
harmless by the Verilog standard and explained in the docs. Any other warning, or one of these
in another form, fails this test.
"""

import re
import shutil
import subprocess

import pytest
from amaranth.back import verilog

from hw.core import LifCore

EXPLAINED = {"WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE"}


def test_lint_warnings_are_the_explained_ones(tmp_path, shipped):
    exe = shutil.which("verilator")
    if exe is None:
        pytest.skip("verilator is not on PATH (make test puts .venv/bin there)")
    net, manifest = shipped
    source = tmp_path / "lif_core.v"
    source.write_text(verilog.convert(
        LifCore(net, pixel_max=manifest["pixel_max"], lanes=16), name="lif_core"))
    proc = subprocess.run([exe, "--lint-only", source.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    warnings = re.findall(r"^%(Warning|Error)-?(\w*): .*?: (.*)$", proc.stderr, re.M)
    assert not [w for w in warnings if w[0] == "Error"], proc.stderr[:2000]
    kinds = {kind for _, kind, _ in warnings}
    assert kinds <= EXPLAINED, proc.stderr[:2000]
    for _, kind, text in warnings:
        if kind == "WIDTHTRUNC":
            # Yosys writes `x == 0` on a multi-bit x as `!x`.
            assert text.startswith("Logical operator LOGNOT expects 1 bit"), text
        if kind == "CASEINCOMPLETE":
            # Case statements over FSM states and Array indices, after a default assignment.
            assert text.startswith("Case values incompletely covered"), text
