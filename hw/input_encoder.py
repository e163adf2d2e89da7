"""The input encoder of the engine: an image's pixels in, the pixel list of every step out.

The pixel list of a step is the inputs that are not 0 at that step, in pixel order, as entries
``(j, x)`` of :func:`list_entry` (the single-layer core's ``lst_mem`` entry, ``j`` in the low
bits), so the stages after it spend no cycle on a silent input:

* constant current (``golden.model``'s ``x_t = x``): every pixel ``j`` with ``x[j] != 0``, as
  ``(j, x[j])``; one list for the whole image, built while the pixels arrive;
* rate mode (:func:`golden.model.encode_rate` of the draws of :func:`golden.model.rate_schedule`):
  at step ``t`` every pixel ``j`` with ``draw[t * M + j] < x[j]``, as ``(j, 2**rate_bits)``; one
  list per step, built on request (``draw``) from the pixels kept in ``pix_mem``. The draws are
  those of :class:`hw.rate_encoder.RateEncoder`, in golden's order: the LFSR is loaded from
  ``lfsr_seed`` at the image's first draw (pixel 0 of step 0) and advances one draw per pixel,
  so step ``t``'s draws are ``t * M .. t * M + M - 1`` when the steps are drawn in order.

Data flow
---------
::

    i (pixel, steps, mode)
      |
      +--> pix_mem[j] (owned here) --(DRAW, rate mode)--> RateEncoder: draw t*M + j < x[j]?
      |      (LOAD: one pixel per transfer)                          |
      |                                                              | spike: (j, 2**rate_bits)
      +--(LOAD, constant current, x[j] != 0)-- (j, x[j]) --+         |
                                                           v         v
                                  lst_addr, lst_data, lst_en: the list memory's write port
                                  (entry k = 0, 1, ...; the engine owns that memory)

LOAD (``load`` high): one pixel per ``i`` transfer, pixel 0 first, into ``pix_mem[j]``;
``steps`` and ``mode`` are taken from pixel 0 only. In constant-current mode a nonzero pixel is
written to list entry ``k`` (``k = 0, 1, ...``) in the cycle of its transfer.

DRAW (rate mode, one ``draw`` pulse per step): pixel ``j`` is read in stage 0 (``j = 0`` in the
cycle of ``draw``, ``j = M - 1`` in the ``M``-th), drawn in stage 1 (the rate encoder's input)
and, if it spikes, written to list entry ``k`` in stage 2 (the rate encoder's output). With
``read_ahead`` the pixel memory is a block RAM read a cycle early (address ``j + 1`` while ``j``
is issued, 0 when idle, where every DRAW starts) into a register, as
:attr:`hw.geometry.CoreGeometry.pixel_read_ahead` describes, so the RAM's slow output stays
out of the encoder's compare; the cycles are the same either way.

Timing
------
Cycle ``n`` is the one that ends at clock edge ``n``.

* ``loaded`` is high in the cycle after the ``M``-th pixel's transfer (a one-cycle pulse,
  :attr:`InputEncoder.LOADED_DELAY` = 1): transfer at edge ``n``, ``loaded`` in cycle ``n + 1``.
  ``count`` (constant current), ``last_step`` and ``rate`` are valid from then on. ``i.ready``
  is low from that cycle until ``load`` falls.
* ``drawn`` is high ``M + DRAW_CYCLES_EXTRA`` cycles after ``draw`` (``draw`` in cycle ``d``,
  ``drawn`` in cycle ``d + M + 2``): the ``M`` issues take cycles ``d .. d + M - 1``, the last
  spike is written at the end of cycle ``d + M + 1`` (two stages later) and ``drawn`` is its
  registered flag, so in the cycle of ``drawn`` the list memory already holds the whole list.
  That is the single-layer core's DRAW phase, ``M`` cycles plus ``DRAW_DRAIN`` (2).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.constants import MODE_RATE, RATE_BITS_MAX, STEPS_BITS
from golden.lfsr import check_seed

from .rate_encoder import RateEncoder

__all__ = ["InputEncoder", "list_entry"]


def list_entry(index_bits: int, x_bits: int) -> data.StructLayout:
    """An entry of the pixel list: input ``j`` (low bits) and its value ``x``, as the
    single-layer core's ``lst_mem`` word (:meth:`hw.geometry.CoreGeometry.memories`)."""
    return data.StructLayout({"j": unsigned(index_bits), "x": unsigned(x_bits)})


