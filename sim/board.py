"""The virtual board: the simulated top level behind a TCP socket, as a real board behind a UART.

``python -m sim.board [--image DIR] [--port N] [--lanes P] [--baud B]`` (``make board``)
exports :class:`hw.system.LifpgaSystem` for a network image, Verilates it together with
``sim/vboard.cpp`` into one executable, starts it and prints its pyserial URL::

    lifpga virtual board: socket://127.0.0.1:PORT

The host driver (:class:`firmware.driver.Lifpga`), the ``lifpga`` command line and the tests
open that URL exactly as they open ``/dev/ttyUSB0``. Unlike the reference board
(:mod:`sim.refboard`), every answer comes from the gateware: the UART receiver, the frame
engine, the core and the UART transmitter, cycle by cycle.

The bridge
----------
``sim/vboard.cpp`` is a plain C++ main around the Verilated model (no VPI, no cocotb). It
drives ``clk``, holds ``rst`` for a few cycles, then listens on 127.0.0.1 and serves one
client at a time (the next after a disconnect; the device keeps its state, like a board whose
host closed its serial port). A client that connects while another is served is refused at
once: it reads the one line :data:`BUSY_LINE` and then end of file, and the client being
served notices nothing. (A serial port opened twice would mix two hosts' bytes; a socket that
accepted and then stayed silent would read like a dead link.) Bytes from the client are put on
the ``rx`` pin as 8N1 frames, back to back, ``D = hw.uart.baud_divisor(clk_hz, baud)[0]``
clock cycles per bit. The ``tx`` pin is decoded as a UART receiver does it (the start bit's
falling edge, then mid-bit samples; a stop bit of 0 is reported on stderr) and the bytes are
sent to the client, or dropped when no client is connected.

The time policy
---------------
Simulated time is decoupled from wall time. It runs as fast as the model goes while there is
work: bytes waiting for or being shifted onto ``rx``, a frame arriving on ``tx``, or the
device's ``busy`` output high (a response queued or being sent, or the core computing). With
no work the executable blocks in ``ppoll()`` on its sockets: an idle board costs no CPU, and
while the device is idle the jitter of TCP and of a host's scheduling never reaches it (a frame
written in pieces a few milliseconds apart arrives as if sent back to back). While it is busy
(the core computing a rate-mode image, say), simulated time runs on, and a pause in the middle
of a frame longer than the idle timeout abandons the frame, as it would on a real UART: a host
should write each frame in one piece, as the driver does. A disconnect discards the bytes the
client sent that are not yet on the line. A real host that stops
mid-frame, however, meets the device's idle timeout
(``IDLE_TIMEOUT_BYTES`` = 64 byte times). So once the client has been silent for
:data:`QUIET_MS` milliseconds of wall time, the bridge advances simulated time by
:data:`IDLE_BYTE_TIMES` (70) byte times, which lets the timeout fire exactly as on the real
board, and then blocks again.

Speed
-----
Measured on the 2-core development machine while a synthesis job kept the other core busy, so
wall-clock figures vary by some 30 % from run to run; the seed image (``firmware/digits-seed``),
16 lanes, the default
12 MHz and 3 Mbaud (``D`` = 4). The executable reports its own figures on stderr when it stops.

* Simulated clock cycles per second: about 0.8 to 0.95 million per second of CPU time.
  (Verilator's top is a small harness that registers ``rst`` and ``rx``, see
  :data:`HARNESS_VERILOG`: with ``lifpga_system`` itself as the top it was about 0.5 million.)
* ``make sim``, all 599 test digits at 64 steps through :class:`firmware.driver.Lifpga`
  (``classify_many``, ``MAX_IN_FLIGHT`` requests in flight): 133 images/s in constant current
  (1,875 core cycles per image; the 3,000 cycles a request takes on the wire dominate) and
  29 images/s in rate mode (25,644 core cycles per image dominate).

At 100 MHz (``--clk-hz 100000000``, ``D`` = 33, as on the ULX3S) every byte costs 330 cycles
instead of 40, and constant-current mode drops to some 25 images/s: the link is simulated
bit by bit.

Building
--------
:func:`build_board` caches the executable in ``build/sim/board/<key>/`` under a design key: a
hash of the image's content hash and manifest, the parameters, the Amaranth version, and the
source of ``hw/system.py``, every ``hw`` module it imports (followed statically, as
:func:`sim.verilator.design_sources` does for the core), ``golden/constants.py`` and
``sim/vboard.cpp``. A fresh build takes some tens of seconds of C++ on two cores.

In tests::

    model = build_board(DIGITS_IMAGE)
    with model.start() as board:
        with Lifpga(board.url) as device:
            device.info()
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from firmware import DIGITS_IMAGE
from golden import image, protocol
from hw.options import port_number, positive_int
from hw.uart import FRAME_BITS, baud_divisor
from sim import buildtools
from sim.buildtools import MAKE_OVERRIDES, REPO_ROOT, SimulationError, ToolNotFoundError
from sim.foreground import run_in_foreground
from sim.verilator import hash_and_width

__all__ = [
    "CLK_HZ",
    "BAUD",
    "TOP",
    "URL_PREFIX",
    "BUSY_LINE",
    "BoardModel",
    "VirtualBoard",
    "BoardError",
    "board_key",
    "build_board",
    "ToolNotFoundError",
    "SimulationError",
]

#: The virtual board's clock and baud rate: 4 cycles per bit at 3 Mbaud, the UART's minimum
#: divisor. A board's real clock (100 MHz on the ULX3S, 33 cycles per bit) would only add
#: cycles to simulate per byte: the core's cycles per image are the same, INFO reports this
#: clock, and the link figures are quoted for the baud rate.
CLK_HZ = 12_000_000
BAUD = 3_000_000

#: Name of the exported top level's Verilog module.
TOP = "lifpga_system"
#: Name of the generated harness around it, Verilator's top (``Vlifpga_board`` in C++).
HARNESS = "lifpga_board"
#: The top level's source, relative to the repository root.
SYSTEM_SOURCE = "hw/system.py"
#: The bridge's C++ main.
VBOARD_CPP = Path(__file__).resolve().with_name("vboard.cpp")
#: Name of the executable in the build directory.
EXECUTABLE = "vboard"
#: Version of this module's build layout; a change rebuilds.
BOARD_FORMAT = 2
#: The ports the bridge drives or reads (the others, ``last_label`` and ``error``, are
#: status outputs it leaves alone).
PORTS = ("clk", "rst", "rx", "tx", "busy")
#: The line the executable prints once it listens; the URL follows.
URL_PREFIX = "lifpga virtual board: "
#: What a second client reads, then end of file, while another is served (``kBusyLine`` in
#: sim/vboard.cpp).
BUSY_LINE = (b"lifpga virtual board: busy: serving another client, one at a time; try again "
             b"when it disconnects\n")
#: Wall-clock silence of the client, ms, after which the device's idle timeout is let fire.
QUIET_MS = 20
#: Byte times simulated after that silence: more than the device's idle timeout.
IDLE_BYTE_TIMES = protocol.IDLE_TIMEOUT_BYTES + 6
assert IDLE_BYTE_TIMES > protocol.IDLE_TIMEOUT_BYTES
#: Verilator options: Amaranth's Verilog trips width warnings, which are fatal by default.
VERILATOR_ARGS = ("-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "fast")
#: Seconds to wait for the URL line of a starting board.
START_TIMEOUT_S = 30.0
#: Seconds a stopping board gets after SIGTERM before it is killed.
STOP_TIMEOUT_S = 5.0


#: Verilator's top level: ``lifpga_system`` with its ``rst`` and ``rx`` inputs registered.
#: Verilator re-evaluates all logic fed by a top-level input (other than a clock) on every
#: ``eval()``, and Amaranth's Verilog feeds ``rst`` into the next-state logic of every
#: register: with ``lifpga_system`` itself as the top, most of the design was evaluated on
#: both clock edges. Behind a register, ``rst`` and ``rx`` reach the design one cycle late,
#: which changes nothing (``rx`` is asynchronous to the device anyway) and made the board
#: some 1.7 times faster (measured, see Speed).
HARNESS_VERILOG = f"""\
// Generated by sim/board.py: the virtual board's top, {TOP} with registered inputs.
module {HARNESS} (clk, rst, rx, tx, busy);
  input clk;
  input rst;
  input rx;
  output tx;
  output busy;
  reg rst_q = 1'b1;
  reg rx_q = 1'b1;
  always @(posedge clk) begin
    rst_q <= rst;
    rx_q <= rx;
  end
  {TOP} dut (
    .clk(clk), .rst(rst_q), .rx(rx_q), .tx(tx), .busy(busy),
    .last_label(), .error()
  );
