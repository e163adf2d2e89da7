"""The bit-accurate integer model of the whole lifpga pipeline: the specification of the RTL.

Every function here is pure and vectorised over a batch of images (leading axis ``B``) and,
where it applies, over neurons (``N``), inputs (``M``) and classes (``C``). All values are
NumPy ``int64`` inside; the formats they must fit are those of :mod:`golden.constants`, and
``docs/ARITHMETIC.md`` writes the same equations out with their order of operations.

One timestep, in order (every image starts from rest: ``v = ref = psc = 0``)::

    x_t   = x                                         (constant-current mode)
          = (draw[t] < x) << rate_bits                (rate mode, draw from golden.lfsr)
    acc   = W_in @ x_t                                (exact integer dot product)
    I     = sat_I(shift(acc + bias, w_shift))         (Q5.10, saturating; shift: below)
    act   = (ref == 0)
    v     = act ? max(v + ((I - v) >> leak_shift), 0) : v
    s     = act & (v >= v_th)
    v     = s ? 0 : v
    ref   = s ? ref_steps : max(ref - 1, 0)
    psc   = psc + (((s << PSC_BITS) - psc) >> psc_shift)
    score = dec_bias + dec @ psc                      (int32, cannot overflow)
    class = argmax(score), lowest index on ties

``shift(a, s)`` is ``a << s`` for ``s >= 0`` and ``a >> -s`` (arithmetic, floor) for ``s < 0``;
``w_shift`` is signed, ``W_SHIFT_MIN .. W_SHIFT_MAX``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import lfsr
from .constants import (
    I_MAX,
    I_MIN,
    MODE_CURRENT,
    MODE_RATE,
    PIXEL_BITS_MAX,
    PSC_BITS,
    W_BITS,
)

__all__ = [
    "Network",
    "State",
    "Result",
    "initial_state",
    "encode_rate",
    "shift",
    "input_current",
    "lif_step",
    "psc_step",
    "readout",
    "argmax",
    "step",
    "run",
    "check_images",
    "check_run",
    "rate_schedule",
]


class Network(NamedTuple):
    """Integer parameters of one network: exactly the contents of the hardware's ROMs.

    Attributes
    ----------
    w_in : int array (N, M)
        Input weights, signed ``w_bits``.
    w_shift : int array (N,)
        Per-neuron shift of ``W.x + bias``, signed ``W_SHIFT_BITS``: left by ``s`` if
        ``s >= 0``, arithmetic right (floor) by ``-s`` if ``s < 0``.
    bias : int array (N,)
        Per-neuron bias in units of ``W.x``, signed ``B_BITS``.
    v_th : int array (N,)
        Per-neuron threshold, UQ5.10 (``1 << V_FRAC`` is 1.0).
    dec : int array (C, N)
        Decoder weights, signed ``D_BITS``.
    dec_bias : int array (C,)
        Decoder bias in score units, signed ``SCORE_BITS``.
    leak_shift : int
        Membrane leak ``dt / tau_rc = 2**-leak_shift``.
    psc_shift : int
        PSC filter ``dt / tau_syn = 2**-psc_shift``.
    ref_steps : int
        Refractory period in steps.
    rate_bits : int
        Random bits per rate-encoder draw; a spike stands for the pixel value ``2**rate_bits``.
    lfsr_seed : int
        Default LFSR seed of the rate encoder.
    w_bits : int
        Width of the input weights, ``W_BITS_MIN .. W_BITS`` (default 8). It sizes the
        hardware's weight memory and bounds ``w_in``; the arithmetic does not depend on it
        (a 4-bit weight computes as the same integer in 8 bits), so it is not hashed.
    """

    w_in: np.ndarray
    w_shift: np.ndarray
    bias: np.ndarray
    v_th: np.ndarray
    dec: np.ndarray
    dec_bias: np.ndarray
    leak_shift: int
    psc_shift: int
    ref_steps: int
    rate_bits: int
    lfsr_seed: int
    w_bits: int = W_BITS

    @property
    def neurons(self) -> int:
        return self.w_in.shape[0]

    @property
    def inputs(self) -> int:
        return self.w_in.shape[1]

    @property
    def classes(self) -> int:
        return self.dec.shape[0]


class State(NamedTuple):
    """Per-image neuron state, each of shape (B, N).

    Attributes
    ----------
    v : membrane potential, Q5.10, ``>= 0``.
    ref : remaining refractory steps, ``0 .. ref_steps``.
    psc : post-synaptic current filter state, UQ0.12.
    """

    v: np.ndarray
    ref: np.ndarray
    psc: np.ndarray


def initial_state(batch: int, neurons: int) -> State:
    """Rest: every neuron at ``v = ref = psc = 0``."""
    zeros = np.zeros((batch, neurons), dtype=np.int64)
    return State(zeros, zeros.copy(), zeros.copy())


def encode_rate(x: np.ndarray, draw: np.ndarray, rate_bits: int) -> np.ndarray:
    """Rate encoder for one step: pixel ``j`` spikes when ``draw[j] < x[j]``.

    A spike carries the value ``2**rate_bits`` so that its expectation equals the pixel:
    ``P(spike) = x / 2**rate_bits``. ``x`` is (B, M); ``draw`` is (M,) or (B, M).
    """
    return (draw < x).astype(np.int64) << rate_bits


def _matmul_exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matrix product via float64 BLAS.

    Exact because every partial sum is an integer below 2**53 (the image loader bounds
    ``|acc| < 2**31`` and ``|score| < 2**31``); NumPy's own integer matmul is far slower.
    """
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def shift(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Signed shift: ``a << s`` where ``s >= 0``, ``a >> -s`` (arithmetic: floor) where ``s < 0``.

    Elementwise with broadcasting; ``a`` and ``s`` are integer arrays. Exact in int64 for the
    project's widths (``|a| < 2**32``, ``s <= 15``).
    """
    a, s = np.asarray(a, dtype=np.int64), np.asarray(s, dtype=np.int64)
    return np.where(s >= 0, a << np.maximum(s, 0), a >> np.maximum(-s, 0))


def input_current(x_t: np.ndarray, net: Network) -> np.ndarray:
    """Synaptic current ``I = sat_I(shift(W_in @ x_t + bias, w_shift))``, shape (B, N)."""
    acc = _matmul_exact(x_t, net.w_in.T)
    return np.clip(shift(acc + net.bias, net.w_shift), I_MIN, I_MAX)


def lif_step(current: np.ndarray, v: np.ndarray, ref: np.ndarray, net: Network):
    """One LIF step: returns ``(spikes, v, ref)``.

    A neuron integrates only when not refractory; the leak is a floor shift; the membrane is
    clamped at 0 from below; the spike test is ``v >= v_th`` on the updated membrane, and a
    spiking neuron is reset to 0 and made refractory in the same step.
    """
    active = ref == 0
    v_int = np.maximum(v + ((current - v) >> net.leak_shift), 0)
    v = np.where(active, v_int, v)
    spikes = active & (v >= net.v_th)
    v = np.where(spikes, 0, v)
    ref = np.where(spikes, net.ref_steps, np.maximum(ref - 1, 0))
    return spikes, v, ref


def psc_step(psc: np.ndarray, spikes: np.ndarray, psc_shift: int) -> np.ndarray:
    """PSC filter: ``psc += ((s << PSC_BITS) - psc) >> psc_shift``.

    For ``1 <= psc_shift <= PSC_BITS`` (what the image loader allows) the state stays in
    ``0 .. PSC_ONE - 1``; ``psc_shift = 0`` would let a spike set it to ``PSC_ONE``.
    """
    return psc + (((spikes.astype(np.int64) << PSC_BITS) - psc) >> psc_shift)


def readout(psc: np.ndarray, net: Network) -> np.ndarray:
    """Class scores ``dec_bias + dec @ psc``, shape (B, C)."""
    return _matmul_exact(psc, net.dec.T) + net.dec_bias


def argmax(scores: np.ndarray) -> np.ndarray:
    """Winning class per row; on a tie the lowest class index wins."""
    return np.argmax(scores, axis=-1)


def step(state: State, current: np.ndarray, net: Network):
    """One timestep after the input stage: returns ``(spikes, scores, state)``."""
    spikes, v, ref = lif_step(current, state.v, state.ref, net)
    psc = psc_step(state.psc, spikes, net.psc_shift)
    return spikes, readout(psc, net), State(v, ref, psc)


class Result(NamedTuple):
    """What :func:`run` returns for a batch of B images over T steps.

    Attributes
    ----------
    scores : (T, B, C) class scores after every step.
    classes : (T, B) argmax after every step; ``classes[-1]`` is the answer.
    spike_count : (B,) total spikes of all neurons over all steps.
    spikes, v, psc : (T, B, N) traces, only when ``record=True``; else None.
    """

    scores: np.ndarray
    classes: np.ndarray
    spike_count: np.ndarray
    spikes: np.ndarray | None = None
    v: np.ndarray | None = None
    psc: np.ndarray | None = None


def run(
    images: np.ndarray,
    net: Network,
    timesteps: int,
    mode: int = MODE_CURRENT,
    seeds: np.ndarray | int | None = None,
    record: bool = False,
) -> Result:
    """Classify a batch of images (B, M) of integer pixels, starting each from rest.

    ``seeds`` (rate mode only) is one LFSR seed for all images or one per image; the default
    is the network's ``lfsr_seed``.
    """
    x = check_images(images, net.inputs)
    check_run(mode, timesteps)
    batch = x.shape[0]
    if mode == MODE_RATE:
        draws = rate_schedule(seeds, net.lfsr_seed, timesteps, batch, net.inputs, net.rate_bits)
    state = initial_state(batch, net.neurons)
    scores = np.empty((timesteps, batch, net.classes), dtype=np.int64)
    spike_count = np.zeros(batch, dtype=np.int64)
    traces = None
    if record:
        shape = (timesteps, batch, net.neurons)
        traces = {"spikes": np.empty(shape, dtype=bool), "v": np.empty(shape, dtype=np.int64),
                  "psc": np.empty(shape, dtype=np.int64)}
    constant_current = input_current(x, net) if mode == MODE_CURRENT else None
    for t in range(timesteps):
        if mode == MODE_CURRENT:
            current = constant_current
        else:
            current = input_current(encode_rate(x, draws[t], net.rate_bits), net)
        spikes, scores[t], state = step(state, current, net)
        spike_count += spikes.sum(axis=1)
        if record:
            traces["spikes"][t], traces["v"][t], traces["psc"][t] = spikes, state.v, state.psc
    return Result(scores, argmax(scores), spike_count, **(traces or {}))


def check_images(images: np.ndarray, inputs: int) -> np.ndarray:
    """``images`` as int64 (B, inputs) after checking shape, dtype and the pixel range."""
    x = np.asarray(images)
    if x.ndim != 2 or x.shape[1] != inputs:
        raise ValueError(f"images must have shape (B, {inputs}), got {x.shape}")
    if x.dtype.kind not in "iu":
        raise ValueError(f"images must hold integer pixels, got dtype {x.dtype}")
    pixel_hi = (1 << PIXEL_BITS_MAX) - 1
    if x.size and (x.min() < 0 or x.max() > pixel_hi):
        raise ValueError(f"pixels must lie in 0 .. {pixel_hi}, got {x.min()} .. {x.max()}")
    return x.astype(np.int64)


def check_run(mode: int, timesteps: int) -> None:
    """Refuse an unknown encoder mode or fewer than one step."""
    if mode not in (MODE_CURRENT, MODE_RATE):
        raise ValueError(f"unknown encoder mode {mode!r}")
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")


def rate_schedule(seeds, default_seed: int, timesteps: int, batch: int, inputs: int,
                  rate_bits: int) -> np.ndarray:
    """The rate encoder's draws, (T, B, M): one LFSR seed for all images (``seeds`` a scalar,
    or None for ``default_seed``) or one per image (``seeds`` of shape (B,))."""
    if seeds is None:
        seeds = default_seed
    if np.ndim(seeds) == 0:
        draws = lfsr.rate_draws(int(seeds), timesteps, inputs, rate_bits)
        return np.broadcast_to(draws[:, None, :], (timesteps, batch, inputs))
    seeds = np.asarray(seeds)
    if seeds.shape != (batch,):
        raise ValueError(f"seeds must be a scalar or have shape ({batch},)")
    per_image = lfsr.draws(seeds, timesteps * inputs, rate_bits)
    return per_image.reshape(batch, timesteps, inputs).transpose(1, 0, 2)
