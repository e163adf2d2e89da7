"""Linear readout and argmax: class scores from the PSC values, and the winning class.

Equation (``golden.model.readout`` and ``golden.model.argmax``)::

    score[c] = dec_bias[c] + sum_n dec[c, n] * psc[n]        signed SCORE_BITS, cannot overflow
    label    = the lowest c with score[c] == max(score)

The argmax is a tree of ``ceil(log2 C)`` registered levels. Each node compares two candidates,
the lower classes on the left, and takes the right one only if its score is strictly greater,
so ties go to the lowest class at every node and hence overall.

Data flow and timing
--------------------
The PSC values arrive on ``i`` in neuron order, one per transfer; ``i.ready`` is high whenever
the readout is not busy with a result, so a producer may send one value per cycle. The decoder
ROM (``N`` words of ``C`` weights) is addressed by the readout's own neuron counter. A value
taken in cycle ``n`` meets its decoder word in a register in cycle ``n + 1`` (the block RAM's
slow output goes straight into that register), their ``C`` products are registered in cycle
``n + 2``, and ``C`` accumulators add them in cycle ``n + 3``, the first neuron starting from
``dec_bias``. After the ``N``-th transfer:

* 3 cycles: the last weights are registered, multiplied, then added (the scores are final);
* ``ceil(log2 C)`` cycles: the argmax tree settles, one level per cycle;
* then ``o.valid`` is high, with a stable payload, until ``o.ready``; after that transfer the
  readout takes the next image's PSC values.

From the last ``i`` transfer to ``o.valid`` is ``ceil(log2 C) + 4`` cycles
(:attr:`Readout.latency`).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
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

    Attributes
    ----------
    dec, dec_bias : numpy.ndarray
        As given.
    argmax_levels : int
        Levels of the argmax tree, ``ceil(log2 C)``.
    latency : int
        Cycles from the last ``i`` transfer of an image to ``o.valid``: ``argmax_levels + 4``.
    o_layout : data.StructLayout
        Payload of ``o``: ``label``, unsigned, enough bits for ``C - 1`` (at least 1), the
        winning class; ``scores``, an array of ``C`` signed ``SCORE_BITS`` class scores.

    Members
    -------
    i : :py:`In(stream.Signature(unsigned(PSC_BITS)))`
        PSC values (UQ0.12) of neurons ``0 .. N-1`` of one image, in order; the ``N``-th ends
        the image. ``i.ready`` is high while the readout accumulates (not while it settles or
        holds a result).
    o : :py:`Out(stream.Signature(o_layout))`
        One transfer per image, ``latency`` cycles after its last ``i`` transfer; held until
        taken.

    Raises
    ------
    ValueError
        If there are fewer than 2 classes or ``dec_bias`` does not have one bias per class.
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
        self.argmax_levels = (classes - 1).bit_length()
        self.latency = self.argmax_levels + 4
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

        # Stage 1: the weights of the neuron taken last cycle are on dec_rd.data and are
        # registered as they are (a block RAM's output is slow on the ECP5). Stage 2 registers
        # the products, stage 3 accumulates them. (ROM, multiply and 32-bit add in one cycle
        # were the core's critical path on ECP5.)
        add1, first1, psc1 = Signal(), Signal(), Signal(PSC_BITS)
        take = self.i.valid & self.i.ready
        m.d.sync += [add1.eq(take), first1.eq(n == 0), psc1.eq(self.i.payload)]
        add2, first2, psc2 = Signal(), Signal(), Signal(PSC_BITS)
        weights = [Signal(signed(D_BITS), name=f"weight{c}") for c in range(classes)]
        m.d.sync += [add2.eq(add1), first2.eq(first1), psc2.eq(psc1)]
        m.d.sync += [weights[c].eq(dec_rd.data[c]) for c in range(classes)]
        add3, first3 = Signal(), Signal()
        products = [Signal(signed(D_BITS + PSC_BITS + 1), name=f"product{c}")
                    for c in range(classes)]
        m.d.sync += [add3.eq(add2), first3.eq(first2)]
        m.d.sync += [products[c].eq(weights[c] * psc2) for c in range(classes)]
        scores = [Signal(signed(SCORE_BITS), name=f"score{c}") for c in range(classes)]
        with m.If(add3):
            for c in range(classes):
                start = Const(int(self.dec_bias[c]), signed(SCORE_BITS))
                m.d.sync += scores[c].eq(Mux(first3, start, scores[c]) + products[c])

        # The argmax tree: free-running registers, valid argmax_levels cycles after the scores
        # are final. (A sequential scan had a compare-and-select loop, indexed by a counter,
        # that was the core's critical path on ECP5.) An odd node passes through unregistered:
        # its inputs are stable by then, so it only settles earlier.
        nodes = [(Const(c, range(classes)), scores[c]) for c in range(classes)]
        for level in range(self.argmax_levels):
            paired = []
            for k in range(0, len(nodes) - 1, 2):
                (left_c, left_s), (right_c, right_s) = nodes[k], nodes[k + 1]
                # Reset-less: free-running, their values matter only once the scores are
                # final, so they need no reset; with one, Yosys drove the class bits' LSR from
                # the 32-bit compare (the ULX3S-85F's critical path, 98.5-99.6 MHz).
                node_c = Signal(range(classes), name=f"argmax{level + 1}_{k // 2}_class",
                                reset_less=True)
                node_s = Signal(signed(SCORE_BITS), name=f"argmax{level + 1}_{k // 2}_score",
                                reset_less=True)
                right = right_s > left_s
                m.d.sync += [node_c.eq(Mux(right, right_c, left_c)),
                             node_s.eq(Mux(right, right_s, left_s))]
                paired.append((node_c, node_s))
            if len(nodes) % 2:
                paired.append(nodes[-1])
            nodes = paired
        best = nodes[0][0]
        c = Signal(range(max(2, self.argmax_levels + 1)))
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
                # The last neuron's weights are registered, multiplied, then added.
                m.next = "SETTLE1"
            with m.State("SETTLE1"):
                m.next = "SETTLE2"
            with m.State("SETTLE2"):
                m.d.sync += c.eq(1)
                m.next = "ARGMAX"
            with m.State("ARGMAX"):
                # Level c of the tree is registered at the end of this cycle.
                m.d.sync += c.eq(c + 1)
                with m.If(c == self.argmax_levels):
                    m.next = "RESULT"
            with m.State("RESULT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "ACCUMULATE"
        return m
