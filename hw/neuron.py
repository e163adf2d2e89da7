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

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.constants import (
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
    """Synaptic current ``I = sat_I(shift(total, s))`` of ``total = W.x + bias``, a two-stage
    pipeline.

    ``shift(a, s)`` is ``a << s`` for ``s >= 0`` and ``a >> -s`` (arithmetic: floor) for
    ``s < 0`` (:func:`golden.model.shift`). The core's accumulator starts each group from the
    bias, so ``total`` arrives complete and the lane has no adder.

    Both directions are one right shift, ``shift(a, s) = (a << W_SHIFT_MAX) >> (W_SHIFT_MAX -
    s)``, exact because the constant left shift is wiring and the arithmetic right shift
    floors; ``W_SHIFT_MAX - s`` (0 .. 31) is ``s ^ W_SHIFT_MAX``, no adder. Only the 16 low
    bits of that shift are built (a 16-bit window of ``total``). Whether the shifted value fits
    ``I_BITS`` is decided without it: ``shift(total, s)`` fits iff ``total`` fits ``I_BITS - s``
    bits, i.e. iff bits ``W_SHIFT_MAX - s .. top`` of ``total`` all equal its sign, which is one
    bit, selected by the same amount, of the suffix ORs of ``total[i] ^ sign``.

    Stage 1 registers the window, the fit bit and the sign; stage 2 saturates (a 2-input
    select, combinational from those registers): ``current`` follows the inputs by one cycle.
    (A full-width shifter and a compare, measured on the ECP5 for one lane alone: about 2.4x
    the LUTs; with the bias adder in this stage as well, 118 MHz instead of 132.)

    Parameters
    ----------
    total_bits : int
        Width of the signed ``total`` (``hw.geometry.CoreGeometry.total_bits``).

    Attributes
    ----------
    total_bits : int
        As given.

    Members
    -------
    total : :py:`In(signed(total_bits))`
        ``W_in[n] . x + bias[n]``, exact.
    shift : :py:`In(signed(W_SHIFT_BITS))`
        The neuron's signed shift, ``W_SHIFT_MIN .. W_SHIFT_MAX``.
    current : :py:`Out(signed(I_BITS))`
        Q5.10 current, saturated to ``I_MIN .. I_MAX``.
    """

    def __init__(self, total_bits: int):
        self.total_bits = total_bits
        super().__init__({
            "total": In(signed(total_bits)),
            "shift": In(signed(W_SHIFT_BITS)),
            "current": Out(signed(I_BITS)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        total, top = self.total, self.total_bits - 1
        # W_SHIFT_MAX = 2**(W_SHIFT_BITS-1) - 1, so W_SHIFT_MAX - s = s ^ W_SHIFT_MAX (mod 2**5).
        amount = Signal(W_SHIFT_BITS)
        m.d.comb += amount.eq(self.shift.as_unsigned() ^ W_SHIFT_MAX)
        # differs[i]: bit i is not a copy of the sign; above[i] = any(differs[i:]), by doubling.
        above = [total[i] ^ total[top] for i in range(top)]
        span = 1
        while span < top:
            above = [above[i] | above[i + span] if i + span < top else above[i]
                     for i in range(top)]
            span *= 2
        # total fits I_BITS - s bits iff bits I_BITS - 1 - s = amount .. top all equal the sign
        # (amount <= 31 < top for every total_bits >= 33; for a narrower total the bits past
        # its top are copies of the sign: 0).
        fits, window, negative = Signal(), Signal(I_BITS), Signal()
        m.d.sync += [
            fits.eq(~(Cat(*above, Const(0, 1)) >> amount)[0]),
            window.eq(((total << W_SHIFT_MAX) >> amount)[:I_BITS]),
            negative.eq(total[top]),
        ]
        m.d.comb += self.current.eq(
            Mux(fits, window.as_signed(), Mux(negative, I_MIN, I_MAX)))
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


