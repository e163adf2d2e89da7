"""Linear readout and argmax: class scores from the PSC values, and the winning class.

Equation (``golden.model.readout`` and ``golden.model.argmax``)::

    score[c] = dec_bias[c] + sum_n dec[c, n] * psc[n]        signed SCORE_BITS, cannot overflow
    label    = the lowest c with score[c] == max(score)

Data flow and timing
--------------------
The PSC values arrive on ``i`` in neuron order, one per transfer; ``i.ready`` is high whenever
the readout is not busy with a result, so a producer may send one value per cycle. The decoder
ROM (``N`` words of ``C`` weights) is addressed by the readout's own neuron counter and read one
cycle ahead of the multiply, and ``C`` accumulators add ``dec[c, n] * psc[n]`` in parallel, the
first neuron starting from ``dec_bias``. After the ``N``-th transfer:

* 2 cycles: the last products are formed, then added (the scores are final);
* ``C - 1`` cycles: an upward scan keeps the best class, replacing it only on a strictly greater
  score, so ties go to the lowest class;
* then ``o.valid`` is high, with a stable payload, until ``o.ready``; after that transfer the
  readout takes the next image's PSC values.

From the last ``i`` transfer to ``o.valid`` is ``C + 2`` cycles.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.constants import D_BITS, PSC_BITS, SCORE_BITS

__all__ = ["Readout"]


class Readout(wiring.Component):
    """Decoder ROM, ``C`` class accumulators and argmax.

    Parameters
    ----------
    dec : int array (C, N)
        Decoder weights, signed ``D_BITS``: the ROM contents.
    dec_bias : int array (C,)
        Decoder bias, signed ``SCORE_BITS``.

    Members
    -------
    i : :py:`In(stream.Signature(unsigned(PSC_BITS)))`
        PSC values of neurons ``0 .. N-1`` of one image, in order; the ``N``-th ends the image.
    o : :py:`Out(stream.Signature(o_layout))`
        One transfer per image. ``o_layout`` has fields ``label`` (winning class, enough bits
        for ``C - 1``) and ``scores`` (``C`` signed ``SCORE_BITS`` class scores).
    """

    def __init__(self, dec: np.ndarray, dec_bias: np.ndarray):
        dec = np.asarray(dec)
        dec_bias = np.asarray(dec_bias)
        classes, neurons = dec.shape
        if classes < 2 or dec_bias.shape != (classes,):
            raise ValueError(f"need at least 2 classes and one bias per class, got dec "
                             f"{dec.shape} and dec_bias {dec_bias.shape}")
        self.dec = dec
        self.dec_bias = dec_bias
        self.o_layout = data.StructLayout({
            "label": unsigned(max(1, (classes - 1).bit_length())),
            "scores": data.ArrayLayout(signed(SCORE_BITS), classes),
        })
        super().__init__({
            "i": In(stream.Signature(unsigned(PSC_BITS))),
            "o": Out(stream.Signature(self.o_layout)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        classes, neurons = self.dec.shape

        m.submodules.dec_mem = dec_mem = memory.Memory(
            shape=data.ArrayLayout(signed(D_BITS), classes), depth=neurons,
            init=[[int(self.dec[c, n]) for c in range(classes)] for n in range(neurons)])
        dec_rd = dec_mem.read_port()

        n = Signal(range(neurons))
        m.d.comb += dec_rd.addr.eq(n)

        # Stage 1: the weights of the neuron taken last cycle are on dec_rd.data; the products
        # are registered. Stage 2 accumulates them. (Multiply and 32-bit add in one cycle were
        # the core's critical path on ECP5.)
        add1, first1, psc = Signal(), Signal(), Signal(PSC_BITS)
        take = self.i.valid & self.i.ready
        m.d.sync += [add1.eq(take), first1.eq(n == 0), psc.eq(self.i.payload)]
        add2, first2 = Signal(), Signal()
        products = [Signal(signed(D_BITS + PSC_BITS + 1), name=f"product{c}")
                    for c in range(classes)]
        m.d.sync += [add2.eq(add1), first2.eq(first1)]
        m.d.sync += [products[c].eq(dec_rd.data[c] * psc) for c in range(classes)]
        scores = Array(Signal(signed(SCORE_BITS), name=f"score{c}") for c in range(classes))
        with m.If(add2):
            for c in range(classes):
                start = Const(int(self.dec_bias[c]), signed(SCORE_BITS))
                m.d.sync += scores[c].eq(Mux(first2, start, scores[c]) + products[c])

        best = Signal(range(classes))
        c = Signal(range(classes))
        m.d.comb += self.o.p.label.eq(best)
        for k in range(classes):
            m.d.comb += self.o.p.scores[k].eq(scores[k])

        with m.FSM(name="readout"):
            with m.State("ACCUMULATE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += n.eq(n + 1)
                    with m.If(n == neurons - 1):
                        m.d.sync += n.eq(0)
                        m.next = "SETTLE"
            with m.State("SETTLE"):
                # The last neuron's products are formed, then added.
                m.next = "SETTLE2"
            with m.State("SETTLE2"):
                m.d.sync += [best.eq(0), c.eq(1)]
                m.next = "SCAN"
            with m.State("SCAN"):
                # Strictly greater replaces the best: ties keep the lowest class index.
                with m.If(scores[c] > scores[best]):
                    m.d.sync += best.eq(c)
                m.d.sync += c.eq(c + 1)
                with m.If(c == classes - 1):
                    m.next = "RESULT"
            with m.State("RESULT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "ACCUMULATE"
        return m
