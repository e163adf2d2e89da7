# amaranth: UnusedElaboratable=no
"""hw.uart against a bit-level reference: the line level of an 8N1 frame, cycle by cycle.

The reference (:func:`frame_bits`, :func:`line_levels`) is plain Python: a frame is a list of
bit levels, and a bit of ``cycles_per_bit`` (a :class:`~fractions.Fraction`, so a sender that is
2 % off is exact) covers the cycles whose start falls inside it. The receiver is fed these levels
one per clock edge; the transmitter's pin is compared with them bit for bit; and the two are
looped back with random gaps and backpressure. Everything is compared with ``==``. (The first
line is Amaranth's own linter switch: the parameter tests build cores they never elaborate.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from amaranth.hdl import Module

from hw.uart import FRAME_BITS, MAX_BAUD_ERROR, MIN_DIVISOR, UartRx, UartTx, baud_divisor
from sim.streams import StreamMonitor, send, simulate, sink

#: (clk_hz, baud): a small divisor for speed, and the real 3 Mbaud at 48 MHz.
FAST = (1_000_000, 100_000)  # 10 cycles per bit
REAL = (48_000_000, 3_000_000)  # 16 cycles per bit
CONFIGS = [FAST, REAL]


def frame_bits(byte: int, stop: int = 1) -> list[int]:
    """Line levels of one 8N1 frame, one per bit time: start (0), LSB first data, stop."""
    return [0] + [(byte >> n) & 1 for n in range(8)] + [stop]


def line_levels(bits: list[int], cycles_per_bit: Fraction | int) -> list[int]:
    """Line level per clock cycle for ``bits`` sent back to back, each ``cycles_per_bit`` long.

    Cycle ``c`` carries bit ``floor(c / cycles_per_bit)``; the sequence ends with the cycle in
    which the last bit ends.
    """
    cycles_per_bit = Fraction(cycles_per_bit)
    cycles = math.ceil(len(bits) * cycles_per_bit)
    return [bits[min(int(c / cycles_per_bit), len(bits) - 1)] for c in range(cycles)]


def idle(cycles: int) -> list[int]:
    return [1] * cycles


def edge_recorder(signals: dict, cycles: int | None = None,
                  drive: Callable | None = None) -> tuple[Callable, dict[str, list[int]]]:
    """A testbench sampling ``signals`` at every clock edge, and the lists it fills, by name.

    ``drive(ctx, edge)`` sets inputs before edge ``edge``. With ``cycles=None`` it runs forever
    (add it as a background testbench).
    """
    record = {name: [] for name in signals}

    async def testbench(ctx) -> None:
        edge = 0
        while cycles is None or edge < cycles:
            if drive is not None:
                drive(ctx, edge)
            _, _, *values = await ctx.tick().sample(*signals.values())
            for name, value in zip(record, values, strict=True):
                record[name].append(value)
            edge += 1

    return testbench, record


@dataclass(frozen=True)
class RxResult:
    """What the receiver did: the monitor of its ``o`` stream, and its flags at every edge."""

    o: StreamMonitor
    flags: dict[str, list[int]]

    @property
    def received(self) -> list[int]:
        return self.o.payloads

    @property
    def transfer_edges(self) -> list[int]:
        return self.o.cycles

    @property
    def frame_errors(self) -> list[int]:
        return self.flags["frame_error"]

    @property
    def overruns(self) -> list[int]:
        return self.flags["overrun"]

    @property
    def busy(self) -> list[int]:
        return self.flags["busy"]


def run_rx(dut: UartRx, levels: list[int],
           ready: Callable[[int], bool] = lambda edge: True) -> RxResult:
    """Drive ``levels[c]`` on ``rx`` for clock edge ``c`` and record ``o`` and the flags.

    ``ready(c)`` is ``o.ready`` at edge ``c``. :mod:`sim.streams` checks the stream rules on
    ``o`` at every edge: ``o.valid`` does not depend on ``o.ready``, and an offered byte stays
    until taken.
    """
    recorder, flags = edge_recorder(
        {"frame_error": dut.frame_error, "overrun": dut.overrun, "busy": dut.busy},
        len(levels), drive=lambda ctx, edge: ctx.set(dut.rx, levels[edge]))

    async def consumer(ctx) -> None:
        await sink(ctx, dut.o, stall=lambda edge: not ready(edge))

    seen = simulate(dut, recorder, background=[consumer])
    return RxResult(seen["o"], flags)


def pulse_edges(flags: list[int]) -> list[int]:
    return [edge for edge, flag in enumerate(flags) if flag]


# Parameters


@pytest.mark.parametrize(("clk_hz", "baud", "divisor"), [
    (1_000_000, 100_000, 10),
    (48_000_000, 3_000_000, 16),
    (48_000_000, 115_200, 417),
    (100_000_000, 3_000_000, 33),
    (100_000_000, 115_200, 868),
    (16_000_000, 4_000_000, MIN_DIVISOR),
])
@pytest.mark.parametrize("cls", [UartRx, UartTx])
def test_parameters(cls, clk_hz, baud, divisor):
    dut = cls(clk_hz=clk_hz, baud=baud)
    assert (dut.clk_hz, dut.baud, dut.divisor) == (clk_hz, baud, divisor)
    assert dut.actual_baud == clk_hz / divisor
    assert dut.baud_error == (clk_hz / divisor - baud) / baud
    assert (dut.divisor, dut.actual_baud, dut.baud_error) == baud_divisor(clk_hz, baud)
    assert abs(dut.baud_error) <= MAX_BAUD_ERROR


@pytest.mark.parametrize(("clk_hz", "baud", "error", "match"), [
    (1_000_000, 300_000, ValueError, "at least 4"),   # 3.33 cycles per bit
    (48_000_000, 16_000_000, ValueError, "at least 4"),
    (1_000_000, 180_000, ValueError, r"off \(limit"),  # divisor 6: 166667 baud, -7.4 %
    (10_000_000, 2_400_000, ValueError, r"off \(limit"),  # divisor 4: 2.5 Mbaud, +4.2 %
    (0, 115_200, ValueError, "clk_hz must be positive"),
    (48_000_000, -9600, ValueError, "baud must be positive"),
    (48e6, 115_200, TypeError, "clk_hz must be an integer"),
    (48_000_000, True, TypeError, "baud must be an integer"),
])
@pytest.mark.parametrize("cls", [UartRx, UartTx])
def test_parameter_errors(cls, clk_hz, baud, error, match):
    with pytest.raises(error, match=match):
        cls(clk_hz=clk_hz, baud=baud)


# Receiver against the reference waveform


@pytest.mark.parametrize(("clk_hz", "baud"), CONFIGS)
def test_rx_reference_bytes_and_latency(clk_hz, baud):
    dut = UartRx(clk_hz=clk_hz, baud=baud)
    d = dut.divisor
    rng = np.random.default_rng(1)
    data = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80] + [int(b) for b in rng.integers(0, 256, 24)]
    levels, starts = idle(5), []
    for byte in data:
        levels += idle(int(rng.choice([0, 0, 1, d // 2, 3 * d])))
        starts.append(len(levels))
        levels += line_levels(frame_bits(byte), d)
    levels += idle(3 * d)
    result = run_rx(dut, levels)
    assert result.received == data
    # o.valid rises after edge start + D//2 + 9D + 2, so the transfer is at the edge after it.
    assert result.transfer_edges == [s + d // 2 + 9 * d + 3 for s in starts]
    assert pulse_edges(result.frame_errors) == []
    assert pulse_edges(result.overruns) == []
    assert result.busy[-1] == 0


@pytest.mark.parametrize("ratio", [Fraction(102, 100), Fraction(98, 100)],
                         ids=["sender_2pct_slow", "sender_2pct_fast"])
@pytest.mark.parametrize(("clk_hz", "baud"), CONFIGS)
def test_rx_baud_mismatch(clk_hz, baud, ratio):
    # The sender's bits are ratio * D cycles long, frames back to back (the worst case: the
    # next start edge follows the stop bit with no idle time) and then with idle gaps.
    dut = UartRx(clk_hz=clk_hz, baud=baud)
    d = dut.divisor
    rng = np.random.default_rng(2)
    data = [0x00, 0xFF, 0x7F, 0xFE] + [int(b) for b in rng.integers(0, 256, 12)]
    bits = [bit for byte in data[:8] for bit in frame_bits(byte)]
    levels = idle(7) + line_levels(bits, ratio * d)
    for byte in data[8:]:
        levels += idle(int(rng.integers(0, 2 * d))) + line_levels(frame_bits(byte), ratio * d)
    levels += idle(3 * d)
    result = run_rx(dut, levels)
    assert result.received == data
    assert pulse_edges(result.frame_errors) == []


@pytest.mark.parametrize(("clk_hz", "baud"), CONFIGS)
def test_rx_ignores_glitches(clk_hz, baud):
    dut = UartRx(clk_hz=clk_hz, baud=baud)
    d = dut.divisor
    levels = idle(5)
    # Every glitch length shorter than half a bit, each on an idle line.
    for width in range(1, (d + 1) // 2):
        levels += [0] * width + idle(2 * d)
    marker = len(levels)
    levels += line_levels(frame_bits(0xA5), d) + idle(2 * d)
    result = run_rx(dut, levels)
    assert result.received == [0xA5]
    assert pulse_edges(result.frame_errors) == []
    # Each glitch is dropped by the middle of where its start bit would be.
    assert result.busy[marker - 1] == 0


@pytest.mark.parametrize(("clk_hz", "baud"), CONFIGS)
def test_rx_frame_error(clk_hz, baud):
    dut = UartRx(clk_hz=clk_hz, baud=baud)
    d = dut.divisor
    start = 5
    levels = (idle(start) + line_levels(frame_bits(0x3C, stop=0), d) + idle(d)
              + line_levels(frame_bits(0xC3), d) + line_levels(frame_bits(0x5A), d)
              + idle(2 * d))
    result = run_rx(dut, levels)
    assert result.received == [0xC3, 0x5A]
    # One pulse, one cycle long, seen at the edge after the stop bit sample.
    assert pulse_edges(result.frame_errors) == [start + d // 2 + 9 * d + 3]
    assert pulse_edges(result.overruns) == []


@pytest.mark.parametrize(("clk_hz", "baud"), CONFIGS)
def test_rx_break(clk_hz, baud):
    dut = UartRx(clk_hz=clk_hz, baud=baud)
    d = dut.divisor
    start = 5
    data = [0x00, 0x42, 0xFF]
    levels = idle(start) + [0] * (30 * d) + idle(d)
    levels += line_levels([bit for byte in data for bit in frame_bits(byte)], d) + idle(2 * d)
    result = run_rx(dut, levels)
    assert result.received == data
    # The break is one bad frame, and the receiver stays busy (waiting for idle) through it.
    assert pulse_edges(result.frame_errors) == [start + d // 2 + 9 * d + 3]
    assert all(result.busy[start + 3:start + 30 * d + 2])
    assert result.busy[-1] == 0


@pytest.mark.parametrize(("clk_hz", "baud"), CONFIGS)
def test_rx_overrun(clk_hz, baud):
    # A and B back to back with o.ready low: B completes while A is still held, so B is
    # dropped with an overrun pulse. A is then taken, and C arrives intact.
    dut = UartRx(clk_hz=clk_hz, baud=baud)
    d = dut.divisor
    start = 5
    take_at = start + 2 * FRAME_BITS * d + d
    levels = (idle(start) + line_levels(frame_bits(0x11) + frame_bits(0x22), d)
              + idle(2 * d) + line_levels(frame_bits(0x33), d) + idle(2 * d))
    result = run_rx(dut, levels, ready=lambda edge: edge >= take_at)
    assert result.received == [0x11, 0x33]
    assert result.transfer_edges[0] == take_at
    assert pulse_edges(result.overruns) == [start + FRAME_BITS * d + d // 2 + 9 * d + 3]
    assert pulse_edges(result.frame_errors) == []


# Transmitter against the reference waveform


@pytest.mark.parametrize(("clk_hz", "baud"), CONFIGS)
def test_tx_waveform(clk_hz, baud):
    dut = UartTx(clk_hz=clk_hz, baud=baud)
    d = dut.divisor
    rng = np.random.default_rng(3)
    data = [0x00, 0xFF, 0x01, 0x80] + [int(b) for b in rng.integers(0, 256, 12)]
    # Cycles from one transfer to offering the next byte (from the start for the first): below
    # a frame the byte waits for i.ready, and frames leave back to back.
    gaps = [3, 0, 0, 1] + [int(rng.choice([0, 2, 10 * d - 1, 10 * d, 12 * d])) for _ in data[4:]]
    cycles = sum(gaps) + FRAME_BITS * d * len(data) + 3 * d

    def ready_ignores_valid(ctx, index, rng) -> None:
        # A property of this core, not a rule of every stream: i.ready is a function of its
        # state, not of i.valid.
        ctx.set(dut.i.valid, 0)
        ready_if_not_valid = ctx.get(dut.i.ready)
        ctx.set(dut.i.valid, 1)
        assert ctx.get(dut.i.ready) == ready_if_not_valid
        ctx.set(dut.i.valid, index is not None)

    async def driver(ctx) -> None:
        await send(ctx, dut.i, data, idle=gaps, seed=3, junk=True, on_cycle=ready_ignores_valid)

    # The pin after edge e is what edge e + 1 samples.
    recorder, pins = edge_recorder({"tx": dut.tx, "busy": dut.busy}, cycles + 1)
    seen = simulate(dut, driver, recorder)
    transfers = list(zip(seen["i"].cycles, seen["i"].payloads, strict=True))
    tx, busy = pins["tx"][1:], pins["busy"][1:]

    assert [byte for _, byte in transfers] == data
    expected = idle(cycles)
    for edge, byte in transfers:
        expected[edge:edge + FRAME_BITS * d] = line_levels(frame_bits(byte), d)
    assert tx == expected
    # A byte waiting on i leaves as soon as the stop bit ends: frames back to back.
    assert transfers[0][0] == gaps[0]
    for (edge, _), (next_edge, _), gap in zip(transfers[:-1], transfers[1:], gaps[1:], strict=True):
        assert next_edge == edge + max(FRAME_BITS * d, gap + 1)
    # busy is ~i.ready: high from the transfer to the last but one cycle of the stop bit.
    expected_busy = [0] * cycles
    for edge, _ in transfers:
        expected_busy[edge:edge + FRAME_BITS * d - 1] = [1] * (FRAME_BITS * d - 1)
    assert busy == expected_busy


# Loopback


@pytest.mark.parametrize(("clk_hz", "baud", "count"), [(*FAST, 120), (*REAL, 30)])
def test_loopback(clk_hz, baud, count):
    m = Module()
    m.submodules.tx = tx = UartTx(clk_hz=clk_hz, baud=baud)
    m.submodules.rx = rx = UartRx(clk_hz=clk_hz, baud=baud)
    m.d.comb += rx.rx.eq(tx.tx)
    d = tx.divisor
    # The consumer takes each byte within this many cycles: well inside one frame, so backpressure
    # never overruns the receiver's one-byte register.
    max_wait = 5 * d
    data = [int(b) for b in np.random.default_rng(4).integers(0, 256, count)]

    async def driver(ctx) -> None:
        rng = np.random.default_rng([4, 1])
        # Mostly back to back, sometimes a gap of up to two frames.
        gaps = [int(rng.choice([0, 0, 0, 1, 7, 2 * FRAME_BITS * d])) + 1 for _ in data]
        await send(ctx, tx.i, data, idle=gaps)
        await ctx.tick().repeat(FRAME_BITS * d + 10)  # the last frame arrives

    async def consumer(ctx) -> None:
        await sink(ctx, rx.o, stall=0.8, max_stall=max_wait, seed=[4, 2])

    recorder, flags = edge_recorder({"overrun": rx.overrun, "frame_error": rx.frame_error})
    seen = simulate(m, driver, watch={"tx.i": tx.i, "rx.o": rx.o},
                    background=[consumer, recorder])
    received = seen["rx.o"].payloads
    assert seen["tx.i"].payloads == data
    assert received == data
    assert not any(flags["overrun"]) and not any(flags["frame_error"])