endmodule
"""


class BoardError(RuntimeError):
    """The virtual board did not start, or died; the message ends with its stderr."""


def board_key(net, manifest: dict, *, lanes: int, clk_hz: int, baud: int,
              root: Path = REPO_ROOT) -> str:
    """Hex key naming one virtual-board executable: changes whenever the build may change.

    Parameters
    ----------
    net, manifest : a loaded network image (:func:`golden.image.load_layers`).
    lanes, clk_hz, baud : int
        ``LifpgaSystem`` parameters.
    root : Path
        Repository root.

    Returns
    -------
    str
        16 hex digits of a SHA-256 over the image's content hash and manifest, the parameters,
        the Amaranth version, the design sources and ``sim/vboard.cpp``.
    """
    import amaranth

    h = hashlib.sha256()
    # w_bits sets the weight memory's width but not the results, so the content hash leaves
    # it out; the design depends on it.
    digest, w_bits = hash_and_width(net)
    h.update(f"format={BOARD_FORMAT};{digest};w_bits={w_bits};lanes={lanes};"
             f"clk_hz={clk_hz};"
             f"baud={baud};amaranth={amaranth.__version__}\n".encode())
    h.update(json.dumps(manifest, sort_keys=True).encode())
    # INFO's bytes come from golden/device.py and golden/protocol.py (not followed: not hw/)
    golden_info = [root / "golden" / "device.py", root / "golden" / "protocol.py"]
    buildtools.hash_sources(h, [*buildtools.design_sources(SYSTEM_SOURCE, root), *golden_info,
                                VBOARD_CPP], root)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class BoardModel:
    """A built virtual-board executable.

    Attributes
    ----------
    key : str
        Design key (see :func:`board_key`).
    directory : Path
        ``build/sim/board/<key>``: ``lifpga_system.v``, ``build.log``, ``obj/``.
    executable : Path
        The Verilated model with the bridge, ``obj/vboard``.
    cycles_per_bit : int
        UART divisor ``D`` the bridge uses.
    lanes, clk_hz, baud : int
        ``LifpgaSystem`` parameters.
    build_s : float
        Wall time :func:`build_board` spent (near 0 when cached).
    cached : bool
        True if nothing had to be exported or compiled.
    """

    key: str
    directory: Path
    executable: Path
    cycles_per_bit: int
    lanes: int
    clk_hz: int
    baud: int
    build_s: float
    cached: bool

    def command(self, port: int = 0) -> list[str]:
        """The executable's command line for ``port`` (0: an ephemeral one)."""
        return [str(self.executable), "--port", str(port),
                "--cycles-per-bit", str(self.cycles_per_bit), "--quiet-ms", str(QUIET_MS),
                "--idle-byte-times", str(IDLE_BYTE_TIMES)]

    def start(self, port: int = 0, *, stderr: IO[Any] | int | None = None) -> VirtualBoard:
        """Start the board (see :class:`VirtualBoard`); returns it, already listening."""
        board = VirtualBoard(self, port, stderr=stderr)
        board.start()
        return board


