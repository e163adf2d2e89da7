# amaranth: UnusedElaboratable=no
"""hw.rate_encoder against the golden model: golden.lfsr draws + golden.model.encode_rate.

Every test drives pixels into the simulated core through its ``i`` stream, collects the ``o``
transfers, and compares them with the golden model using ``==``. The driver and the consumer are
:mod:`sim.streams` testbenches, each with its own seeded random source for gaps and
backpressure; its monitors check the stream rules on ``i`` and ``o`` at every clock edge. (The
first line is Amaranth's own linter switch, as in its test suite: the parameter tests build
cores they never elaborate.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from golden import lfsr
from golden.constants import LFSR_SEED_DEFAULT, LFSR_WIDTH, RATE_BITS_MAX
from golden.model import encode_rate
from hw.rate_encoder import RateEncoder
from sim.streams import receive, send, simulate

#: Cycles the consumer keeps taking, with ``o.ready`` high, after the last expected transfer:
#: a duplicated transfer would show up here.
DRAIN_CYCLES = 4


@dataclass
class Image:
    """One image as the encoder sees it: its pixels, repeated for ``timesteps`` steps."""

    pixels: np.ndarray
    seed: int
    timesteps: int

    def transfers(self) -> list[tuple[int, int, int]]:
        """``(pixel, first, seed)`` per ``i`` transfer, in draw order."""
        order = np.tile(self.pixels, self.timesteps)
        return [(int(x), int(n == 0), self.seed) for n, x in enumerate(order)]

    def golden(self, rate_bits: int) -> np.ndarray:
        """Expected ``o.p.value`` per transfer, from golden.lfsr and golden.model.encode_rate."""
        draws = lfsr.rate_draws(self.seed, self.timesteps, len(self.pixels), rate_bits)
        return np.concatenate([encode_rate(self.pixels, draws[t], rate_bits)
                               for t in range(self.timesteps)])


@dataclass(frozen=True)
class Result:
    """What the monitors saw: the ``o`` payload fields, and the clock edges of the transfers."""

    values: list[int]
    firsts: list[int]
    in_edges: list[int]
    out_edges: list[int]


def simulate_encoder(dut: RateEncoder, transfers: list[tuple[int, int, int]], *,
                     valid_prob: float = 1.0, ready_prob: float = 1.0,
                     rng_seed: int = 0) -> Result:
    """Stream ``transfers`` through ``dut`` and collect every ``o`` transfer.

    ``valid_prob`` is the chance that the driver offers its next pixel on a given cycle (else it
    idles with junk on the payload and on ``seed``); ``ready_prob`` is the chance that ``o.ready``
    is high on a given cycle. The stream rules are checked on ``i`` and ``o``.
    """
    max_cycles = 20 * len(transfers) + 100

    def drive_seed(ctx, index, rng) -> None:
        # `seed` only matters on a `first` transfer; anything else must be ignored.
        if index is not None and transfers[index][1]:
            ctx.set(dut.seed, transfers[index][2])
        else:
            ctx.set(dut.seed, int(rng.integers(0, 1 << LFSR_WIDTH)))

    async def driver(ctx) -> None:
        await send(ctx, dut.i, [{"pixel": pixel, "first": first} for pixel, first, _ in transfers],
                   idle=1 - valid_prob, seed=[rng_seed, 1], junk=True, on_cycle=drive_seed,
                   deadline=max_cycles)

    async def consumer(ctx) -> None:
        await receive(ctx, dut.o, len(transfers), stall=1 - ready_prob, seed=[rng_seed, 2],
                      deadline=max_cycles)
        # Keep taking for a while: a duplicated transfer would show up on the monitor here.
        ctx.set(dut.o.ready, 1)
        await ctx.tick().repeat(DRAIN_CYCLES)

    seen = simulate(dut, driver, consumer)
    out = seen["o"].payloads
    return Result([p["value"] for p in out], [p["first"] for p in out], seen["i"].cycles,
                  seen["o"].cycles)


def check_images(dut: RateEncoder, images: list[Image], **kwargs) -> Result:
    """Simulate ``images`` back to back and assert the output equals the golden model."""
    transfers = [t for image in images for t in image.transfers()]
    result = simulate_encoder(dut, transfers, **kwargs)
    expected = np.concatenate([image.golden(dut.rate_bits) for image in images])
    # Length first: no transfer lost or duplicated (a duplicate would arrive while draining).
    assert len(result.values) == len(transfers)
    assert np.array_equal(result.values, expected)
    assert result.firsts == [first for _, first, _ in transfers]
    return result


def random_images(rng: np.random.Generator, pixel_max: int, inputs: int, timesteps: int,
                  count: int) -> list[Image]:
    """``count`` images of random pixels in ``0 .. pixel_max``, each with its own nonzero seed."""
    seeds = [LFSR_SEED_DEFAULT] + [int(s) for s in rng.integers(1, 1 << LFSR_WIDTH, count - 1)]
    return [Image(rng.integers(0, pixel_max + 1, inputs), seed, timesteps) for seed in seeds]


def digits_images() -> list[Image]:
    """Two 64-pixel digits-like images (pixels 0 .. 16), three steps each, different seeds."""
    return random_images(np.random.default_rng(2024), 16, 64, 3, 2)


def test_two_images_match_golden_at_full_throughput():
    dut = RateEncoder(pixel_bits=5, rate_bits=4)
    images = digits_images()
    assert images[0].seed != images[1].seed
    result = check_images(dut, images)
    # One pixel accepted per cycle, each out one cycle later, also across the image boundary.
    n = len(result.values)
    assert result.in_edges == list(range(n))
    assert result.out_edges == [edge + 1 for edge in result.in_edges]


@pytest.mark.parametrize("rng_seed", [1, 2, 3])
def test_backpressure_and_gaps_change_nothing(rng_seed):
    dut = RateEncoder(pixel_bits=5, rate_bits=4)
    result = check_images(dut, digits_images(), valid_prob=0.6, ready_prob=0.5,
                          rng_seed=rng_seed)
    # The stalls really happened (else this test would only repeat the one above).
    assert result.out_edges[-1] > len(result.values) + 50


def test_stalled_output_stalls_input():
    # With o.ready rarely high, the core must hold one value at a time and never drop one.
    dut = RateEncoder(pixel_bits=5, rate_bits=4)
    images = random_images(np.random.default_rng(7), 16, 16, 2, 2)
    check_images(dut, images, valid_prob=1.0, ready_prob=0.1, rng_seed=9)


def test_pixel_zero_never_spikes_full_scale_always_spikes():
    rate_bits = 4
    dut = RateEncoder(pixel_bits=rate_bits + 1, rate_bits=rate_bits)
    pixels = np.tile([0, 1 << rate_bits], 32)
    images = [Image(pixels, LFSR_SEED_DEFAULT, 4), Image(pixels, 0x12345678, 4)]
    result = check_images(dut, images, valid_prob=0.8, ready_prob=0.8, rng_seed=5)
    values = np.asarray(result.values)
    order = np.tile(pixels, 8)
    assert np.all(values[order == 0] == 0)
    assert np.all(values[order == 1 << rate_bits] == 1 << rate_bits)


def test_threshold_is_strict_and_first_reloads_the_seed():
    # Pixels equal to their own draws never spike; one more always does. The second image reuses
    # the seed, so its draws repeat only if `first` really reloads the LFSR.
    rate_bits = 4
    dut = RateEncoder(pixel_bits=rate_bits + 1, rate_bits=rate_bits)
    draws = lfsr.draws(LFSR_SEED_DEFAULT, 48, rate_bits).astype(np.int64)
    images = [Image(draws, LFSR_SEED_DEFAULT, 1), Image(draws + 1, LFSR_SEED_DEFAULT, 1)]
    result = check_images(dut, images)
    assert result.values == [0] * 48 + [1 << rate_bits] * 48


@pytest.mark.parametrize("rate_bits", range(1, RATE_BITS_MAX + 1))
def test_every_rate_width_matches_golden(rate_bits):
    dut = RateEncoder(pixel_bits=rate_bits + 1, rate_bits=rate_bits)
    images = random_images(np.random.default_rng(rate_bits), 1 << rate_bits, 24, 2, 2)
    check_images(dut, images, valid_prob=0.7, ready_prob=0.7, rng_seed=rate_bits)


def test_mnist_like_8_bit_pixels_and_draws():
    dut = RateEncoder(pixel_bits=8, rate_bits=8)
    images = random_images(np.random.default_rng(255), 255, 64, 3, 2)
    check_images(dut, images, valid_prob=0.7, ready_prob=0.7, rng_seed=8)


def test_one_bit_draws():
    dut = RateEncoder(pixel_bits=2, rate_bits=1)
    images = random_images(np.random.default_rng(1), 2, 64, 3, 2)
    result = check_images(dut, images)
    assert set(result.values) == {0, 2}


def test_zero_seed_is_not_checked():
    # Documented behaviour, outside golden (which rejects the seed): the LFSR stays at zero, every
    # draw is 0, and exactly the nonzero pixels spike.
    dut = RateEncoder(pixel_bits=5, rate_bits=4)
    pixels = np.arange(17)
    result = simulate_encoder(dut, [(int(x), int(n == 0), 0) for n, x in enumerate(pixels)])
    assert np.array_equal(result.values, (pixels > 0).astype(np.int64) << 4)


def test_ports():
    dut = RateEncoder(pixel_bits=5, rate_bits=4)
    assert len(dut.seed) == LFSR_WIDTH
    assert (len(dut.i.p.pixel), len(dut.i.p.first)) == (5, 1)
    assert (len(dut.o.p.value), len(dut.o.p.first)) == (5, 1)


@pytest.mark.parametrize(("pixel_bits", "rate_bits", "error"), [
    (5, 0, ValueError),
    (5, RATE_BITS_MAX + 1, ValueError),
    (0, 4, ValueError),
    (5.0, 4, TypeError),
    (5, True, TypeError),
])
def test_bad_parameters_are_rejected(pixel_bits, rate_bits, error):
    with pytest.raises(error):
        RateEncoder(pixel_bits=pixel_bits, rate_bits=rate_bits)
