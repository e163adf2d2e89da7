# amaranth: UnusedElaboratable=no
"""hw/system.py at its pins in Amaranth's simulator: UART bits in, UART bits out.

A small random network (32 neurons, 6 inputs, 4 lanes) and 4 clock cycles per bit keep this
fast; the shipped image behind the same pins runs on the virtual board (tests/test_board.py).
The bits on ``rx`` are generated, and those on ``tx`` decoded, by plain Python that knows only
8N1 framing; the decoded bytes must equal :class:`golden.device.ReferenceDevice`'s answer.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import model
from golden import protocol as p
from golden.device import ReferenceDevice
from golden.image import content_hash
from hw.system import LifpgaSystem

CLK_HZ, BAUD = 400_000, 100_000  # 4 cycles per bit
STEPS = 3


def small_image(seed=0):
    rng = np.random.default_rng(seed)
    net = model.Network(
        w_in=rng.integers(-128, 128, (32, 6)), w_shift=rng.integers(0, 4, 32),
        bias=rng.integers(-200, 600, 32), v_th=rng.integers(200, 3000, 32),
        dec=rng.integers(-128, 128, (3, 32)), dec_bias=rng.integers(-5000, 5000, 3),
        leak_shift=2, psc_shift=2, ref_steps=1, rate_bits=4, lfsr_seed=0xACE1)
    manifest = {"hash": content_hash(net), "timesteps": STEPS, "pixel_max": 16,
                "encoder_mode": "current"}
    return net, manifest


def uart_levels(data: bytes, divisor: int) -> list[int]:
    levels = []
    for byte in data:
        for bit in [0, *((byte >> n) & 1 for n in range(8)), 1]:
            levels += [bit] * divisor
    return levels


def run_pins(system: LifpgaSystem, data: bytes, *, tail_cycles: int) -> bytes:
    """Drive ``data`` onto ``rx``; decode ``tx`` until ``tail_cycles`` after the last bit."""
    divisor = system.divisor
    levels = uart_levels(data, divisor) + [1] * tail_cycles
    tx_levels = []

    async def bench(ctx):
        for level in levels:
            ctx.set(system.rx, level)
            _, _, tx = await ctx.tick().sample(system.tx)
            tx_levels.append(tx)

    sim = Simulator(system)
    sim.add_clock(1 / CLK_HZ)
    sim.add_testbench(bench)
    sim.run()
    # Decode 8N1: a falling edge starts a frame; sample each bit in its middle.
    out, k = bytearray(), 1
    while k < len(tx_levels):
        if tx_levels[k - 1] == 1 and tx_levels[k] == 0:
            mid = k + divisor // 2
            if mid + 9 * divisor >= len(tx_levels):
                raise AssertionError("tx frame cut off at the end of the simulation")
            bits = [tx_levels[mid + n * divisor] for n in range(10)]
            assert bits[0] == 0 and bits[9] == 1, f"bad tx frame at cycle {k}: {bits}"
            out.append(sum(b << n for n, b in enumerate(bits[1:9])))
            k = mid + 9 * divisor
        else:
            k += 1
    return bytes(out)


@pytest.fixture(scope="module")
def device():
    net, manifest = small_image()
    system = LifpgaSystem(net, manifest, lanes=4, clk_hz=CLK_HZ, baud=BAUD)
    ref = ReferenceDevice(net, manifest, lanes=4, clock_hz=CLK_HZ, baud=BAUD,
                            cycles_model=system.core.expected_cycles)
    return system, ref


def test_info_and_classify_at_the_pins(device):
    system, ref = device
    rng = np.random.default_rng(1)
    request = p.encode_frame(p.Command.INFO, 1) + b"\x00\xa5noise" + b"".join(
        p.encode_frame(p.Command.CLASSIFY, 2 + k, p.pack_classify(
            rng.integers(0, 17, 6), STEPS, mode)) for k, mode in enumerate((0, 1, 0xFF)))
    got = run_pins(system, request, tail_cycles=4000)
    assert got == ref.receive(request)
    replies = p.FrameParser().feed(got)
    assert [r.seq for r in replies] == [1, 2, 3, 4]
    assert p.unpack_info(replies[0].payload).clock_hz == CLK_HZ


def test_errors_and_a_cut_frame_at_the_pins(device):
    system, ref = device
    good = p.encode_frame(p.Command.INFO, 9)
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0x10
    cut = p.encode_frame(p.Command.CLASSIFY, 7, p.pack_classify(np.zeros(6, int)))[:9]
    request = bytes(bad_crc) + p.encode_frame(0x44, 8) + cut
    # The cut frame is abandoned after IDLE_TIMEOUT_BYTES byte times of silence.
    idle = p.IDLE_TIMEOUT_BYTES * 10 * system.divisor
    got = run_pins(system, request, tail_cycles=idle + 600)
    want = ref.receive(request) + ref.idle_timeout()
    assert got == want
    assert [r.payload[0] for r in p.FrameParser().feed(got)] == [
        p.Status.BAD_CRC, p.Status.UNKNOWN_COMMAND, p.Status.TIMEOUT]