class VirtualBoard:
    """One running virtual board, a subprocess; a context manager that stops it on exit.

    Parameters
    ----------
    model : BoardModel
    port : int
        TCP port on 127.0.0.1; 0 picks a free one.
    stderr : file or None
        Where the board's stderr goes; None collects it in a temporary file, read by
        :meth:`stderr_text` and quoted when the board fails to start.

    Attributes
    ----------
    url : str
        ``socket://127.0.0.1:PORT``, set by :meth:`start`.
    process : subprocess.Popen or None
    """

    def __init__(self, model: BoardModel, port: int = 0, *,
                 stderr: IO[Any] | int | None = None):
        self.model, self.port = model, port
        self.url = ""
        self.process: subprocess.Popen | None = None
        self._own_stderr = stderr is None
        self._stderr = tempfile.TemporaryFile() if stderr is None else stderr

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """Start the executable and wait for its URL line; returns the URL.

        Raises
        ------
        BoardError
            If the process exits or prints nothing within ``timeout`` seconds.
        """
        if self.running():
            raise BoardError(f"virtual board already running at {self.url}")
        self.process = subprocess.Popen(self.model.command(self.port), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=self._stderr)
        # A board started without `with` and then forgotten must not outlive the interpreter.
        weakref.finalize(self, _terminate, self.process)
        line = self._read_line(timeout)
        if not line.startswith(URL_PREFIX):
            self.stop()
            raise BoardError(f"virtual board {self.model.executable} did not start "
                             f"(stdout {line!r}, exit status {self.process.returncode}); "
                             f"stderr:\n{self.stderr_text()}")
        self.url = line[len(URL_PREFIX):].strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    def _read_line(self, timeout: float) -> str:
        """The first stdout line, or what came before EOF or the deadline."""
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        data, deadline = b"", time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in data:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    break
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.process.wait()
                    break
                data += chunk
        return data.decode(errors="replace").split("\n", 1)[0]

    def stderr_text(self) -> str:
        """What the board wrote to stderr so far (only when collected, see ``stderr``)."""
        if not self._own_stderr:
            return "(not collected)"
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT_S`; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> VirtualBoard:
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:
        if self._own_stderr:
            self._stderr.close()


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()


def _export(system: Any, path: Path) -> None:
    """Write the top level's Verilog to ``path``, checking that it has the bridge's ports."""
    from amaranth.back import verilog

    text = verilog.convert(system, name=TOP)
    declared = buildtools.declared_ports(text, TOP)
    if missing := [p for p in PORTS if p not in declared]:
        raise SimulationError(f"exported {TOP} has no port(s) {missing}; ports are "
                              f"{sorted(declared)}")
    buildtools.write_atomic(path, text)


def build_board(image_dir: str | Path = DIGITS_IMAGE, *, lanes: int = 16,
                clk_hz: int = CLK_HZ, baud: int = BAUD, root: str | Path = REPO_ROOT,
                announce: Callable[[str], None] | None = None) -> BoardModel:
    """Export and Verilate the virtual board for a network image, or reuse the one built before.

    Parameters
    ----------
    image_dir : str or Path
        Network image directory (relative paths are taken from the current directory).
    lanes, clk_hz, baud : int
        ``LifpgaSystem`` parameters.
    root : str or Path
        Where the build goes: ``<root>/build/sim/board/<key>/``. (The design itself is always
        the one importable as ``hw.system``.)
    announce : callable, optional
        Called with a line of progress text (export, compile).

    Returns
    -------
    BoardModel

    Raises
    ------
    ToolNotFoundError
        If ``verilator``, ``make`` or the C++ compiler is not installed.
    SimulationError
        If the export or the Verilator build fails (the message ends with the build log).
    """
    start = time.perf_counter()
    root = Path(root).resolve()
    say = announce or (lambda _: None)
    net, manifest = image.load_layers(image_dir)
    divisor = baud_divisor(clk_hz, baud)[0]
    key = board_key(net, manifest, lanes=lanes, clk_hz=clk_hz, baud=baud)
    directory = root / "build" / "sim" / "board" / key
    obj = directory / "obj"
    stamp = {"key": key, "verilator_args": list(VERILATOR_ARGS), "make": list(MAKE_OVERRIDES),
             "harness": hashlib.sha256(HARNESS_VERILOG.encode()).hexdigest()}
    stamp_path = obj / "lifpga-board.json"
    with buildtools.locked(directory):
        cached = buildtools.stamp_matches(stamp_path, stamp, obj / EXECUTABLE)
        if not cached:
            buildtools.check_tools()
            verilog_path = directory / f"{TOP}.v"
            if not verilog_path.exists():
                say(f"board: exporting {TOP} for {image_dir} (lanes={lanes}, "
                    f"clk_hz={clk_hz}, baud={baud}) to {verilog_path}")
                from hw.system import LifpgaSystem

                _export(LifpgaSystem(net, manifest, lanes=lanes, clk_hz=clk_hz, baud=baud),
                        verilog_path)
            say(f"board: verilating and compiling into {obj} (some tens of seconds)")
            _verilate(directory, obj, verilog_path)
            buildtools.write_stamp(stamp_path, stamp)
    return BoardModel(key, directory, obj / EXECUTABLE, divisor, lanes, clk_hz, baud,
                      time.perf_counter() - start, cached)


def _verilate(directory: Path, obj: Path, verilog_path: Path) -> None:
    """Verilate the harness around ``verilog_path`` with the bridge into ``obj/vboard``."""
    harness_path = directory / f"{HARNESS}.v"
    buildtools.write_atomic(harness_path, HARNESS_VERILOG)
    shutil.rmtree(obj, ignore_errors=True)
    cmd = ["verilator", "--cc", "--exe", "--build", "-j", str(os.cpu_count() or 1),
           *VERILATOR_ARGS, "--top-module", HARNESS, "--Mdir", str(obj), "-o", EXECUTABLE,
           str(harness_path), str(verilog_path), str(VBOARD_CPP),
           "-CFLAGS", f"-DLIFPGA_FRAME_BITS={FRAME_BITS}"]
    for definition in MAKE_OVERRIDES:
        cmd += ["-MAKEFLAGS", definition]
    log = directory / "build.log"
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0 or not (obj / EXECUTABLE).exists():
        raise SimulationError(f"Verilator build of the virtual board failed (exit status "
                              f"{proc.returncode}); log {log}:\n{buildtools.log_tail(log)}")
    # Object files and precompiled headers only serve a rebuild, which a new stamp redoes
    # from scratch anyway.
    for junk in (*obj.glob("*.gch"), *obj.glob("*.o"), *obj.glob("*.a")):
        junk.unlink()


def main(argv: list[str] | None = None) -> int:
    """``python -m sim.board``: build the virtual board and run it in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m sim.board",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=str(DIGITS_IMAGE), help="network image directory")
    parser.add_argument("--port", type=port_number, default=0,
                        help="TCP port (0: pick a free one)")
    parser.add_argument("--lanes", type=positive_int, default=16, help="parallel LIF lanes P")
    parser.add_argument("--clk-hz", type=positive_int, default=CLK_HZ, help="core clock, Hz")
    parser.add_argument("--baud", type=positive_int, default=BAUD, help="UART baud rate")
    args = parser.parse_args(argv)
    try:
        model = build_board(args.image, lanes=args.lanes, clk_hz=args.clk_hz, baud=args.baud,
                            announce=lambda line: print(line, flush=True))
    except (OSError, ValueError, SimulationError) as exc:
        print(f"board: error: {exc}", file=sys.stderr)
        return 1
    print(f"board: {'cached' if model.cached else 'built'} {model.executable} "
          f"({model.build_s:.1f} s); {model.cycles_per_bit} cycles per bit", flush=True)
    board = VirtualBoard(model, args.port, stderr=sys.stderr)

    def start() -> str:
        return f"{URL_PREFIX}{board.start()}"

    def wait() -> None:
        assert board.process is not None
        board.process.wait()

    return run_in_foreground("board", start, board.stop, wait=wait, errors=(BoardError,))


if __name__ == "__main__":
    sys.exit(main())
