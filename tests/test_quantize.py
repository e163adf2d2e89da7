"""Quantisation: per-neuron shifts, weight and bias scaling, decoder scaling."""

import numpy as np
import pytest

from golden import model, quantize, reference
from golden.constants import V_FRAC


def test_shift_is_the_smallest_that_fits_eight_bits():
    net = reference.make_network(0, 256, 64, 16)
    w_in, shift, bias = quantize.quantize_input_stage(net)
    w_real = net.gain[:, None] * net.encoders / 16 * (1 << V_FRAC)
    peak = np.abs(w_real).max(axis=1)
    assert np.all(np.round(peak / 2.0**shift) <= 127)
    smaller = np.maximum(shift - 1, 0)
    assert np.all((shift == 0) | (np.round(peak / 2.0**smaller) > 127))
    assert w_in.min() >= -128 and w_in.max() <= 127
    # Every neuron uses its weight range: the largest weight has at least 6 significant bits.
    assert np.all((np.abs(w_in).max(axis=1) >= 64) | (shift == 0))


def test_integer_current_approximates_float_current():
    # Compared with a tolerance on purpose: this checks quantisation error, not bit-exactness.
    net = reference.make_network(1, 128, 64, 16)
    inet = quantize.integer_network(net, 4, 5, 4)
    x = np.random.default_rng(0).integers(0, 17, size=(20, 64))
    exact = reference.currents(x, net) * (1 << V_FRAC)
    acc = x @ inet.w_in.T + inet.bias
    unsaturated = acc * 2.0**inet.w_shift
    # Error of round-to-nearest weights: at most half an LSB per weight, times the pixel sum.
    bound = (0.5 * x.sum(axis=1, keepdims=True) + 0.5) * 2.0**inet.w_shift
    assert np.all(np.abs(unsaturated - exact) <= bound)
    assert np.array_equal(model.input_current(x, inet),
                          np.clip(unsaturated.astype(np.int64), -32768, 32767))


def test_decoder_scaled_by_one_factor_keeps_argmax():
    rng = np.random.default_rng(2)
    dec = reference.Decoder(rng.normal(size=(10, 40)) * 1e-3, rng.normal(size=10) * 0.1)
    w, b = quantize.quantize_decoder(dec)
    assert np.abs(w).max() == 127
    scale = 127 / np.abs(dec.weights).max()
    assert np.array_equal(w, np.round(dec.weights * scale))
    assert np.array_equal(b, np.round(dec.intercept * scale))


def test_gain_too_large_for_the_shift_width_is_refused():
    net = reference.make_network(0, 4, 8, 16)
    huge = net._replace(gain=net.gain * 1e9)
    with pytest.raises(ValueError, match="need a shift of .*, beyond 15"):
        quantize.quantize_input_stage(huge)


def test_input_stage_right_shifts_for_small_trained_weights():
    # MNIST-like: weights of 0.01 .. 0.5 threshold per full-scale pixel (255), 4- and 8-bit.
    rng = np.random.default_rng(3)
    peak_thr = np.array([0.01, 0.05, 0.2, 0.5])
    w_thr = rng.uniform(-1, 1, (4, 784)) * peak_thr[:, None]
    w_thr[np.arange(4), np.arange(4)] = peak_thr  # the peak itself
    w_lsb = w_thr * (1 << V_FRAC) / 255
    bias_lsb = np.array([-0.3, 0.1, 1.5, -2.0]) * (1 << V_FRAC)
    for w_bits, expected in ((8, [-11, -9, -7, -5]), (4, [-7, -5, -3, -1])):
        w_in, shift, bias = quantize.input_stage(w_lsb, bias_lsb, w_bits)
        assert shift.tolist() == expected, w_bits
        hi = 2 ** (w_bits - 1) - 1
        assert np.abs(w_in).max() <= hi
        assert np.all(np.abs(w_in).max(axis=1) > hi // 2)  # the smallest shift that fits
        assert np.array_equal(w_in, np.round(w_lsb / 2.0**shift[:, None]))
        # The bias carries half an LSB of the shift, so the floor shift rounds to nearest.
        half = 2 ** (-shift - 1)
        assert np.array_equal(bias, np.round(bias_lsb / 2.0**shift) + half)
        x = np.zeros((1, 784), np.int64)
        inet = model.Network(w_in, shift, bias, np.ones(4, np.int64), np.zeros((2, 4), np.int64),
                             np.zeros(2, np.int64), 4, 5, 2, 8, 1, w_bits=w_bits)
        # With no input, I is the bias rounded to the nearest LSB (ties up).
        assert model.input_current(x, inet)[0].tolist() == np.floor(bias_lsb + 0.5).tolist()


def test_input_stage_left_only_keeps_the_seed_rule():
    net = reference.make_network(0, 64, 64, 16)
    w_real = net.gain[:, None] * net.encoders / 16 * (1 << V_FRAC)
    got = quantize.input_stage(w_real, net.bias * (1 << V_FRAC), 8, shift_min=0)
    for a, b in zip(got, quantize.quantize_input_stage(net), strict=True):
        assert np.array_equal(a, b)
    assert got[1].min() >= 0


def test_input_stage_refuses_bad_arguments():
    with pytest.raises(ValueError, match="w_bits"):
        quantize.input_stage(np.ones((1, 2)), np.zeros(1), 9)
    with pytest.raises(ValueError, match="shift_min"):
        quantize.input_stage(np.ones((1, 2)), np.zeros(1), 8, shift_min=-17)
    with pytest.raises(ValueError, match="bias leaves"):
        quantize.input_stage(np.full((1, 2), 1e-6), np.array([1e6]), 8)