class InputEncoder(wiring.Component):
    """Stores an image's pixels and writes the pixel list of each step (module documentation).

    Parameters
    ----------
    inputs : int
        ``M``, pixels per image, at least 2 (as the single-layer core).
    pixel_bits : int
        Width of a pixel (``max(1, pixel_max.bit_length())``).
    rate_bits : int
        Random bits per draw, ``1 .. RATE_BITS_MAX``; a spike is the value ``2**rate_bits``.
    lfsr_seed : int
        The rate encoder's seed, ``1 .. 2**32 - 1``: every image's first draw starts from it.
    index_bits : int
        Width of an entry's ``j``, at least ``max(1, (M - 1).bit_length())`` (wider is allowed:
        the engine's entries also name neurons of larger layers).
    x_bits : int
        Width of an entry's ``x``, at least ``max(pixel_bits, rate_bits + 1)``.
    read_ahead : bool
        The pixel memory is a block RAM, read a cycle early into a register (same cycles).

    Attributes
    ----------
    entry : data.StructLayout
        The list entry, :func:`list_entry` ``(index_bits, x_bits)``.
    i_layout : data.StructLayout
        The payload of ``i``.
    DRAW_CYCLES_EXTRA : int
        Cycles from ``draw`` to ``drawn``, minus ``M``: 2.
    LOADED_DELAY : int
        Cycles from the ``M``-th pixel's transfer (its clock edge) to ``loaded``: 1.

    Members
    -------
    i : :py:`In(stream.Signature(i_layout))`
        The pixels, one transfer each, pixel 0 first. ``i_layout`` has fields ``pixel``
        (``pixel_bits``), ``steps`` (``STEPS_BITS``; 0 counts as 1) and ``mode`` (1 bit,
        ``MODE_CURRENT`` or ``MODE_RATE``); ``steps`` and ``mode`` are read from pixel 0 only.
        ``i.ready`` is :py:`load & ~complete` (combinational in ``load``), where the image is
        complete from the ``M``-th transfer until ``load`` falls.
    load : :py:`In(1)`
        The engine's LOAD state: pixels are taken while it is high. It must fall after
        ``loaded`` before the next image can be taken.
    loaded : :py:`Out(1)`
        A one-cycle pulse, the cycle after the ``M``-th pixel's transfer.
    last_step : :py:`Out(STEPS_BITS)`
        ``steps - 1`` (0 for ``steps`` 0), a register: valid from ``loaded`` until the next
        image's pixel 0 is taken.
    rate : :py:`Out(1)`
        The image's mode is ``MODE_RATE``; valid as ``last_step``.
    draw : :py:`In(1)`
        Rate mode only, a one-cycle pulse after ``loaded`` (and, from the second one, in or
        after the cycle of ``drawn``): list the next step's spikes. The first ``draw`` after
        ``loaded`` is step 0 and loads the LFSR from ``lfsr_seed``; each one after it is the
        next step (the step is held by the LFSR's state: each step draws ``M`` times).
    drawn : :py:`Out(1)`
        A one-cycle pulse ``M + DRAW_CYCLES_EXTRA`` cycles after ``draw``: the step's list is
        complete in the list memory.
    count : :py:`Out(range(M + 1))`
        Entries in the list, ``0 .. M``: constant current, valid from ``loaded`` until the next
        image's pixel 0 is taken; rate mode, valid from ``drawn`` until the next ``draw``
        (reads 0 after ``loaded``).
    lst_addr : :py:`Out(range(M))`, lst_data : :py:`Out(entry)`, lst_en : :py:`Out(1)`
        The list memory's write port (``M`` entries, owned by the engine): write ``lst_data``
        at ``lst_addr`` at the clock edge that ends a cycle with ``lst_en`` high.

    Raises
    ------
    TypeError
        If a size or width is not an integer.
    ValueError
        If ``inputs < 2``, a width is too small, ``rate_bits`` is out of range or the seed is
        not a valid LFSR state.
    """

    DRAW_CYCLES_EXTRA = 2
    LOADED_DELAY = 1

    def __init__(self, *, inputs: int, pixel_bits: int, rate_bits: int, lfsr_seed: int,
                 index_bits: int, x_bits: int, read_ahead: bool):
        sizes = {"inputs": inputs, "pixel_bits": pixel_bits, "rate_bits": rate_bits,
                 "index_bits": index_bits, "x_bits": x_bits}
        for name, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        if inputs < 2:
            raise ValueError(f"the input encoder needs at least 2 inputs, not {inputs}")
        if pixel_bits < 1:
            raise ValueError(f"pixel_bits must be at least 1, not {pixel_bits}")
        if not 1 <= rate_bits <= RATE_BITS_MAX:
            raise ValueError(f"rate_bits must be in 1 .. {RATE_BITS_MAX}, not {rate_bits}")
        if index_bits < max(1, (inputs - 1).bit_length()):
            raise ValueError(f"index_bits ({index_bits}) cannot hold input {inputs - 1}")
        if x_bits < max(pixel_bits, rate_bits + 1):
            raise ValueError(f"x_bits ({x_bits}) cannot hold a pixel of {pixel_bits} bits and a "
                             f"spike 2**{rate_bits}")
        self.inputs, self.pixel_bits, self.rate_bits = inputs, pixel_bits, rate_bits
        self.lfsr_seed = check_seed(lfsr_seed)
        self.index_bits, self.x_bits, self.read_ahead = index_bits, x_bits, bool(read_ahead)
        self.entry = list_entry(index_bits, x_bits)
        self.i_layout = data.StructLayout({
            "pixel": unsigned(pixel_bits), "steps": unsigned(STEPS_BITS), "mode": unsigned(1)})
        super().__init__({
            "i": In(stream.Signature(self.i_layout)),
            "load": In(1),
            "loaded": Out(1),
            "last_step": Out(STEPS_BITS),
            "rate": Out(1),
            "draw": In(1),
            "drawn": Out(1),
            "count": Out(range(inputs + 1)),
            "lst_addr": Out(range(inputs)),
            "lst_data": Out(self.entry),
            "lst_en": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        M = self.inputs
        m.submodules.pix_mem = pix_mem = memory.Memory(
            shape=unsigned(self.pixel_bits), depth=M, init=[])
        pix_wr, pix_rd = pix_mem.write_port(), pix_mem.read_port()
        m.submodules.rate_encoder = encoder = RateEncoder(
            pixel_bits=self.pixel_bits, rate_bits=self.rate_bits)
        m.d.comb += [encoder.seed.eq(self.lfsr_seed), encoder.o.ready.eq(1)]

        # Entries listed so far (the next entry's address): the load's and the draws'.
        k = Signal(range(M + 1))
        m.d.comb += self.count.eq(k)
        # The next draw is the image's first: it loads the LFSR from the seed.
        restart = Signal()

        # --- LOAD: pixel `pixel` into pix_mem; constant current, a nonzero one into the list.
        pixel = Signal(range(M))
        complete = Signal()
        m.d.comb += self.i.ready.eq(self.load & ~complete)
        take = self.i.valid & self.i.ready
        first = pixel == 0
        # Pixel 0 carries the mode; the register holds it for the others.
        rate_mode = Mux(first, self.i.p.mode == MODE_RATE, self.rate)
        listed = Signal()
        m.d.comb += listed.eq(take & (self.i.p.pixel != 0) & ~rate_mode)
        # Pixel 0 starts the list at entry 0, so no cycle is spent clearing k between images.
        slot = Mux(first, 0, k)
        m.d.comb += [pix_wr.addr.eq(pixel), pix_wr.data.eq(self.i.p.pixel), pix_wr.en.eq(take)]
        m.d.sync += self.loaded.eq(take & (pixel == M - 1))
        with m.If(~self.load):
            m.d.sync += complete.eq(0)
        with m.If(take):
            m.d.sync += [pixel.eq(pixel + 1), k.eq(slot + listed)]
            with m.If(first):
                steps = self.i.p.steps
                m.d.sync += [self.last_step.eq(Mux(steps == 0, 0, steps - 1)),
                             self.rate.eq(self.i.p.mode == MODE_RATE)]
            with m.If(pixel == M - 1):
                m.d.sync += [pixel.eq(0), complete.eq(1), restart.eq(1)]

        # --- DRAW: stage 0 issues pixel j (j = 0 in the cycle of `draw`), stage 1 draws it in
        # the rate encoder, stage 2 (the encoder's output) lists a spike; `drawn` follows the
        # last pixel's stage 2 by a register.
        j = Signal(range(M))
        drawing = Signal()  # issuing pixels 1 .. M - 1
        issue = Signal()
        m.d.comb += issue.eq(self.draw | drawing)
        with m.If(issue):
            m.d.sync += [j.eq(j + 1), drawing.eq(1)]
            with m.If(j == M - 1):
                m.d.sync += [j.eq(0), drawing.eq(0)]
        with m.If(self.draw):
            m.d.sync += [k.eq(0), restart.eq(0)]
        d1_valid, d1_first, d1_last, d1_j = Signal(), Signal(), Signal(), Signal(range(M))
        m.d.sync += [d1_valid.eq(issue), d1_first.eq(self.draw & restart),
                     d1_last.eq(issue & (j == M - 1)), d1_j.eq(j)]
        m.d.comb += [encoder.i.valid.eq(d1_valid), encoder.i.p.first.eq(d1_first)]
        if self.read_ahead:
            # Address j + 1 while j is issued, else 0, where every DRAW starts: the register
            # then holds pixel j in j's stage 1.
            ahead = Signal(range(M), name="pix_ahead")
            m.d.comb += ahead.eq(Mux(issue & (j != M - 1), j + 1, 0))
            d1_pixel = Signal(self.pixel_bits, name="d1_pixel")
            m.d.sync += d1_pixel.eq(pix_rd.data)
            m.d.comb += [pix_rd.addr.eq(ahead), encoder.i.p.pixel.eq(d1_pixel)]
        else:
            m.d.comb += [pix_rd.addr.eq(j), encoder.i.p.pixel.eq(pix_rd.data)]
        d2_last, d2_j = Signal(), Signal(range(M))
        m.d.sync += [d2_last.eq(d1_last), d2_j.eq(d1_j), self.drawn.eq(d2_last)]
        spike = Signal()
        m.d.comb += spike.eq(encoder.o.valid & (encoder.o.p.value != 0))

        # --- the list's write port: a spike (DRAW), else a nonzero pixel (LOAD); the two
        # phases never overlap.
        with m.If(spike):
            m.d.comb += [self.lst_addr.eq(k), self.lst_data.j.eq(d2_j),
                         self.lst_data.x.eq(encoder.o.p.value), self.lst_en.eq(1)]
            m.d.sync += k.eq(k + 1)
        with m.Else():
            m.d.comb += [self.lst_addr.eq(slot), self.lst_data.j.eq(pixel),
                         self.lst_data.x.eq(self.i.p.pixel), self.lst_en.eq(listed)]
        return m
