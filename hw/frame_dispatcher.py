"""The frame engine's second stage: requests in order, images into the core, replies out.

A CLASSIFY request streams its image slot into the core, one pixel per cycle as soon as the
core takes a new image, then frees the slot. The slot holds the image's nonzero pixels as
entries (index, value) in increasing index order, ended by an entry of value 0
(:func:`hw.frame_parser.slot_entry_layout`); the dispatcher expands them, so the core sees all
M pixels, zeros included, one per cycle: pixel ``j`` is the value of the entry held in a
register if that entry's index is ``j`` (and its value nonzero), else 0, and a matched entry is
replaced, in the cycle it is taken, by the next one, which the read port holds (it is then
addressed with the one after, so its data is there at the next edge). Every request then goes
on, in order, as a reply
(:data:`REPLY_LAYOUT`) to the responder. The request is taken only when its reply is passed on,
so ``steps`` and ``mode`` stay on ``core_i`` for the whole image.

Timing: a request other than CLASSIFY passes in the cycle it is offered (when ``replies`` is
ready). For a CLASSIFY of ``M`` pixels with a ready core, the first pixel transfers 2 cycles
after the request is first offered (entry 0 is read in the first, entry 1 in the second), one
pixel per cycle follows, and the request passes in the cycle after the last pixel: ``M + 2``
cycles in all.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .frame_parser import REQUEST_LAYOUT, SLOT_BITS, Kind, slot_entry_layout

__all__ = ["FrameDispatcher", "REPLY_LAYOUT"]

#: What the responder needs of a request: ``status`` matters for ``Kind.ERROR`` only.
REPLY_LAYOUT = data.StructLayout({
    name: REQUEST_LAYOUT.members[name] for name in ("kind", "cmd", "seq", "status")})


class FrameDispatcher(wiring.Component):
    """Requests to the core and to the responder, in arrival order.

    Parameters
    ----------
    inputs : int
        ``M``, pixels per image.
    i_layout : data.StructLayout
        The core's input payload (``LifCore.i_layout``: ``pixel``, ``steps``, ``mode``).

    Members
    -------
    requests : :py:`In(stream.Signature(REQUEST_LAYOUT))`
        From the parser, through its queue.
    replies : :py:`Out(stream.Signature(REPLY_LAYOUT))`
        To the responder, through its queue: one per request, in order.
    core_i : :py:`Out(stream.Signature(i_layout))`
        To the core: ``M`` pixels of slot ``requests.payload.slot``, pixel 0 first, with the
        request's ``steps`` and ``mode`` on every one.
    slot_rd : :py:`In(memory.ReadPort.Signature(addr_width=..., shape=slot_entry_layout(...)))`
        Synchronous read port of the slot memory (one cycle of latency), addressed
        ``slot << index_bits | entry`` as the parser writes it.
    slot_freed : :py:`Out(1)`
        Pulse: the last pixel of a slot has been taken by the core.
    idle : :py:`Out(1)`
        High while no request is being worked on.
    """

    def __init__(self, *, inputs: int, i_layout: data.StructLayout):
        self.inputs = inputs
        self.index_bits = max(1, ceil_log2(inputs))
        self.i_layout = i_layout
        pixel_bits = Shape.cast(i_layout["pixel"].shape).width
        self.entry_layout = slot_entry_layout(pixel_bits, self.index_bits)
        slot_port = memory.ReadPort.Signature(addr_width=SLOT_BITS + self.index_bits,
                                              shape=self.entry_layout)
        super().__init__({"requests": In(stream.Signature(REQUEST_LAYOUT)),
                          "replies": Out(stream.Signature(REPLY_LAYOUT)),
                          "core_i": Out(stream.Signature(i_layout)),
                          "slot_rd": In(slot_port),
                          "slot_freed": Out(1),
                          "idle": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        request = self.requests.payload
        m.d.comb += [self.replies.payload[name].eq(request[name]) for name in REPLY_LAYOUT.members]
        m.d.comb += [self.core_i.payload.steps.eq(request.steps),
                     self.core_i.payload.mode.eq(request.mode)]

        def pass_on():
            # The request leaves as its reply (the responder's queue applies back-pressure).
            m.d.comb += [self.replies.valid.eq(self.requests.valid),
                         self.requests.ready.eq(self.replies.ready)]

        with m.FSM(name="dispatcher"):
            with m.State("TAKE"):
                # The slot's entry 0 is read here, so LOAD starts with it on the read port.
                m.d.comb += [
                    self.idle.eq(1), self.slot_rd.en.eq(1),
                    self.slot_rd.addr.eq(Cat(Const(0, self.index_bits), request.slot))]
                with m.If(request.kind == Kind.CLASSIFY):
                    with m.If(self.requests.valid):
                        m.next = "LOAD"
                with m.Else():
                    pass_on()
            with m.State("LOAD"):
                with m.If(self._load(m)):
                    m.next = "PASS"
            with m.State("PASS"):
                pass_on()
                with m.If(self.replies.ready):
                    m.next = "TAKE"
        return m

    def _load(self, m: Module) -> Signal:
        """Stream the request's slot into the core, zeros between its entries; returns high
        when the last pixel is taken.

        The entry of the next nonzero pixel is held in a register (``held``), the one after
        it on the read port's output: a matched entry is replaced by the port's output in
        the cycle it is taken, while the port reads the next one. Nothing but that register
        takes the read port's output (the slot memory is a block RAM for MNIST, 2,048 x 18
        bits, whose 5.8 ns output into the index compare and back into its own address made
        57.9 MHz on the ULX3S-85F). Entry 0 is read in TAKE, entry 1 in LOAD's first cycle.
        """
        at = Signal(range(self.inputs))        # index of the pixel on core_i
        held = Signal(self.entry_layout)       # the next nonzero pixel's entry
        next_at = Signal(self.index_bits)      # the entry the read port holds (after held's)
        read_at = Signal(self.index_bits)      # the entry it is addressed with
        beat = Signal()  # core_i holds a pixel
        hit = Signal()   # the pixel on core_i is the held entry's
        taken = Signal()
        done = Signal()
        m.d.comb += [
            hit.eq(beat & (held.value != 0) & (held.index == at)),
            taken.eq(beat & self.core_i.ready),
            # The address does not wait for the core's ready (timing: the core's ready, then
            # the LUT-RAM read, was the ULX3S-85F's critical path); the read port's enable
            # does: it holds the entry until the held one is taken.
            read_at.eq(Mux(~beat | hit, next_at + 1, next_at)),
            self.slot_rd.addr.eq(Cat(read_at, self.requests.payload.slot)),
            self.slot_rd.en.eq(~beat | taken),
            self.core_i.valid.eq(beat),
            self.core_i.payload.pixel.eq(Mux(hit, held.value, 0)),
        ]
        with m.If(~beat | taken):
            m.d.sync += next_at.eq(read_at)
        with m.If(~beat | (hit & taken)):
            m.d.sync += held.eq(self.slot_rd.data)
        with m.If(~beat):
            # The first cycle: entry 0 (read in TAKE) into held; pixel 0 is offered from the
            # next.
            m.d.sync += beat.eq(1)
        with m.Elif(taken):
            with m.If(at == self.inputs - 1):
                m.d.sync += [beat.eq(0), at.eq(0), next_at.eq(0)]
                m.d.comb += [done.eq(1), self.slot_freed.eq(1)]
            with m.Else():
                m.d.sync += at.eq(at + 1)
        return done
