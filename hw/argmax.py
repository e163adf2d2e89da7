"""Argmax: the winning class of ``C`` scores, with golden's tie rule.

Equation (``golden.model.argmax``)::

    label = the lowest c with scores[c] == max(scores)

The argmax is a tree of ``ceil(log2 C)`` registered levels. Each node compares two candidates,
the lower classes on the left, and takes the right one only if its score is strictly greater,
so ties go to the lowest class at every node and hence overall. A level with an odd number of
candidates passes its last one through to the next level unregistered.

Data flow and timing
--------------------
The scores are not copied in: the tree reads the producer's own registers (the readout's
accumulators or value registers), so the producer holds them from ``start`` until the result
on ``o`` is taken. (A copy would cost ``C`` registers of the score width per level, and the
producer holds its scores for the result's payload anyway.) With ``start`` high in cycle ``s``:

* cycles ``s .. s + levels - 1``: the tree settles, level ``k`` registered at the end of cycle
  ``s + k - 1`` (free-running registers: they follow the scores all the time, and their values
  matter only once the scores are held);
* from cycle ``s + levels``: ``o.valid`` is high, with ``label`` and ``scores`` stable, until
  ``o.ready``.

So ``o.valid`` comes ``levels`` cycles after ``start`` (:attr:`Argmax.levels`); a ``start`` with
``o.ready`` held high gives one result per ``levels + 1`` cycles.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, ShapeCastable, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.constants import SCORE_BITS

__all__ = ["Argmax"]


class Argmax(wiring.Component):
    """Registered argmax tree over ``C`` held scores, result as a stream.

    Parameters
    ----------
    classes : int
        ``C``, the number of scores, at least 2.
    shape : shape-castable, optional
        Shape of one score, signed or unsigned; default signed ``SCORE_BITS``.

    Attributes
    ----------
    classes : int
        As given.
    score_shape : Shape
        Shape of one score.
    levels : int
        Registered levels of the tree, ``ceil(log2 C)``: cycles from ``start`` to ``o.valid``.
    label_shape : Shape
        Unsigned, enough bits for ``C - 1``.
    o_layout : data.StructLayout
        Payload of ``o``: ``label`` (``label_shape``), the winning class; ``scores``, an array
        of ``C`` scores of ``score_shape``, the ones the label was found from.

    Members
    -------
    scores : :py:`In(data.ArrayLayout(score_shape, C))`
        The candidates, class 0 first. They must not change from the cycle ``start`` is high
        until the result on ``o`` is taken.
    start : :py:`In(1)`
        High for one cycle: the scores are final (and held from now on). Only while no result
        is settling or waiting on ``o``.
    o : :py:`Out(stream.Signature(o_layout))`
        One transfer per ``start``, offered ``levels`` cycles after it and held until taken;
        ``o.p.scores`` are the input scores, passed through.

    Raises
    ------
    ValueError
        If there are fewer than 2 classes.
    """

    def __init__(self, classes: int, shape: ShapeCastable | None = None):
        if classes < 2:
            raise ValueError(f"need at least 2 classes, got {classes}")
        self.classes = classes
        self.score_shape = Shape.cast(signed(SCORE_BITS) if shape is None else shape)
        self.levels = (classes - 1).bit_length()
        self.label_shape = unsigned(self.levels)
        self.o_layout = data.StructLayout({
            "label": self.label_shape,
            "scores": data.ArrayLayout(self.score_shape, classes),
        })
        super().__init__({
            "scores": In(data.ArrayLayout(self.score_shape, classes)),
            "start": In(1),
            "o": Out(stream.Signature(self.o_layout)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        classes = self.classes

        # The tree. (A sequential scan had a compare-and-select loop, indexed by a counter,
        # that was the core's critical path on ECP5.) An odd node passes through unregistered:
        # its inputs are held by then, so it only settles earlier.
        nodes = [(Const(c, range(classes)), self.scores[c]) for c in range(classes)]
        for level in range(self.levels):
            paired = []
            for k in range(0, len(nodes) - 1, 2):
                (left_c, left_s), (right_c, right_s) = nodes[k], nodes[k + 1]
                # Reset-less: free-running, their values matter only once the scores are
                # held, so they need no reset; with one, Yosys drove the class bits' LSR from
                # the 32-bit compare (the ULX3S-85F's critical path, 98.5-99.6 MHz).
                node_c = Signal(range(classes), name=f"argmax{level + 1}_{k // 2}_class",
                                reset_less=True)
                node_s = Signal(self.score_shape, name=f"argmax{level + 1}_{k // 2}_score",
                                reset_less=True)
                right = right_s > left_s
                m.d.sync += [node_c.eq(Mux(right, right_c, left_c)),
                             node_s.eq(Mux(right, right_s, left_s))]
                paired.append((node_c, node_s))
            if len(nodes) % 2:
                paired.append(nodes[-1])
            nodes = paired
        m.d.comb += [self.o.p.label.eq(nodes[0][0]), self.o.p.scores.eq(self.scores)]

        # `start` travels with the levels; the result is offered when it leaves the last one,
        # and held (`waiting`) until taken.
        settling = Signal(self.levels)
        m.d.sync += settling.eq(Cat(self.start, settling[:-1]))
        waiting = Signal()
        m.d.comb += self.o.valid.eq(settling[-1] | waiting)
        m.d.sync += waiting.eq(self.o.valid & ~self.o.ready)
        return m
