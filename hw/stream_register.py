"""A register slice on a stream: the payload and ``valid`` leave a register, one per cycle.

``o.valid`` and ``o.payload`` are registers, so nothing of the producer's logic reaches the
consumer's in the same cycle: a long path is cut in two. ``i.ready = ~o.valid | o.ready``
(the register is empty, or emptied in this cycle), so a stream that never stalls passes one
transfer per cycle, one cycle later. The stream rules hold: ``o.valid`` does not wait for
``o.ready``, and a held transfer does not change until it is taken (``i.ready`` is low then).

The frame engine puts one between the dispatcher and the core (:mod:`hw.frame_dispatcher`):
there the pixel mux that reads the image slot's block RAM ran into the core's pixel memory
and input list, 3.4 + 4.1 ns of routing between them (79 MHz, MNIST, ULX3S-85F).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamRegister"]


class StreamRegister(wiring.Component):
    """One register stage on a stream of ``shape``.

    Parameters
    ----------
    shape : ShapeLike
        The payload's shape (a ``data.StructLayout`` is kept as such).

    Members
    -------
    i : :py:`In(stream.Signature(shape))`
        Taken whenever the register is empty or is emptied in the same cycle.
    o : :py:`Out(stream.Signature(shape))`
        The transfers of ``i``, in order, each one cycle after it was taken (or later under
        back-pressure); ``valid`` and ``payload`` are registers.
    """

    def __init__(self, shape):
        self.shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += self.o.valid.eq(self.i.valid)
        # The payload has no reset: it counts only with valid.
        payload = Signal(self.shape, reset_less=True)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += payload.eq(self.i.payload)
        m.d.comb += self.o.payload.eq(payload)
        return m
