"""Rate encoder: one Bernoulli spike per pixel from the 32-bit Galois LFSR.

Equation
--------
For every pixel ``x`` that enters, the encoder takes the next draw ``r`` of ``rate_bits`` bits
from the LFSR and emits::

    value = (r < x) << rate_bits        # 2**rate_bits (a spike) or 0

so that ``P(spike) = x / 2**rate_bits`` and the spike's expectation is the pixel. The comparison
is strict and unsigned: a pixel of 0 never spikes, a pixel of ``2**rate_bits`` always does.

A draw is ``rate_bits`` steps of the LFSR of :mod:`golden.lfsr`, first emitted bit in the least
significant position::

    out = s & 1
    s   = (s >> 1) ^ (LFSR_TAPS if out else 0)
    r   = out_0 | out_1 << 1 | ... | out_{rate_bits-1} << (rate_bits - 1)

This core equals, transfer for transfer, :func:`golden.model.encode_rate` applied to the draws
of :func:`golden.lfsr.rate_draws` (equivalently :func:`golden.lfsr.draws`): the ``n``-th pixel
after the one marked ``first`` (counting it as ``n = 0``) is compared with
``golden.lfsr.draws(seed, n + 1, rate_bits)[n]``. The caller sends pixels in draw order, pixel
``0 .. M-1`` of step 0, then of step 1, and so on (draw ``t * M + j`` belongs to pixel ``j`` of
step ``t``); the core itself knows nothing of ``M`` or of steps.

Data flow
---------
::

    seed --+
           +--[ Mux on i.p.first ]-- start --[ rate_bits Galois steps ]--+-- r --[ r < i.p.pixel ]
    state -+                                  (unrolled, combinational)  |              |
      ^                                                                  |    spike << rate_bits
      |                                                                  |              |
      +------------------- next state, on an i transfer -----------------+              v
                                                                       o register: value, first

The ``rate_bits`` LFSR steps of one draw are unrolled into a single combinational XOR network,
so one draw, and one pixel, is taken per cycle. On the transfer that carries ``first`` the draw
starts from ``seed`` instead of ``state``: the LFSR is (re)loaded before drawing, and the first
draw of an image is the first draw from the seed. ``state`` then holds the LFSR state after the
draw, ready for the next pixel.

Timing
------
The output is one register stage (a pipeline register with backpressure):

* a pixel transferred on ``i`` at clock edge ``n`` appears on ``o`` (``o.valid`` high) after
  edge ``n``, and can leave at edge ``n + 1`` at the earliest: latency one cycle;
* ``i.ready = ~o.valid | o.ready``: with ``o.ready`` held high the core accepts one pixel per
  cycle (full throughput); when ``o`` stalls, ``i`` stalls in the same cycle and neither
  ``state`` nor the output register moves, so no draw is lost, skipped or repeated;
* ``o.valid`` comes from a register and never depends on ``o.ready``; ``i.ready`` does depend
  combinationally on ``o.ready`` (allowed by the stream rules, but a chain of these cores has a
  combinational ready path through all of them).

Seeds
-----
A seed of zero is not a valid LFSR state (:func:`golden.lfsr.check_seed` rejects it). The
hardware does **not** check ``seed``: validating seeds is the job of the network image loader
(:func:`golden.image.load` bounds ``lfsr_seed`` to ``1 .. 2**LFSR_WIDTH - 1``, see
``golden.image.PARAMETERS``) and of whatever supplies per-image seeds. Fed a zero seed anyway,
the LFSR stays at zero, every draw is 0 and every nonzero pixel spikes. After reset ``state``
holds :data:`~golden.constants.LFSR_SEED_DEFAULT`, which only matters if pixels arrive before
the first ``first``: the core never drifts into the zero state on its own.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, ValueLike
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.constants import LFSR_SEED_DEFAULT, LFSR_TAPS, LFSR_WIDTH, RATE_BITS_MAX

__all__ = ["RateEncoder", "lfsr_draw"]


def lfsr_draw(m: Module, state: ValueLike, bits: int) -> tuple[Value, Value]:
    """``bits`` steps of the Galois LFSR, unrolled into combinational logic added to ``m``.

    Parameters
    ----------
    m : Module
        Module that receives one combinational signal per step.
    state : Value, ``LFSR_WIDTH`` bits
        LFSR state before the draw.
    bits : int
        Number of steps, and of bits in the draw.

    Returns
    -------
    draw : Value, ``bits`` bits
        The emitted bits, first one in bit 0 (as :func:`golden.lfsr.draws`).
    next_state : Value, ``LFSR_WIDTH`` bits
        LFSR state after the draw.
    """
    state = Value.cast(state)
    emitted = []
    for n in range(bits):
        out = state[0]
        # Each step is a named signal, not a nested expression: a step uses its input twice (the
        # shift and the feedback bit), so nesting the expressions would double the netlist at
        # every step. The XOR with LFSR_TAPS restores bit 31, where the feedback re-enters.
        after = Signal(LFSR_WIDTH, name=f"lfsr_step{n + 1}")
        m.d.comb += after.eq((state >> 1) ^ Mux(out, LFSR_TAPS, 0))
        emitted.append(out)
        state = after
    return Cat(*emitted), state


class RateEncoder(wiring.Component):
    """Rate encoder: pixel stream in, spike-value stream out, one pixel per cycle.

    See the module documentation for the equation, the data flow and the timing.

    Parameters
    ----------
    pixel_bits : int
        Width of a pixel. Any positive width compares exactly; the network image bounds pixels
        to ``pixel_max <= 2**rate_bits``, so ``rate_bits + 1`` bits always suffice.
    rate_bits : int
        Random bits per draw, ``1 .. RATE_BITS_MAX``.

    Attributes
    ----------
    pixel_bits, rate_bits : int
        As given.

    Members
    -------
    seed : :py:`In(LFSR_WIDTH)`
        LFSR seed of the image. Sampled at the clock edge of the ``i`` transfer whose ``first``
        is set (and only then): it must be stable while that transfer is pending. Not checked
        for zero (see the module documentation).
    i : :py:`In(stream.Signature(StructLayout({"pixel": pixel_bits, "first": 1})))`
        Pixels, one per transfer, in draw order. ``i.p.pixel`` is the unsigned pixel value;
        ``i.p.first`` marks the first pixel of an image: the LFSR is loaded from ``seed`` before
        that pixel's draw. ``i.ready`` is :py:`~o.valid | o.ready` (combinational in
        ``o.ready``).
    o : :py:`Out(stream.Signature(StructLayout({"value": rate_bits + 1, "first": 1})))`
        One transfer per ``i`` transfer, in the same order, one cycle later. ``o.p.value`` is
        ``2**rate_bits`` if the pixel's draw is below the pixel, else 0; ``o.p.first`` is the
        pixel's ``first``. ``o.valid`` and ``o.payload`` are registers, held while ``o.ready`` is
        low.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If ``pixel_bits < 1`` or ``rate_bits`` is outside ``1 .. RATE_BITS_MAX``.
    """

    def __init__(self, *, pixel_bits: int, rate_bits: int):
        for name, value in (("pixel_bits", pixel_bits), ("rate_bits", rate_bits)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        if pixel_bits < 1:
            raise ValueError(f"pixel_bits must be at least 1, not {pixel_bits}")
        if not 1 <= rate_bits <= RATE_BITS_MAX:
            raise ValueError(f"rate_bits must be in 1 .. {RATE_BITS_MAX}, not {rate_bits}")
        self.pixel_bits = pixel_bits
        self.rate_bits = rate_bits
        super().__init__({
            "seed": In(LFSR_WIDTH),
            "i": In(stream.Signature(data.StructLayout({"pixel": pixel_bits, "first": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"value": rate_bits + 1, "first": 1}))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()

        # LFSR state between pixels. Reset to the default seed rather than zero so the LFSR can
        # never be stuck, even if pixels arrive before any `first`.
        state = Signal(LFSR_WIDTH, init=LFSR_SEED_DEFAULT)

        # Loading the seed on the same transfer as the first draw (rather than in a cycle of its
        # own) keeps one pixel per cycle across image boundaries.
        start = Signal(LFSR_WIDTH)
        m.d.comb += start.eq(Mux(self.i.p.first, self.seed, state))
        draw, next_state = lfsr_draw(m, start, self.rate_bits)
        spike = draw < self.i.p.pixel

        # The output register may take a new pixel when it is empty or is being emptied now.
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)

        with m.If(self.i.valid & self.i.ready):
            # The LFSR advances only on a transfer, so stalls on either side cost no draw.
            m.d.sync += [
                state.eq(next_state),
                self.o.p.value.eq(spike << self.rate_bits),
                self.o.p.first.eq(self.i.p.first),
                self.o.valid.eq(1),
            ]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        return m
