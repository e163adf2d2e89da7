"""Readouts: class scores at the end of an image, and the winning class.

Two cores, one per kind of readout (``golden.layers``, ``golden.constants.READOUTS``), with the
same result stream; both find the label with :class:`hw.argmax.Argmax`.

:class:`Readout` (``psc``), the PSC-filtered linear decoder (``golden.model.readout`` and
``golden.model.argmax``)::

    score[c] = dec_bias[c] + sum_n dec[c, n] * psc[n]        signed SCORE_BITS, cannot overflow
    label    = the lowest c with score[c] == max(score)

:class:`ScoreReadout` (``li``, ``spikes``), scores the engine has already: the membranes ``v``
of the ``C`` non-spiking output neurons after the last step (signed ``V_BITS``, Q5.10), or the
spike counts of the ``C`` spiking output neurons over the image (unsigned ``STEPS_BITS``)::

    score[c] = value[c]                      sign- or zero-extended to signed SCORE_BITS
    label    = the lowest c with score[c] == max(score)

The argmax is a tree of ``ceil(log2 C)`` registered levels (:mod:`hw.argmax`). Each node
compares two candidates, the lower classes on the left, and takes the right one only if its
score is strictly greater, so ties go to the lowest class at every node and hence overall.

Data flow and timing: Readout
-----------------------------
The PSC values arrive on ``i`` in neuron order, one per transfer; ``i.ready`` is high whenever
the readout is not busy with a result, so a producer may send one value per cycle. The decoder
ROM (``N`` words of ``C`` weights) is addressed by the readout's own neuron counter. A value
taken in cycle ``n`` meets its decoder word in a register in cycle ``n + 1`` (the block RAM's
slow output goes straight into that register), their ``C`` products are registered in cycle
``n + 2``, and ``C`` accumulators add them in cycle ``n + 3``, the first neuron starting from
``dec_bias``. After the ``N``-th transfer:

* 3 cycles: the last weights are registered, multiplied, then added (the scores are final);
* ``ceil(log2 C)`` cycles: the argmax (started as the scores are final) settles, one level per
  cycle;
* then ``o.valid`` is high, with a stable payload, until ``o.ready``; after that transfer the
  readout takes the next image's PSC values.

From the last ``i`` transfer to ``o.valid`` is ``ceil(log2 C) + 4`` cycles
(:attr:`Readout.latency`).

Data flow and timing: ScoreReadout
----------------------------------
The ``C`` values arrive on ``i``, class 0 first, one per transfer (one per cycle at most), and
shift into ``C`` registers of the value's own width; the argmax compares them in that width
(the order is the same as after the extension, and the comparators are narrower). After the
``C``-th transfer:

* ``ceil(log2 C)`` cycles: the argmax (started as the last value is registered) settles, one
  level per cycle;
* then ``o.valid`` is high, with a stable payload, until ``o.ready``; after that transfer the
  readout takes the next image's values.

From the last ``i`` transfer to ``o.valid`` is ``ceil(log2 C) + 1`` cycles
(:attr:`ScoreReadout.latency`).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.constants import (
    D_BITS,
    PSC_BITS,
    READOUT_LI,
    READOUT_SPIKES,
    SCORE_BITS,
    STEPS_BITS,
    V_BITS,
)

from .argmax import Argmax

__all__ = ["VALUE_FORMATS", "Readout", "ScoreReadout", "result_layout"]

#: The values a :class:`ScoreReadout` takes per readout: ``(value_bits, signed)``. ``li``: the
#: output layer's membranes (Q5.10); ``spikes``: its spike counts, up to one per step.
VALUE_FORMATS = {
    READOUT_LI: (V_BITS, True),
    READOUT_SPIKES: (STEPS_BITS, False),
}


def result_layout(classes: int) -> data.StructLayout:
    """Payload of a readout's ``o``: ``label`` and ``C`` signed ``SCORE_BITS`` ``scores``.

    ``label`` is unsigned, enough bits for ``C - 1`` (at least 1).
    """
    return data.StructLayout({
        "label": unsigned(max(1, (classes - 1).bit_length())),
        "scores": data.ArrayLayout(signed(SCORE_BITS), classes),
    })


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
        Payload of ``o`` (:func:`result_layout`): ``label``, unsigned, enough bits for
        ``C - 1`` (at least 1), the winning class; ``scores``, an array of ``C`` signed
        ``SCORE_BITS`` class scores.

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
        self.o_layout = result_layout(classes)
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
        add1, first1, last1, psc1 = Signal(), Signal(), Signal(), Signal(PSC_BITS)
        take = self.i.valid & self.i.ready
        m.d.sync += [add1.eq(take), first1.eq(n == 0), last1.eq(n == neurons - 1),
                     psc1.eq(self.i.payload)]
        add2, first2, last2, psc2 = Signal(), Signal(), Signal(), Signal(PSC_BITS)
        weights = [Signal(signed(D_BITS), name=f"weight{c}") for c in range(classes)]
        m.d.sync += [add2.eq(add1), first2.eq(first1), last2.eq(last1), psc2.eq(psc1)]
        m.d.sync += [weights[c].eq(dec_rd.data[c]) for c in range(classes)]
        add3, first3, last3 = Signal(), Signal(), Signal()
        products = [Signal(signed(D_BITS + PSC_BITS + 1), name=f"product{c}")
                    for c in range(classes)]
        m.d.sync += [add3.eq(add2), first3.eq(first2), last3.eq(last2)]
        m.d.sync += [products[c].eq(weights[c] * psc2) for c in range(classes)]
        scores = [Signal(signed(SCORE_BITS), name=f"score{c}") for c in range(classes)]
        with m.If(add3):
            for c in range(classes):
                start = Const(int(self.dec_bias[c]), signed(SCORE_BITS))
                m.d.sync += scores[c].eq(Mux(first3, start, scores[c]) + products[c])

        # The scores are final in the cycle after the last neuron's products are added: the
        # argmax starts then, and its result is the readout's.
        m.submodules.argmax = argmax = Argmax(classes)
        final = Signal()
        m.d.sync += final.eq(add3 & last3)
        m.d.comb += argmax.start.eq(final)
        for k in range(classes):
            m.d.comb += argmax.scores[k].eq(scores[k])
        wiring.connect(m, argmax.o, wiring.flipped(self.o))

        with m.FSM(name="readout"):
            with m.State("ACCUMULATE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += n.eq(n + 1)
                    with m.If(n == neurons - 1):
                        m.d.sync += n.eq(0)
                        m.next = "RESULT"
            with m.State("RESULT"):
                # The last neuron's weights are registered, multiplied, then added; the argmax
                # tree settles; the result waits on o until taken. The scores stay as they are.
                with m.If(self.o.valid & self.o.ready):
                    m.next = "ACCUMULATE"
        return m


class ScoreReadout(wiring.Component):
    """``C`` class scores streamed in, and argmax: the ``li`` and ``spikes`` readouts.

    No decoder and no multipliers: ``score[c]`` is the ``c``-th value of the image, extended
    to signed ``SCORE_BITS`` (:data:`VALUE_FORMATS` gives each readout's values).

    Parameters
    ----------
    classes : int
        ``C``, the number of classes (and of values per image), at least 2.
    value_bits : int
        Width of one value.
    signed : bool
        The values are two's complement (sign-extended) or unsigned (zero-extended).

    Attributes
    ----------
    classes, value_bits, signed : int, int, bool
        As given.
    value_shape : Shape
        Shape of one value on ``i``.
    argmax_levels : int
        Levels of the argmax tree, ``ceil(log2 C)``.
    latency : int
        Cycles from the last ``i`` transfer of an image to ``o.valid``: ``argmax_levels + 1``.
    o_layout : data.StructLayout
        Payload of ``o``, as :class:`Readout`'s (:func:`result_layout`).

    Members
    -------
    i : :py:`In(stream.Signature(value_shape))`
        The values of classes ``0 .. C-1`` of one image, in order; the ``C``-th ends the image.
        ``i.ready`` is high while the readout collects them (not while it settles or holds a
        result).
    o : :py:`Out(stream.Signature(o_layout))`
        One transfer per image, ``latency`` cycles after its last ``i`` transfer; held until
        taken.

    Raises
    ------
    ValueError
        If there are fewer than 2 classes, or the values do not fit a signed ``SCORE_BITS``
        score.
    """

    def __init__(self, classes: int, value_bits: int, signed: bool):
        widest = SCORE_BITS if signed else SCORE_BITS - 1
        if classes < 2 or not 1 <= value_bits <= widest:
            raise ValueError(f"need at least 2 classes and 1 .. {widest} bit "
                             f"{'signed' if signed else 'unsigned'} values, got {classes} "
                             f"classes of {value_bits} bits")
        self.classes = classes
        self.value_bits = value_bits
        self.signed = bool(signed)
        self.value_shape = Shape(value_bits, self.signed)
        self.argmax_levels = (classes - 1).bit_length()
        self.latency = self.argmax_levels + 1
        self.o_layout = result_layout(classes)
        super().__init__({
            "i": In(stream.Signature(self.value_shape)),
            "o": Out(stream.Signature(self.o_layout)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        classes = self.classes

        # A shift register, class 0 leaving last: after the C-th transfer value c is in
        # values[c], with no write decoder.
        values = [Signal(self.value_shape, name=f"value{c}") for c in range(classes)]
        take = self.i.valid & self.i.ready
        with m.If(take):
            m.d.sync += [values[c].eq(values[c + 1]) for c in range(classes - 1)]
            m.d.sync += values[-1].eq(self.i.payload)

        m.submodules.argmax = argmax = Argmax(classes, self.value_shape)
        k = Signal(range(classes))
        final = Signal()
        m.d.sync += final.eq(take & (k == classes - 1))
        m.d.comb += argmax.start.eq(final)
        for c in range(classes):
            m.d.comb += argmax.scores[c].eq(values[c])
        m.d.comb += [self.o.p.label.eq(argmax.o.p.label), self.o.valid.eq(argmax.o.valid),
                     argmax.o.ready.eq(self.o.ready)]
        for c in range(classes):
            # Sign- or zero-extended, as the value's shape is.
            m.d.comb += self.o.p.scores[c].eq(argmax.o.p.scores[c])

        with m.FSM(name="score_readout"):
            with m.State("COLLECT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == classes - 1):
                        m.d.sync += k.eq(0)
                        m.next = "RESULT"
            with m.State("RESULT"):
                # The argmax settles; the result waits on o until taken. The values stay.
                with m.If(self.o.valid & self.o.ready):
                    m.next = "COLLECT"
        return m
