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


def small_image(seed=0, inputs=6):
    rng = np.random.default_rng(seed)
    net = model.Network(
        w_in=rng.integers(-128, 128, (32, inputs)), w_shift=rng.integers(0, 4, 32),
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


def run_pins(system: LifpgaSystem, data: bytes | list[bytes], *, tail_cycles: int,
             gap_cycles: int = 0, leds: dict | None = None, starts: list | None = None) -> bytes:
    """Drive ``data`` onto ``rx``; decode ``tx`` until ``tail_cycles`` after the last bit.

    A list of byte strings is sent with ``gap_cycles`` of idle line between them. ``leds``, if
    given, receives the last values of ``busy`` and ``last_label``; ``starts`` the cycle at
    which each decoded byte's start bit begins (cycle 0: the first rx level).
    """
    divisor = system.divisor
    segments = [data] if isinstance(data, bytes) else data
    levels = []
    for k, segment in enumerate(segments):
        levels += ([1] * gap_cycles if k else []) + uart_levels(segment, divisor)
    levels += [1] * tail_cycles
    tx_levels = []

    async def bench(ctx):
        for level in levels:
            ctx.set(system.rx, level)
            _, _, tx, busy, label = await ctx.tick().sample(system.tx, system.busy,
                                                            system.last_label)
            tx_levels.append(tx)
        if leds is not None:
            leds.update(busy=busy, last_label=label)

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
            if starts is not None:
                starts.append(k)
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
    got = run_pins(system, request, tail_cycles=6000)
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


def test_reset_aborts_a_long_classify_at_the_pins(device):
    """CLASSIFY of 65535 steps in rate mode (millions of cycles), then RESET, INFO and a short
    CLASSIFY: the core is reset, the long one is never answered, the RESET is answered within
    a few bit times and the rest as the reference answers it; the LEDs follow."""
    system, ref = device
    rng = np.random.default_rng(5)
    long = p.encode_frame(p.Command.CLASSIFY, 1, p.pack_classify(np.full(6, 16), 65535, 1))
    reset = p.encode_frame(p.Command.RESET, 2)
    later_frames = [p.encode_frame(p.Command.INFO, 3), p.encode_frame(
        p.Command.CLASSIFY, 4, p.pack_classify(rng.integers(0, 17, 6), STEPS, 1))]
    later = b"".join(later_frames)
    leds, starts = {}, []
    got = run_pins(system, [long, reset + later], gap_cycles=500, tail_cycles=6000,
                   leds=leds, starts=starts)
    # The long CLASSIFY's answer has not started when the RESET arrives: none is sent.
    want = ref.expected_after_reset([long], 0, 2, later_frames)
    assert want.startswith(p.encode_frame(0x83, 2, bytes([p.Status.OK])))
    assert got == want
    # The RESET's stop bit ends here; its answer's start bit follows within 4 bit times.
    reset_end = len(uart_levels(long, system.divisor)) + 500 + len(
        uart_levels(reset, system.divisor))
    assert starts[0] - reset_end < 4 * system.divisor
    last = p.unpack_classification(p.FrameParser().feed(got)[-1].payload, 3)
    assert leds == {"busy": 0, "last_label": last.label}


def test_long_zero_runs_back_to_back_at_the_smallest_divisor():
    """CLASSIFY_SPARSE of 784-pixel images whose zero runs of up to 255 pixels arrive one per
    byte, frames back to back at MIN_DIVISOR cycles per bit (40 cycles per byte), mixed with
    dense CLASSIFY: every answer is the reference's, and sparse and dense answers of the same
    image agree."""
    from hw.uart import MIN_DIVISOR

    net, manifest = small_image(inputs=784)
    system = LifpgaSystem(net, manifest, lanes=4, clk_hz=CLK_HZ, baud=BAUD)
    assert system.divisor == MIN_DIVISOR
    ref = ReferenceDevice(net, manifest, lanes=4, clock_hz=CLK_HZ, baud=BAUD,
                          cycles_model=system.core.expected_cycles)
    images = np.zeros((4, 784), dtype=np.int64)
    images[0, 783] = 16                      # 255, 255, 255 zeros, then 18 and one literal
    images[1, [0, 300, 301, 302, 700]] = [3, 7, 7, 7, 1]
    images[2, 255 * 3:] = 5                  # three maximal runs, then 19 literals
    # images[3]: all zero, three runs of 255 and one of 19: 8 bytes for 784 pixels
    frames = [p.encode_frame(p.Command.CLASSIFY_SPARSE, k, p.pack_classify_sparse(x, STEPS, 0))
              for k, x in enumerate(images)]
    assert p.sparse_tokens(images[0]) == bytes([255, 0, 255, 0, 255, 0, 18, 1, 16])
    assert len(frames[3]) == 8 + 3 + 8
    dense = p.encode_frame(p.Command.CLASSIFY, 9, p.pack_classify(images[1], STEPS, 0))
    # At most MAX_IN_FLIGHT CLASSIFY requests unanswered: two bursts of three.
    first, second = b"".join(frames[:3]), frames[3] + dense + frames[0]
    got = run_pins(system, [first, second], gap_cycles=12_000, tail_cycles=12_000)
    want = ref.receive(first) + ref.receive(second)
    assert got == want
    replies = p.FrameParser().feed(got)
    assert [(r.cmd, r.seq, r.payload[0]) for r in replies] == [
        (0x84, 0, 0), (0x84, 1, 0), (0x84, 2, 0), (0x84, 3, 0), (0x82, 9, 0), (0x84, 0, 0)]
    assert replies[1].payload == replies[4].payload
