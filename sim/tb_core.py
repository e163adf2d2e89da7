"""cocotb testbench of the exported ``lif_core``: streams a batch of images, collects results.

This module runs inside the simulator (started by :meth:`sim.verilator.SimModel.run`), not
under pytest. It reads its batch from the ``.npz`` named by ``$LIFPGA_SIM_STIMULUS`` and writes
the results to ``$LIFPGA_SIM_RESULTS`` (see :meth:`sim.verilator.SimModel.run` for both). Its
``dut`` is the harness ``lif_core_tb`` (see :mod:`sim.verilator`), whose signals carry the
core's port names; it knows the core only through those ports and the payload layouts recorded
at export (``lif_core.json``).

Protocol (the core's ``i`` / ``o`` streams)
-------------------------------------------
Per image, ``M`` transfers on ``i``, pixel ``0 .. M-1`` in order; ``steps`` and ``mode`` count
on the image's first transfer only. Then one transfer on ``o`` with ``label``, ``scores``,
``spike_count`` and ``cycles``. The driver pushes images back to back and the core holds
``i.ready`` low for as long as it wants, so nothing here assumes when the next image is taken.

Timing
------
Inputs are driven just after the falling clock edge, far from the active (rising) edge; the
handshake is sampled in the ``ReadOnly`` phase of that same half cycle, when ``i.ready``,
``o.valid`` and ``o.payload`` have settled to the values the rising edge will see. A transfer
happens at the rising edge when ``valid`` and ``ready`` were both high there. While the core
computes, the testbench does not wake up every cycle: it waits for ``o.valid`` (or ``i.ready``)
to rise, with a per-image cycle limit (``timeout_cycles``) so that a hung core fails the test
with the image number instead of running forever.

Checks, besides the results themselves (compared with the golden model by the caller)
---------------------------------------------------------------------------------------
* every image gets exactly one result, after its last pixel was accepted, within its limit;
* ``o.payload`` is stable while ``o.valid`` is high and ``o.ready`` low (stream rule);
* no spurious ``o`` transfer follows the last result.

With ``stress_seed >= 0`` the testbench also applies random ``o.ready`` backpressure, inserts
random idle cycles on ``i`` with junk on the payload, and puts junk ``steps`` / ``mode`` on every
transfer but an image's first.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import (
    ClockCycles,
    FallingEdge,
    ReadOnly,
    RisingEdge,
    SimTimeoutError,
    with_timeout,
)

from sim.verilator import ENV_PROGRESS, ENV_RESULTS, ENV_STIMULUS

#: Cycles the monitor keeps watching after the last result for a spurious ``o`` transfer.
DRAIN_CYCLES = 64
#: Wall-time interval between two writes of the progress file.
PROGRESS_INTERVAL_S = 0.2
#: Reset length in cycles.
RESET_CYCLES = 4
#: In stress mode: chance of an idle cycle before an ``i`` transfer, and of ``o.ready`` low.
IDLE_PROB = 0.2
STALL_PROB = 0.5


class Field:
    """One field of a packed stream payload, as recorded in ``lif_core.json``.

    Parameters
    ----------
    spec : dict
        ``offset`` and ``width`` in bits, ``signed``; an array field also has ``length`` and
        ``elem_width``, its elements packed upward from ``offset`` (element 0 lowest).
    """

    def __init__(self, spec: dict):
        self.offset = spec["offset"]
        self.width = spec["width"]
        self.signed = spec["signed"]
        self.length = spec.get("length")
        self.elem_width = spec.get("elem_width", self.width)

    def _value(self, raw: int) -> int:
        if self.signed and raw >> (self.elem_width - 1):
            raw -= 1 << self.elem_width
        return raw

    def unpack(self, payload: int) -> int | list[int]:
        raw = (payload >> self.offset) & ((1 << self.width) - 1)
        mask = (1 << self.elem_width) - 1
        if self.length is None:
            return self._value(raw)
        return [self._value((raw >> (n * self.elem_width)) & mask) for n in range(self.length)]

    def pack(self, value: int) -> int:
        mask = (1 << self.width) - 1
        if not 0 <= value <= mask:
            raise ValueError(f"{value} does not fit an unsigned {self.width}-bit field")
        return value << self.offset


class LifCoreTB:
    """Clock, reset, ``i`` driver and ``o`` monitor of one ``lif_core`` instance.

    Parameters
    ----------
    dut : cocotb handle
        The ``lif_core`` top level.
    layout : dict
        ``{"i": {field: spec}, "o": {field: spec}}`` from ``lif_core.json``.
    period_ns : int
        Clock period.
    stress_seed : int
        Seed of the stress mode, or ``-1`` for none (``o.ready`` held high, no idle cycles).
    """

    def __init__(self, dut, layout: dict, period_ns: int, stress_seed: int = -1):
        # Handles looked up once: an attribute lookup on a cocotb handle is not free.
        self.clk, self.rst = dut.clk, dut.rst
        self.i_valid, self.i_ready, self.i_payload = dut.i__valid, dut.i__ready, dut.i__payload
        self.o_valid, self.o_ready, self.o_payload = dut.o__valid, dut.o__ready, dut.o__payload
        self.period_ns = period_ns
        self.i_fields = {name: Field(spec) for name, spec in layout["i"].items()}
        self.o_fields = {name: Field(spec) for name, spec in layout["o"].items()}
        self.stress = stress_seed >= 0
        self.rng = np.random.default_rng(max(stress_seed, 0))
        self.i_width = len(self.i_payload)
        # Clock-edge times (ns) of pixel transfers, per image: first and last.
        self.first_pixel_ns: list[float] = []
        self.last_pixel_ns: list[float] = []

    async def start(self) -> None:
        """Start the clock and apply reset with both streams idle."""
        self.rst.value = 1
        self.i_valid.value = 0
        self.i_payload.value = 0
        self.o_ready.value = 0
        Clock(self.clk, self.period_ns, unit="ns").start(start_high=False)
        await ClockCycles(self.clk, RESET_CYCLES)
        await FallingEdge(self.clk)
        self.rst.value = 0
        self.o_ready.value = 1

    def payload(self, pixel: int, steps: int, mode: int) -> int:
        f = self.i_fields
        return f["pixel"].pack(pixel) | f["steps"].pack(steps) | f["mode"].pack(mode)

    async def drive(self, images: np.ndarray, steps: np.ndarray, mode: np.ndarray) -> None:
        """Send every pixel of every image on ``i``; runs until the last one is accepted.

        Each transfer costs two waits: the falling edge (drive) and ``ReadOnly`` (sample
        ``i.ready``). Nothing changes between ``ReadOnly`` and the next rising edge, so a high
        ``i.ready`` there means the transfer happens at that edge, half a period later.
        """
        half_ns = self.period_ns / 2
        steps_mask = (1 << self.i_fields["steps"].width) - 1
        mode_mask = (1 << self.i_fields["mode"].width) - 1
        junk_mask = (1 << self.i_width) - 1
        for n, image in enumerate(images):
            words = [self.payload(int(pixel), int(steps[n]), int(mode[n])) for pixel in image]
            if self.stress:
                words[1:] = [self.payload(int(pixel), int(self.rng.integers(0, steps_mask + 1)),
                                          int(self.rng.integers(0, mode_mask + 1)))
                             for pixel in image[1:]]
            for j, word in enumerate(words):
                await FallingEdge(self.clk)
                while self.stress and self.rng.random() < IDLE_PROB:
                    self.i_valid.value = 0
                    self.i_payload.value = int(self.rng.integers(0, 1 << 62)) & junk_mask
                    await FallingEdge(self.clk)
                self.i_payload.value = word
                self.i_valid.value = 1
                await ReadOnly()
                while not self.i_ready.value:
                    # The core is busy: sleep until it raises ready, then retry at the next
                    # falling edge (the monitor's per-image limit catches a ready that never
                    # comes).
                    await RisingEdge(self.i_ready)
                    await FallingEdge(self.clk)
                    await ReadOnly()
                t = get_sim_time("ns") + half_ns  # the rising edge of this transfer
                if j == 0:
                    self.first_pixel_ns.append(t)
                if j == len(words) - 1:
                    self.last_pixel_ns.append(t)
        await FallingEdge(self.clk)
        self.i_valid.value = 0

    def _drive_o_ready(self) -> None:
        """Drive ``o.ready`` for the coming rising edge (called just after a falling edge)."""
        if self.stress:
            self.o_ready.value = int(self.rng.random() >= STALL_PROB)

    async def next_result(self, index: int) -> tuple[dict, int]:
        """Wait for and take the next ``o`` transfer; returns ``(fields, latency_cycles)``."""
        if not self.o_valid.value:
            await RisingEdge(self.o_valid)
        valid_ns = get_sim_time("ns")
        held = None
        while True:
            await FallingEdge(self.clk)
            self._drive_o_ready()
            await ReadOnly()
            if not self.o_valid.value:
                if held is not None:
                    raise AssertionError(f"image {index}: o.valid fell before o.ready "
                                         f"took the result (stream rule)")
                # valid pulsed only between edges: wait for a real one.
                await RisingEdge(self.o_valid)
                valid_ns = get_sim_time("ns")
                continue
            word = self.o_payload.value.to_unsigned()
            if held is not None and word != held:
                raise AssertionError(f"image {index}: o.payload changed while o.valid was high "
                                     f"and o.ready low (stream rule)")
            if self.o_ready.value:
                await RisingEdge(self.clk)
                break
            held = word
        if index >= len(self.last_pixel_ns):
            raise AssertionError(f"image {index}: a result came out before the image's last "
                                 f"pixel was accepted ({len(self.last_pixel_ns)} images sent)")
        fields = {name: f.unpack(word) for name, f in self.o_fields.items()}
        latency = round((valid_ns - self.first_pixel_ns[index]) / self.period_ns)
        return fields, latency

    async def collect(self, count: int, timeout_cycles: np.ndarray,
                      progress: Path | None = None) -> list[tuple[dict, int]]:
        """Take ``count`` results, each within its cycle limit, then check the stream is quiet."""
        results = []
        report_at = 0.0
        for n in range(count):
            try:
                results.append(await with_timeout(
                    self.next_result(n), int(timeout_cycles[n]) * self.period_ns, "ns"))
            except SimTimeoutError:
                sent = len(self.first_pixel_ns)
                raise AssertionError(
                    f"image {n}: no result on o within {int(timeout_cycles[n])} cycles "
                    f"(images whose first pixel was accepted: {sent}, fully sent: "
                    f"{len(self.last_pixel_ns)}; o.valid={self.o_valid.value}, "
                    f"i.ready={self.i_ready.value})") from None
            if progress is not None and (time.monotonic() > report_at or n + 1 == count):
                # Throttled: opening a file costs about a millisecond here.
                progress.write_text(str(n + 1))
                report_at = time.monotonic() + PROGRESS_INTERVAL_S
        # The transfer above ends at a rising edge; o.valid must now be low and stay low.
        self.o_ready.value = 1
        await ReadOnly()
        if self.o_valid.value:
            raise AssertionError(f"o.valid still high after the last result ({count} images)")
        try:
            await with_timeout(RisingEdge(self.o_valid), DRAIN_CYCLES * self.period_ns,
                               "ns")
        except SimTimeoutError:
            return results
        raise AssertionError(f"spurious o transfer after the last of {count} results")


@cocotb.test()
async def classify_batch(dut) -> None:
    """Stream the stimulus batch through the core and write the results file."""
    stimulus = np.load(os.environ[ENV_STIMULUS])
    results_path = Path(os.environ[ENV_RESULTS])
    progress = os.environ.get(ENV_PROGRESS)
    images, steps, mode = stimulus["images"], stimulus["steps"], stimulus["mode"]
    layout = json.loads(str(stimulus["layout"]))
    tb = LifCoreTB(dut, layout, int(stimulus["clock_period_ns"]), int(stimulus["stress_seed"]))
    await tb.start()

    driver = cocotb.start_soon(tb.drive(images, steps, mode))
    results = await tb.collect(len(images), stimulus["timeout_cycles"],
                               Path(progress) if progress else None)
    await driver

    def column(name: str) -> np.ndarray:
        return np.array([fields[name] for fields, _ in results], dtype=np.int64)

    tmp = results_path.with_name(results_path.name + ".tmp.npz")
    np.savez(tmp, label=column("label"), scores=column("scores"),
             spike_count=column("spike_count"), cycles=column("cycles"),
             latency=np.array([latency for _, latency in results], dtype=np.int64))
    tmp.replace(results_path)
