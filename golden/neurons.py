"""The neuron models of a layer, as pure integer step functions: ``step(I, state, params)``.

A layer's neurons all follow one model from a small, closed set, chosen by its
:class:`NeuronParams` (the network image's layer record). Every quantity is an integer in the
formats of :mod:`golden.constants`; ``>>`` is NumPy's arithmetic shift (floor). The equations
below are written out with their order of operations in ``docs/ARITHMETIC.md`` ("Layered
networks"). ``I`` is the layer's synaptic current for this step (Q5.10, already saturated by the
layer's input stage, :func:`golden.layers.layer_current`).

``lif`` (the seed network's neuron; spike test ``>=``, reset to 0 in the same step)::

    act = (ref == 0)
    v   = act ? max(v + ((I - v) >> leak_shift), 0) : v
    s   = act & (v >= th)
    v   = s ? 0 : v
    ref = s ? ref_steps : max(ref - 1, 0)

``leaky`` (snnTorch's ``Leaky`` with its default delayed reset: the spike of the previous step,
``s_prev``, resets the membrane at this step; spike test ``>``, as snnTorch's Heaviside)::

    u = ((beta * v) >> BETA_FRAC) + I                      exact (18 bits)
    v = sat_V(u - (s_prev ? v_th : 0))                     reset == "subtract"
    v = s_prev ? 0 : sat_V(u)                              reset == "zero"
    s = (v > th)

Threshold adaptation (ALIF; any spiking model, when ``adapt_step > 0``). The threshold of the
spike test is ``th = v_th + a`` with ``a`` as it was at the start of the step; after the test::

    a = a + ((-a) >> adapt_shift) + (s ? adapt_step : 0)

so ``a`` rises by ``adapt_step`` at each spike and decays back to exactly 0 by ``2**-adapt_shift``
per step (the floor makes the decay step round away from zero, as the PSC's). Without
adaptation ``a`` stays 0 and ``th = v_th``. A ``leaky`` neuron's subtractive reset subtracts the
base threshold ``v_th``, not ``th``.

Non-spiking neurons (the leaky-integrator readout, NIR's ``LI``; ``s`` is always 0)::

    v = v + ((I - v) >> leak_shift)                        model "lif": no clamp, no reset
    v = sat_V(((beta * v) >> BETA_FRAC) + I)               model "leaky"
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .constants import (
    BETA_FRAC,
    NEURON_LEAKY,
    NEURON_LIF,
    RESET_SUBTRACT,
    RESET_ZERO,
    V_MAX,
    V_MIN,
)

__all__ = [
    "NeuronParams",
    "NeuronState",
    "initial_state",
    "lif_membrane",
    "leaky_membrane",
    "adapt",
    "integrator_membrane",
    "step",
]


class NeuronParams(NamedTuple):
    """The neuron model of one layer of ``N`` neurons.

    Attributes
    ----------
    v_th : int array (N,) or None
        Threshold, UQ5.10 (``1 .. 2**V_TH_BITS - 1``); None for non-spiking neurons.
    model : str
        ``"lif"`` or ``"leaky"`` (:data:`golden.constants.NEURON_MODELS`).
    leak_shift : int
        ``lif``: leak ``2**-leak_shift`` per step (``0 .. V_BITS - 2``).
    ref_steps : int
        ``lif``: refractory steps after a spike (``0 .. 2**REF_BITS - 1``).
    beta : int array (N,) or None
        ``leaky``: multiplicative leak per neuron, UQ0.12 (``beta / 4096`` per step).
    reset : str
        ``leaky``: ``"zero"`` or ``"subtract"`` (``lif`` always resets to zero).
    adapt_step : int
        Threshold rise per spike, UQ5.10; 0: no adaptation (LIF), > 0: ALIF.
    adapt_shift : int
        Decay of the adaptation, ``2**-adapt_shift`` per step (``0 .. 15``).
    spiking : bool
        False for the leaky-integrator readout layer: its membranes are the class scores.
    """

    v_th: np.ndarray | None
    model: str = NEURON_LIF
    leak_shift: int = 0
    ref_steps: int = 0
    beta: np.ndarray | None = None
    reset: str = RESET_ZERO
    adapt_step: int = 0
    adapt_shift: int = 0
    spiking: bool = True


class NeuronState(NamedTuple):
    """State of a layer's neurons, each (B, N).

    Attributes
    ----------
    v : membrane potential, Q5.10 (``lif``: ``>= 0``).
    ref : remaining refractory steps (``lif``), else 0.
    a : threshold adaptation, UQ6.10, ``0 .. adapt_step << adapt_shift``.
    s : the spikes of the previous step (bool): the ``leaky`` reset and the recurrent input.
    """

    v: np.ndarray
    ref: np.ndarray
    a: np.ndarray
    s: np.ndarray


def initial_state(batch: int, neurons: int) -> NeuronState:
    """Rest: ``v = ref = a = 0`` and no spike."""
    zeros = np.zeros((batch, neurons), dtype=np.int64)
    return NeuronState(zeros, zeros.copy(), zeros.copy(), np.zeros((batch, neurons), bool))


def sat_v(v: np.ndarray) -> np.ndarray:
    """Saturate to the membrane's signed ``V_BITS``."""
    return np.clip(v, V_MIN, V_MAX)


