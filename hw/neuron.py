"""One neuron's arithmetic, combinational: the input current and the LIF + PSC update.

These two components are the lanes of the core (``hw/core.py`` instantiates ``P`` of each) and
equal, input for input, :func:`golden.model.input_current` (after the accumulation) and
:func:`golden.model.lif_step` followed by :func:`golden.model.psc_step`. Widths come from
:mod:`golden.constants`; the intermediate widths below are exact (no wrap anywhere).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.constants import (
    B_BITS,
    I_BITS,
    I_MAX,
    I_MIN,
    PSC_BITS,
    REF_BITS,
    V_BITS,
    V_TH_BITS,
    W_SHIFT_BITS,
)

__all__ = ["CurrentLane", "NeuronLane"]


class CurrentLane(wiring.Component):
    """Synaptic current ``I = sat_I((acc + bias) << shift)``, combinational.

    Parameters
    ----------
    acc_bits : int
        Width of the signed accumulator ``W_in @ x``.

    Members
    -------
    acc : :py:`In(signed(acc_bits))`
        The exact dot product of one neuron's weights with the input.
    bias : :py:`In(signed(B_BITS))`
        The neuron's bias, in units of ``acc``.
    shift : :py:`In(W_SHIFT_BITS)`
        The neuron's left shift.
    current : :py:`Out(signed(I_BITS))`
        Q5.10 current, saturated to ``I_MIN .. I_MAX``.
    """

    def __init__(self, acc_bits: int):
        self.acc_bits = acc_bits
        super().__init__({
            "acc": In(signed(acc_bits)),
            "bias": In(signed(B_BITS)),
            "shift": In(W_SHIFT_BITS),
            "current": Out(signed(I_BITS)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        total = Signal(signed(max(self.acc_bits, B_BITS) + 1))
        shifted = Signal(signed(len(total) + (1 << W_SHIFT_BITS) - 1))
        m.d.comb += [
            total.eq(self.acc + self.bias),
            shifted.eq(total << self.shift),
            self.current.eq(Mux(shifted > I_MAX, I_MAX, Mux(shifted < I_MIN, I_MIN, shifted))),
        ]
        return m


class NeuronLane(wiring.Component):
    """One LIF step and one PSC step of one neuron, combinational.

    In order (``docs/ARITHMETIC.md``)::

        act  = ref == 0
        v1   = act ? max(v + ((I - v) >> leak_shift), 0) : v
        s    = act & (v1 >= v_th)
        v'   = s ? 0 : v1
        ref' = s ? ref_steps : max(ref - 1, 0)
        psc' = psc + (((s << PSC_BITS) - psc) >> psc_shift)

    Parameters
    ----------
    leak_shift, psc_shift, ref_steps : int
        The network image's arithmetic parameters (elaboration-time constants).

    Members
    -------
    current : :py:`In(signed(I_BITS))`
    v_th : :py:`In(V_TH_BITS)`
    v, ref, psc : :py:`In(signed(V_BITS))`, :py:`In(REF_BITS)`, :py:`In(PSC_BITS)`
        State before the step.
    v_next, ref_next, psc_next : :py:`Out(...)` of the same shapes
        State after the step.
    spike : :py:`Out(1)`
    """

    def __init__(self, *, leak_shift: int, psc_shift: int, ref_steps: int):
        self.leak_shift = leak_shift
        self.psc_shift = psc_shift
        self.ref_steps = ref_steps
        super().__init__({
            "current": In(signed(I_BITS)),
            "v_th": In(V_TH_BITS),
            "v": In(signed(V_BITS)),
            "ref": In(REF_BITS),
            "psc": In(PSC_BITS),
            "v_next": Out(signed(V_BITS)),
            "ref_next": Out(REF_BITS),
            "psc_next": Out(PSC_BITS),
            "spike": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        active = Signal()
        diff = Signal(signed(V_BITS + 1))           # I - v: both 16-bit signed
        v_int = Signal(signed(V_BITS + 2))          # v + (diff >> k)
        v1 = Signal(signed(V_BITS))
        psc_step = Signal(signed(PSC_BITS + 2))     # (s << 12) - psc: -4095 .. 4096
        m.d.comb += [
            active.eq(self.ref == 0),
            diff.eq(self.current - self.v),
            v_int.eq(self.v + (diff >> self.leak_shift)),
            v1.eq(Mux(active, Mux(v_int < 0, 0, v_int), self.v)),
            self.spike.eq(active & (v1 >= self.v_th)),
            self.v_next.eq(Mux(self.spike, 0, v1)),
            self.ref_next.eq(Mux(self.spike, self.ref_steps, Mux(active, 0, self.ref - 1))),
            psc_step.eq((self.spike << PSC_BITS) - self.psc),
            self.psc_next.eq(self.psc + (psc_step >> self.psc_shift)),
        ]
        return m


