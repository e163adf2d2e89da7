"""One neuron's arithmetic, as two-stage pipelines: the input current and the LIF + PSC update.

These two components are the lanes of the core (``hw/core.py`` instantiates ``P`` of each) and
equal, input for input, :func:`golden.model.input_current` (after the accumulation) and
:func:`golden.model.lif_step` followed by :func:`golden.model.psc_step`. Widths come from
:mod:`golden.constants`; the intermediate widths below are exact (no wrap anywhere).

Timing: each lane has one register stage inside (:data:`LANE_LATENCY`). The inputs presented
in cycle ``n`` give their outputs, combinationally from that register, in cycle ``n + 1``; a
new set of inputs may enter every cycle. The split keeps each stage to about two carry chains,
which is what lets the core reach 100 MHz on the ECP5.
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
    W_SHIFT_MAX,
)

__all__ = ["LANE_LATENCY", "CurrentLane", "NeuronLane"]

#: Cycles from a lane's inputs to its outputs (both lanes).
LANE_LATENCY = 1


class CurrentLane(wiring.Component):
    """Synaptic current ``I = sat_I(shift(acc + bias, s))``, a two-stage pipeline.

    ``shift(a, s)`` is ``a << s`` for ``s >= 0`` and ``a >> -s`` (arithmetic: floor) for
    ``s < 0`` (:func:`golden.model.shift`). Both directions are one right shift:
    ``shift(a, s) = (a << W_SHIFT_MAX) >> (W_SHIFT_MAX - s)``, exact because the constant left
    shift is wiring and the arithmetic right shift floors; ``W_SHIFT_MAX - s`` (0 .. 31) is ``s``
    with its low bits inverted, no adder. So stage 1 is the adder and one 5-level shift mux
    (the unsigned left shift it replaces had 4 levels), into a register; stage 2 saturates,
    combinationally from that register: ``current`` follows the inputs by one cycle.

    Parameters
    ----------
    acc_bits : int
        Width of the signed accumulator ``W_in @ x``.

    Attributes
    ----------
    acc_bits : int
        As given.

    Members
    -------
    acc : :py:`In(signed(acc_bits))`
        The exact dot product of one neuron's weights with the input.
    bias : :py:`In(signed(B_BITS))`
        The neuron's bias, in units of ``acc``.
    shift : :py:`In(signed(W_SHIFT_BITS))`
        The neuron's signed shift, ``W_SHIFT_MIN .. W_SHIFT_MAX``.
    current : :py:`Out(signed(I_BITS))`
        Q5.10 current, saturated to ``I_MIN .. I_MAX``.
    """

    def __init__(self, acc_bits: int):
        self.acc_bits = acc_bits
        super().__init__({
            "acc": In(signed(acc_bits)),
            "bias": In(signed(B_BITS)),
            "shift": In(signed(W_SHIFT_BITS)),
            "current": Out(signed(I_BITS)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        total = Signal(signed(max(self.acc_bits, B_BITS) + 1))
        # W_SHIFT_MAX = 2**(W_SHIFT_BITS-1) - 1, so W_SHIFT_MAX - s = s ^ W_SHIFT_MAX (mod 2**5).
        amount = Signal(W_SHIFT_BITS)
        shifted = Signal(signed(len(total) + W_SHIFT_MAX))
        m.d.comb += [total.eq(self.acc + self.bias),
                     amount.eq(self.shift.as_unsigned() ^ W_SHIFT_MAX)]
        m.d.sync += shifted.eq((total << W_SHIFT_MAX) >> amount)
        m.d.comb += self.current.eq(
            Mux(shifted > I_MAX, I_MAX, Mux(shifted < I_MIN, I_MIN, shifted)))
        return m


class NeuronLane(wiring.Component):
    """One LIF step and one PSC step of one neuron, a two-stage pipeline.

    In order (``docs/ARITHMETIC.md``)::

        act  = ref == 0
        v1   = act ? max(v + ((I - v) >> leak_shift), 0) : v
        s    = act & (v1 >= v_th)
        v'   = s ? 0 : v1
        ref' = s ? ref_steps : max(ref - 1, 0)
        psc' = psc + (((s << PSC_BITS) - psc) >> psc_shift)

    Stage 1 integrates: it registers ``v1``, ``act``, ``max(ref - 1, 0)`` and both candidates of
    ``psc'`` (for ``s = 0`` and ``s = 1``). Stage 2 fires, combinationally from those registers:
    the threshold compare and the three selects. The outputs follow the inputs by one cycle.

    Parameters
    ----------
    leak_shift, psc_shift, ref_steps : int
        The network image's arithmetic parameters (elaboration-time constants).

    Attributes
    ----------
    leak_shift, psc_shift, ref_steps : int
        As given.

    Members
    -------
    current : :py:`In(signed(I_BITS))`
        Q5.10 input current of this step (:class:`CurrentLane`'s ``current``).
    v_th : :py:`In(V_TH_BITS)`
        The neuron's threshold, UQ5.10.
    v : :py:`In(signed(V_BITS))`
        Membrane potential before the step, Q5.10.
    ref : :py:`In(REF_BITS)`
        Refractory steps left before the step.
    psc : :py:`In(PSC_BITS)`
        Post-synaptic current before the step, UQ0.12.
    v_next : :py:`Out(signed(V_BITS))`
        ``v'``, one cycle after the inputs.
    ref_next : :py:`Out(REF_BITS)`
        ``ref'``, one cycle after the inputs.
    psc_next : :py:`Out(PSC_BITS)`
        ``psc'``, one cycle after the inputs.
    spike : :py:`Out(1)`
        ``s``: the neuron fired in this step, one cycle after the inputs.
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
        # Stage 1: integrate.
        diff = Signal(signed(V_BITS + 1))           # I - v: both 16-bit signed
        v_int = Signal(signed(V_BITS + 2))          # v + (diff >> k)
        rise = Signal(signed(PSC_BITS + 2))         # PSC_ONE - psc: 1 .. 4096
        fall = Signal(signed(PSC_BITS + 2))         # -psc: -4095 .. 0
        active_d = Signal()
        m.d.comb += [
            active_d.eq(self.ref == 0),
            diff.eq(self.current - self.v),
            v_int.eq(self.v + (diff >> self.leak_shift)),
            rise.eq((1 << PSC_BITS) - self.psc),
            fall.eq(-self.psc),
        ]
        active = Signal()
        v1 = Signal(signed(V_BITS))
        v_th = Signal(V_TH_BITS)
        ref_idle = Signal(REF_BITS)                 # ref' without a spike
        psc_spike, psc_quiet = Signal(PSC_BITS), Signal(PSC_BITS)
        m.d.sync += [
            active.eq(active_d),
            v1.eq(Mux(active_d, Mux(v_int < 0, 0, v_int), self.v)),
            v_th.eq(self.v_th),
            ref_idle.eq(Mux(active_d, 0, self.ref - 1)),
            psc_spike.eq(self.psc + (rise >> self.psc_shift)),
            psc_quiet.eq(self.psc + (fall >> self.psc_shift)),
        ]
        # Stage 2: fire.
        m.d.comb += [
            self.spike.eq(active & (v1 >= v_th)),
            self.v_next.eq(Mux(self.spike, 0, v1)),
            self.ref_next.eq(Mux(self.spike, self.ref_steps, ref_idle)),
            self.psc_next.eq(Mux(self.spike, psc_spike, psc_quiet)),
        ]
        return m