def lif_membrane(current, v, ref, threshold, leak_shift: int, ref_steps: int):
    """The ``lif`` update: returns ``(spikes, v, ref)`` (module docstring for the order)."""
    active = ref == 0
    v = np.where(active, np.maximum(v + ((current - v) >> leak_shift), 0), v)
    spikes = active & (v >= threshold)
    v = np.where(spikes, 0, v)
    ref = np.where(spikes, ref_steps, np.maximum(ref - 1, 0))
    return spikes, v, ref


def _decay(v, beta) -> np.ndarray:
    """``(beta * v) >> BETA_FRAC``: the multiplicative leak, floored."""
    return (np.asarray(beta, dtype=np.int64) * v) >> BETA_FRAC


def leaky_membrane(current, v, s_prev, threshold, v_th, beta, reset: str):
    """The ``leaky`` update (snnTorch ``Leaky``, delayed reset): returns ``(spikes, v)``."""
    u = _decay(v, beta) + current
    if reset == RESET_SUBTRACT:
        v = sat_v(u - np.where(s_prev, v_th, 0))
    elif reset == RESET_ZERO:
        v = np.where(s_prev, 0, sat_v(u))
    else:
        raise ValueError(f"unknown reset {reset!r}")
    return v > threshold, v


def adapt(a, spikes, adapt_step: int, adapt_shift: int) -> np.ndarray:
    """Threshold adaptation after the spike test: decay toward 0, rise at a spike."""
    return a + ((-a) >> adapt_shift) + np.where(spikes, adapt_step, 0)


def integrator_membrane(current, v, params: NeuronParams) -> np.ndarray:
    """A non-spiking neuron's membrane (the leaky-integrator readout)."""
    if params.model == NEURON_LIF:
        return v + ((current - v) >> params.leak_shift)
    if params.model == NEURON_LEAKY:
        return sat_v(_decay(v, params.beta) + current)
    raise ValueError(f"unknown neuron model {params.model!r}")


def step(current: np.ndarray, state: NeuronState, params: NeuronParams):
    """One step of a layer's neurons: returns ``(spikes, state)``."""
    if not params.spiking:
        v = integrator_membrane(current, state.v, params)
        return np.zeros(v.shape, bool), state._replace(v=v)
    threshold = params.v_th + state.a
    ref = state.ref
    if params.model == NEURON_LIF:
        spikes, v, ref = lif_membrane(current, state.v, ref, threshold, params.leak_shift,
                                      params.ref_steps)
    elif params.model == NEURON_LEAKY:
        spikes, v = leaky_membrane(current, state.v, state.s, threshold, params.v_th,
                                   params.beta, params.reset)
    else:
        raise ValueError(f"unknown neuron model {params.model!r}")
    a = state.a
    if params.adapt_step:
        a = adapt(a, spikes, params.adapt_step, params.adapt_shift)
    return spikes, NeuronState(v, ref, a, spikes)
