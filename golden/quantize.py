"""From the float seed network to the integer network that the hardware runs.

Input stage
-----------
The current of neuron ``n`` in Q5.10 (``1.0 = 2**V_FRAC``, the nominal threshold) is, for
integer pixels ``x``, ``J_n = w_n . x + beta_n`` with real weights ``w_n`` in Q5.10 LSB per
pixel unit and a real bias ``beta_n`` in Q5.10 LSB. The hardware computes
``sat_I(shift(W_n . x + b_n, s_n))`` (:func:`golden.model.shift`: left for ``s >= 0``, floor
right for ``s < 0``). :func:`input_stage` picks, per neuron, the smallest shift ``s_n`` in
``shift_min .. W_SHIFT_MAX`` with ``round(max_j |w_nj| / 2**s_n) <= 2**(w_bits-1) - 1`` (the
largest weight then has ``w_bits - 1`` or ``w_bits - 2`` significant bits), and::

    W_n = round(w_n / 2**s_n)
    b_n = round(beta_n / 2**s_n) + (2**(-s_n - 1) if s_n < 0 else 0)

The half LSB added at a right shift makes the floor of the shift round ``W.x + b`` to nearest
instead of down (an exact left shift needs none).

The seed network (:func:`quantize_input_stage`, ``shift_min = 0``, 8-bit weights) keeps the
left shifts it was published with: a single weight scale shared by all neurons would waste the
8-bit weights (gains span a wide range: 3.4 to 54 in the seed network, thousands for
intercepts near 1), hence the per-neuron shift.

Readout
-------
The decoder is fitted (ridge regression) to the *integer* model's own PSC values, so it sees
exactly the features the hardware produces, and is then scaled by one factor for all classes
(argmax is invariant to a common positive scale) so that its largest weight is
``2**(D_BITS-1) - 1``.
"""

from __future__ import annotations

import numpy as np

from . import model
from .constants import (
    B_BITS,
    D_BITS,
    LFSR_SEED_DEFAULT,
    SCORE_BITS,
    V_FRAC,
    W_BITS,
    W_BITS_MIN,
    W_SHIFT_MAX,
    W_SHIFT_MIN,
    signed_range,
)
from .reference import Decoder, FloatNetwork


def input_shifts(peak: np.ndarray, w_bits: int = W_BITS,
                 shift_min: int = W_SHIFT_MIN) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron the smallest shift ``>= shift_min`` that puts its largest weight ``peak``
    (Q5.10 LSB per pixel unit) in ``w_bits``, and the half LSB its bias gets at a right shift
    (so that the floor shift rounds to nearest): ``(shift, half)``, int64. A shift above
    ``W_SHIFT_MAX`` is returned as found; the caller refuses or clamps it."""
    _, w_hi = signed_range(w_bits)
    peak = np.asarray(peak, dtype=np.float64)
    shift = np.full(len(peak), shift_min, dtype=np.int64)
    while True:
        too_big = (np.round(peak / np.exp2(shift)) > w_hi) & (shift <= W_SHIFT_MAX)
        if not too_big.any():
            break
        shift[too_big] += 1
    half = np.where(shift < 0, np.left_shift(1, np.maximum(-shift - 1, 0)), 0)
    return shift, half


def input_stage(w_lsb: np.ndarray, bias_lsb: np.ndarray, w_bits: int = W_BITS,
                shift_min: int = W_SHIFT_MIN):
    """Integer ``(w_in, w_shift, bias)`` of real weights and biases (the module's rule).

    Parameters
    ----------
    w_lsb : float array (N, M)
        Weights in Q5.10 LSB of current per pixel unit: a weight of ``w`` thresholds per
        full-scale pixel is ``w * 2**V_FRAC / pixel_max``.
    bias_lsb : float array (N,)
        Bias currents in Q5.10 LSB.
    w_bits : int
        Weight width, ``W_BITS_MIN .. W_BITS``.
    shift_min : int
        Smallest shift allowed, ``>= W_SHIFT_MIN`` (0 keeps to left shifts).

    Raises
    ------
    ValueError
        If a neuron's weights need a shift beyond ``W_SHIFT_MAX`` or a bias leaves ``B_BITS``.
    """
    if not W_BITS_MIN <= w_bits <= W_BITS:
        raise ValueError(f"w_bits must lie in {W_BITS_MIN} .. {W_BITS}, got {w_bits}")
    if not W_SHIFT_MIN <= shift_min <= W_SHIFT_MAX:
        raise ValueError(f"shift_min must lie in {W_SHIFT_MIN} .. {W_SHIFT_MAX}")
    w_lsb = np.asarray(w_lsb, dtype=np.float64)
    w_lo, w_hi = signed_range(w_bits)
    shift, half = input_shifts(np.abs(w_lsb).max(axis=1), w_bits, shift_min)
    if shift.max() > W_SHIFT_MAX:
        raise ValueError(
            f"a neuron's weights need a shift of {shift.max()}, beyond {W_SHIFT_MAX}")
    scale = np.exp2(shift.astype(np.float64))
    w_in = np.clip(np.round(w_lsb / scale[:, None]), w_lo, w_hi).astype(np.int64)
    bias = np.round(np.asarray(bias_lsb, dtype=np.float64) / scale).astype(np.int64) + half
    b_lo, b_hi = signed_range(B_BITS)
    if bias.min() < b_lo or bias.max() > b_hi:
        raise ValueError(f"a bias leaves the {B_BITS}-bit range: {bias.min()} .. {bias.max()}")
    return w_in, shift, bias


def quantize_input_stage(net: FloatNetwork):
    """Integer ``(w_in, w_shift, bias)`` of the float seed network's input stage: 8-bit
    weights and left shifts only (``shift_min = 0``), as the seed network was published."""
    w_real = net.gain[:, None] * net.encoders / net.pixel_max * (1 << V_FRAC)
    return input_stage(w_real, net.bias * (1 << V_FRAC), W_BITS, shift_min=0)


def quantize_decoder(decoder: Decoder):
    """Integer ``(dec, dec_bias)`` from a decoder fitted on integer PSC values."""
    d_hi = signed_range(D_BITS)[1]
    scale = d_hi / np.abs(decoder.weights).max()
    dec = np.round(decoder.weights * scale).astype(np.int64)
    dec_bias = np.round(decoder.intercept * scale).astype(np.int64)
    s_lo, s_hi = signed_range(SCORE_BITS)
    if dec_bias.min() < s_lo or dec_bias.max() > s_hi:
        raise ValueError("the decoder bias leaves the score range")
    return dec, dec_bias


def integer_network(net: FloatNetwork, leak_shift: int, psc_shift: int, rate_bits: int,
                    lfsr_seed: int = LFSR_SEED_DEFAULT) -> model.Network:
    """The integer network with its input stage quantised and an empty (zero) decoder."""
    w_in, w_shift, bias = quantize_input_stage(net)
    neurons = w_in.shape[0]
    return model.Network(
        w_in=w_in, w_shift=w_shift, bias=bias,
        v_th=np.full(neurons, 1 << V_FRAC, dtype=np.int64),
        dec=np.zeros((1, neurons), dtype=np.int64), dec_bias=np.zeros(1, dtype=np.int64),
        leak_shift=leak_shift, psc_shift=psc_shift,
        ref_steps=int(round(net.tau_ref / net.dt)), rate_bits=rate_bits, lfsr_seed=lfsr_seed,
    )
