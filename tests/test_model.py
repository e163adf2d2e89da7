"""Tests of the bit-accurate integer model, :mod:`golden.model`.

Expected values are hand-computed from the equations in ``golden/model.py``'s docstring and
written out as literals; every comparison is exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from golden import constants as c
from golden import image, lfsr, model

# First 16 four-bit draws from LFSR_SEED_DEFAULT (same literals as tests/test_lfsr.py).
DEFAULT_SEED_DRAWS_4BIT = [4, 7, 4, 6, 9, 11, 11, 13, 9, 11, 3, 8, 4, 15, 1, 13]


def make_net(w_in, *, w_shift=0, bias=0, v_th=1 << c.V_FRAC, dec=None, dec_bias=0,
             leak_shift=0, psc_shift=4, ref_steps=0, rate_bits=4,
             lfsr_seed=c.LFSR_SEED_DEFAULT) -> model.Network:
    """A Network from small literals; scalars broadcast to one value per neuron / class."""
    w_in = np.array(w_in, dtype=np.int64)
    n = w_in.shape[0]
    if dec is None:
        dec = np.eye(2, n, dtype=np.int64)
    dec = np.array(dec, dtype=np.int64)

    def per(value, size):
        return np.broadcast_to(np.array(value, dtype=np.int64), (size,)).copy()

    return model.Network(
        w_in=w_in, w_shift=per(w_shift, n), bias=per(bias, n), v_th=per(v_th, n), dec=dec,
        dec_bias=per(dec_bias, dec.shape[0]), leak_shift=leak_shift, psc_shift=psc_shift,
        ref_steps=ref_steps, rate_bits=rate_bits, lfsr_seed=lfsr_seed)


def lif_trace(net, currents, v0=0, ref0=0):
    """Run lif_step for one neuron (batch 1) over a list of currents; returns python lists."""
    v = np.array([[v0]], dtype=np.int64)
    ref = np.array([[ref0]], dtype=np.int64)
    vs, refs, spikes = [], [], []
    for current in currents:
        s, v, ref = model.lif_step(np.array([[current]], dtype=np.int64), v, ref, net)
        vs.append(int(v[0, 0]))
        refs.append(int(ref[0, 0]))
        spikes.append(int(s[0, 0]))
    return vs, refs, spikes


def one_neuron(**kw) -> model.Network:
    return make_net([[1]], **kw)


# --- lif_step ----------------------------------------------------------------------------


def test_lif_leak_is_floor_shift_of_negative_difference():
    # (0 - 5) >> 4 == -1 (floor), not 0 (truncation): v decays 5, 4, 3, 2, 1, 0 and stays.
    net = one_neuron(leak_shift=4, v_th=1000)
    vs, refs, spikes = lif_trace(net, [0] * 7, v0=5)
    assert vs == [4, 3, 2, 1, 0, 0, 0]
    assert refs == [0] * 7
    assert spikes == [0] * 7


def test_lif_integration_known_answer():
    # I = 1000, leak_shift = 4, from rest:
    #   0 + (1000 >> 4 = 62) = 62;  62 + (938 >> 4 = 58) = 120;  120 + (880 >> 4 = 55) = 175
    #   175 + (825 >> 4 = 51) = 226;  226 + (774 >> 4 = 48) = 274
    net = one_neuron(leak_shift=4, v_th=1024)
    vs, _, spikes = lif_trace(net, [1000] * 5)
    assert vs == [62, 120, 175, 226, 274]
    assert spikes == [0] * 5


def test_lif_leak_with_mixed_currents():
    # leak_shift = 2: 0 + (100 >> 2) = 25;  25 + (-75 >> 2 = -19) = 6;  6 + (7 >> 2 = 1) = 7;
    # 7 + (-8 >> 2 = -2) = 5;  5 + (-6 >> 2 = -2) = 3  (truncation would give -1 -> 4)
    net = one_neuron(leak_shift=2, v_th=1000)
    vs, _, _ = lif_trace(net, [100, -50, 13, -1, -1])
    assert vs == [25, 6, 7, 5, 3]


def test_lif_clamps_at_zero():
    # 10 + (-2010 >> 2 = -503) = -493 -> 0;  0 + (-2000 >> 2 = -500) -> 0
    net = one_neuron(leak_shift=2, v_th=1000)
    vs, refs, spikes = lif_trace(net, [-2000, -2000, c.I_MIN], v0=10)
    assert vs == [0, 0, 0]
    assert spikes == [0, 0, 0]
    # leak_shift = 0 sets v = I, so a negative current gives 0.
    vs, _, _ = lif_trace(one_neuron(leak_shift=0, v_th=1000), [-1, c.I_MIN, 7, -7], v0=300)
    assert vs == [0, 0, 7, 0]


def test_lif_spikes_at_threshold_not_below():
    net = one_neuron(leak_shift=0, v_th=100)
    vs, refs, spikes = lif_trace(net, [99, 99, 100, 99, 101])
    assert spikes == [0, 0, 1, 0, 1]
    assert vs == [99, 99, 0, 99, 0]  # reset to 0 in the spiking step
    assert refs == [0] * 5


def test_lif_refractory_two_steps():
    # leak_shift = 1, I = 100, v_th = 90: 50, 75, 87, 93 -> spike at step 3; steps 4 and 5
    # do not integrate (v stays 0 although I would give 50); step 6 integrates again.
    net = one_neuron(leak_shift=1, v_th=90, ref_steps=2)
    vs, refs, spikes = lif_trace(net, [100] * 10)
    assert vs == [50, 75, 87, 0, 0, 0, 50, 75, 87, 0]
    assert refs == [0, 0, 0, 2, 1, 0, 0, 0, 0, 2]
    assert spikes == [0, 0, 0, 1, 0, 0, 0, 0, 0, 1]


def test_lif_refractory_at_threshold_current():
    # Spiking at t, silent at t+1 and t+2, spiking again at t+3.
    net = one_neuron(leak_shift=0, v_th=100, ref_steps=2)
    vs, refs, spikes = lif_trace(net, [100] * 7)
    assert spikes == [1, 0, 0, 1, 0, 0, 1]
    assert refs == [2, 1, 0, 2, 1, 0, 2]
    assert vs == [0] * 7


def test_lif_refractory_max_steps():
    net = one_neuron(leak_shift=0, v_th=100, ref_steps=7)
    _, refs, spikes = lif_trace(net, [100] * 17)
    assert spikes == [1, 0, 0, 0, 0, 0, 0, 0] * 2 + [1]
    assert refs == [7, 6, 5, 4, 3, 2, 1, 0] * 2 + [7]


def test_lif_no_refractory_spikes_every_step():
    net = one_neuron(leak_shift=0, v_th=100, ref_steps=0)
    vs, refs, spikes = lif_trace(net, [100] * 5)
    assert spikes == [1] * 5
    assert vs == [0] * 5
    assert refs == [0] * 5


def test_lif_refractory_neuron_neither_integrates_nor_spikes():
    # A refractory neuron keeps v even when v >= v_th and the current is large.
    net = one_neuron(leak_shift=0, v_th=100, ref_steps=3)
    vs, refs, spikes = lif_trace(net, [5000, 5000, 5000], v0=200, ref0=2)
    assert vs == [200, 200, 0]
    assert refs == [1, 0, 3]
    assert spikes == [0, 0, 1]


def test_lif_floor_leak_fixed_point_below_current():
    # With floor shifts v stops rising once I - v < 2**leak_shift: the neuron settles at
    # I - 15 for leak_shift 4 and never reaches v_th = I.
    net = one_neuron(leak_shift=4, v_th=c.I_MAX)
    v = np.array([[c.I_MAX - 40]], dtype=np.int64)
    ref = np.zeros((1, 1), dtype=np.int64)
    current = np.array([[c.I_MAX]], dtype=np.int64)
    for _ in range(200):
        s, v, ref = model.lif_step(current, v, ref, net)
        assert not s.any()
    assert int(v[0, 0]) == c.I_MAX - 15


def test_lif_vectorised_over_batch_and_neurons():
    # Per-neuron thresholds; batch rows are independent.
    net = make_net([[1], [1], [1]], v_th=[10, 20, 30], leak_shift=0, ref_steps=1)
    current = np.array([[20, 20, 20], [30, 5, -4]], dtype=np.int64)
    v = np.zeros((2, 3), dtype=np.int64)
    ref = np.array([[0, 1, 0], [0, 0, 0]], dtype=np.int64)
    s, v, ref = model.lif_step(current, v, ref, net)
    assert s.tolist() == [[True, False, False], [True, False, False]]
    assert v.tolist() == [[0, 0, 20], [0, 5, 0]]
    assert ref.tolist() == [[1, 0, 0], [1, 0, 0]]


# --- psc_step ----------------------------------------------------------------------------


def psc_trace(psc0, spikes, psc_shift):
    psc = np.array([[psc0]], dtype=np.int64)
    out = []
    for s in spikes:
        psc = model.psc_step(psc, np.array([[bool(s)]]), psc_shift)
        out.append(int(psc[0, 0]))
    return out


def test_psc_decay_floor_reaches_zero():
    # (-20 >> 4) = -2 -> 18; (-18 >> 4) = -2 -> 16; (-16 >> 4) = -1 -> 15; then -1 per step.
    got = psc_trace(20, [0] * 19, 4)
    assert got == [18, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]


@pytest.mark.parametrize("psc_shift", range(1, 16))
def test_psc_decay_reaches_exactly_zero_from_max(psc_shift):
    # Every decay step removes at least 1, so 4095 steps always reach 0, and 0 stays 0.
    got = psc_trace(c.PSC_ONE - 1, [0] * c.PSC_ONE, psc_shift)
    assert got[-1] == 0
    assert min(got) == 0
    assert all(a > b or a == b == 0 for a, b in zip(got, got[1:], strict=False))


def test_psc_spike_known_answer():
    # psc_shift = 4 from 0: +4096>>4 = 256; +3840>>4 = 240 -> 496; +3600>>4 = 225 -> 721;
    # no spike: -721>>4 = -46 -> 675; spike: +3421>>4 = 213 -> 888
    assert psc_trace(0, [1, 1, 1, 0, 1], 4) == [256, 496, 721, 675, 888]
    # psc_shift = 1 halves the distance to PSC_ONE and ends at 4095, never 4096.
    assert psc_trace(0, [1] * 14, 1) == [2048, 3072, 3584, 3840, 3968, 4032, 4064, 4080,
                                         4088, 4092, 4094, 4095, 4095, 4095]


def test_psc_large_shifts_are_dead():
    # psc_shift >= 13: 4096 >> 13 == 0, so a spike from rest never moves the filter.
    for k in (13, 14, 15):
        assert psc_trace(0, [1] * 50, k) == [0] * 50
    # psc_shift = 12: one step to 1, then (4095 >> 12) == 0.
    assert psc_trace(0, [1] * 5, 12) == [1] * 5


@pytest.mark.parametrize("psc_shift", range(1, 16))
def test_psc_saturating_spike_train_stays_below_psc_one(psc_shift):
    got = psc_trace(0, [1] * 3000, psc_shift)
    assert 0 <= min(got) and max(got) <= c.PSC_ONE - 1
    # Monotone non-decreasing, and it ends at the floor-shift fixed point
    # (it stops once PSC_ONE - psc < 2**psc_shift).
    assert all(a <= b for a, b in zip(got, got[1:], strict=False))
    if psc_shift <= 7:  # slower filters have not converged after 3000 steps
        assert c.PSC_ONE - got[-1] < 1 << psc_shift
        assert got[-1] == got[-2]


def test_psc_bound_exhaustive_one_step():
    # Every state in 0..4095, with and without a spike, for psc_shift 1..15, stays in
    # 0..4095: by induction the filter never leaves its 12-bit width.
    psc = np.arange(c.PSC_ONE, dtype=np.int64)[None, :].repeat(2, axis=0)
    spikes = np.array([[False], [True]]).repeat(c.PSC_ONE, axis=1)
    for k in range(1, 16):
        nxt = model.psc_step(psc, spikes, k)
        assert nxt.min() == 0 and nxt.max() == c.PSC_ONE - 1
        # A spike never lowers the filter, no spike never raises it.
        assert (nxt[1] >= psc[1]).all() and (nxt[0] <= psc[0]).all()


def test_psc_shift_zero_reaches_psc_one():
    # What the model does with psc_shift = 0: a spike sets psc to PSC_ONE = 4096, which needs
    # 13 bits, breaking the 12-bit PSC width. The model does not guard against it; the image
    # loader must reject psc_shift = 0 (see test_image_rejects_psc_shift_zero).
    assert psc_trace(0, [1, 0, 1, 1], 0) == [c.PSC_ONE, 0, c.PSC_ONE, c.PSC_ONE]
    assert c.PSC_ONE > c.unsigned_range(c.PSC_BITS)[1]


def test_image_rejects_psc_shift_zero():
    # The only guard for psc_shift = 0 is the image validator's parameter range.
    assert image.PARAMETERS["psc_shift"][0] >= 1


# --- input_current -----------------------------------------------------------------------


def test_input_current_saturates_high_and_low():
    net = make_net([[127, 127, 127], [-128, -128, -128], [127, -128, 0]], w_shift=15,
                   bias=[2**19 - 1, -(2**19), 0])
    x = np.array([[16, 16, 16], [0, 0, 0]], dtype=np.int64)
    got = model.input_current(x, net)
    # row 0: acc = 6096, -6144, -16; row 1: acc = 0; then (acc + bias) << 15 saturates,
    # except 0 << 15 = 0.
    assert got.tolist() == [[c.I_MAX, c.I_MIN, c.I_MIN], [c.I_MAX, c.I_MIN, 0]]
    assert got.dtype == np.int64


def test_input_current_saturation_edges_exact():
    # w = 0, shift 0: I = bias, clipped to -32768 .. 32767 exactly at the edges.
    biases = [c.I_MAX - 1, c.I_MAX, c.I_MAX + 1, c.I_MIN + 1, c.I_MIN, c.I_MIN - 1]
    net = make_net([[0]] * 6, bias=biases)
    got = model.input_current(np.array([[9]], dtype=np.int64), net)
    assert got.tolist() == [[32766, 32767, 32767, -32767, -32768, -32768]]
    # The same edges reached through the shift: (2047 + 0) << 4 = 32752; 2048 << 4 = 32768.
    net = make_net([[1], [1], [-1], [-1]], w_shift=4, bias=[0, 1, 0, -1])
    got = model.input_current(np.array([[2047]], dtype=np.int64), net)
    assert got.tolist() == [[32752, 32767, -32752, -32768]]


def test_input_current_shift_applies_to_sum_with_bias():
    # x = (5, 7).  neuron 0: acc = 15 - 14 = 1, (1 + 2) << 3 = 24 (shifting acc alone and
    # adding the bias would give 8 + 2 = 10);  neuron 1: acc = -12, (-12 + 9) << 2 = -12;
    # neuron 2: acc = 0, (0 - 1) << 5 = -32.
    net = make_net([[3, -2], [-1, -1], [0, 0]], w_shift=[3, 2, 5], bias=[2, 9, -1])
    got = model.input_current(np.array([[5, 7]], dtype=np.int64), net)
    assert got.tolist() == [[24, -12, -32]]


def shift_reference(a: int, s: int) -> int:
    """The signed shift in Python integers: multiply, or divide rounding toward minus
    infinity (``//`` is floor division)."""
    return a * 2**s if s >= 0 else a // 2**-s


def test_signed_shift_known_answers():
    # Right shifts floor, also for negative sums: -5 >> 1 = -3 (truncation would give -2),
    # -1 >> 16 = -1, 1 >> 16 = 0, -(2**16) - 1 >> 16 = -2.
    a = [-5, -5, 5, -1, 1, -(2**16) - 1, 2**16, 7, -7, 3]
    s = [-1, -2, -1, -16, -16, -16, -16, 0, 15, c.W_SHIFT_MAX]
    assert model.shift(np.array(a), np.array(s)).tolist() == [
        -3, -2, 2, -1, 0, -2, 1, 7, -7 * 2**15, 3 * 2**15]
    assert (c.W_SHIFT_MIN, c.W_SHIFT_MAX) == (-16, 15)


def test_signed_shift_random_over_the_whole_range():
    rng = np.random.default_rng(9)
    a = rng.integers(-(2**32), 2**32, 5000)
    s = rng.integers(c.W_SHIFT_MIN, c.W_SHIFT_MAX + 1, 5000)
    a[:64], s[:64] = rng.choice([-(2**32), 2**32 - 1, -1, 0, 1], 64), np.arange(-32, 32) // 2
    got = model.shift(a, s)
    assert got.tolist() == [shift_reference(int(x), int(k)) for x, k in zip(a, s, strict=True)]


def test_input_current_right_shift_known_answers():
    # I = sat(floor((acc + bias) / 2**k)): the bias is added before the shift, the shift
    # floors, and the saturation applies to the shifted value.
    net = make_net([[1], [1], [-1], [-1], [1], [1], [1]],
                   w_shift=[-1, -4, -1, -16, -16, -16, -16],
                   bias=[0, -20, 0, 0, 2**31 - 1 - 9, -(2**31), 2**31 - 1])
    got = model.input_current(np.array([[9]], dtype=np.int64), net)
    # 9 >> 1 = 4; (9 - 20) >> 4 = -1; -9 >> 1 = -5; -9 >> 16 = -1;
    # (2**31 - 1) >> 16 = 32767 = I_MAX unsaturated; (9 - 2**31) >> 16 = -32768 = I_MIN;
    # (2**31 + 8) >> 16 = 32768 saturates to I_MAX.
    assert got.tolist() == [[4, -1, -5, -1, c.I_MAX, c.I_MIN, c.I_MAX]]


def test_input_current_784_inputs_four_bit_weights_equals_python_integers():
    # An MNIST-sized input stage: 784 inputs, 4-bit weights, shifts over the whole range,
    # 8-bit pixels and rate spikes 2**8, against the equation in Python integers.
    rng = np.random.default_rng(784)
    n, m = 40, 784
    # Mostly right shifts, with biases from both ends of B_BITS (saturating) and small ones.
    w_shift = np.concatenate([rng.integers(-16, -4, 30), rng.integers(-4, 16, 10)])
    bias = rng.integers(-(2**20), 2**20, n)
    bias[:4] = [-(2**31), 2**31 - 1, -(2**31), 2**31 - 1]
    net = make_net(rng.integers(-8, 8, (n, m)), w_shift=w_shift, bias=bias)._replace(w_bits=4)
    x = np.concatenate([rng.integers(0, 256, (3, m)), rng.choice([0, 256], (2, m))])
    got = model.input_current(x, net)
    for b in range(len(x)):
        for k in range(n):
            acc = sum(int(w) * int(p) for w, p in zip(net.w_in[k], x[b], strict=True))
            value = shift_reference(acc + int(net.bias[k]), int(net.w_shift[k]))
            assert got[b, k] == min(max(value, c.I_MIN), c.I_MAX), (b, k)
    assert got.min() == c.I_MIN and got.max() == c.I_MAX
    assert ((got > c.I_MIN) & (got < c.I_MAX)).sum() > 10  # not everything saturates


def test_input_current_mid_range_known_answer():
    w_in = [[12, -7, 3, 0], [-100, 55, 1, 2], [127, -128, 64, -64]]
    net = make_net(w_in, w_shift=[2, 0, 1], bias=[-40, 300, 5])
    x = np.array([[16, 3, 0, 9], [1, 2, 3, 4]], dtype=np.int64)
    # image 0: acc = 192-21+0+0 = 171 -> (171-40)<<2 = 524
    #          acc = -1600+165+0+18 = -1417 -> (-1417+300)<<0 = -1117
    #          acc = 2032-384+0-576 = 1072 -> (1072+5)<<1 = 2154
    # image 1: acc = 12-14+9+0 = 7 -> (7-40)<<2 = -132
    #          acc = -100+110+3+8 = 21 -> 321
    #          acc = 127-256+192-256 = -193 -> (-193+5)<<1 = -376
    assert model.input_current(x, net).tolist() == [[524, -1117, 2154], [-132, 321, -376]]


# --- encode_rate -------------------------------------------------------------------------


def test_encode_rate_known_answer():
    x = np.array([[0, 1, 5, 16], [16, 0, 6, 15]], dtype=np.int64)
    draw = np.array([0, 0, 5, 15], dtype=np.uint16)
    got = model.encode_rate(x, draw, 4)
    assert got.tolist() == [[0, 16, 0, 16], [16, 0, 16, 0]]
    assert got.dtype == np.int64


@pytest.mark.parametrize("rate_bits", [1, 4, 8])
def test_encode_rate_exhaustive(rate_bits):
    top = 1 << rate_bits
    draw = np.arange(top, dtype=np.uint16)
    for xv in range(top + 1):
        x = np.full((1, top), xv, dtype=np.int64)
        got = model.encode_rate(x, draw, rate_bits)[0]
        assert got.tolist() == [top if d < xv else 0 for d in range(top)]
    # Per-image draws of shape (B, M).
    x = np.array([[3, 3], [3, 3]], dtype=np.int64)
    draw = np.array([[2, 3], [3, 2]], dtype=np.uint16)
    assert model.encode_rate(x, draw, rate_bits).tolist() == [[top, 0], [0, top]]


# --- readout and argmax ------------------------------------------------------------------


def test_readout_known_answer():
    dec = [[1, -2, 3], [-128, 127, 0], [0, 0, 0]]
    net = make_net([[0]] * 3, dec=dec, dec_bias=[10, -5, 2**31 - 1])
    psc = np.array([[100, 7, 4095], [0, 0, 0]], dtype=np.int64)
    # 10 + 100 - 14 + 12285 = 12381;  -5 - 12800 + 889 = -11916;  2**31 - 1
    assert model.readout(psc, net).tolist() == [[12381, -11916, 2**31 - 1],
                                                [10, -5, 2**31 - 1]]


def test_readout_exact_at_largest_magnitudes():
    n = 256
    net = make_net([[0]] * n, dec=[[-128] * n, [127] * n], dec_bias=[-(2**30), 2**30])
    psc = np.full((1, n), c.PSC_ONE - 1, dtype=np.int64)
    assert model.readout(psc, net).tolist() == [[-(2**30) - 128 * 4095 * n,
                                                 2**30 + 127 * 4095 * n]]


def test_argmax_ties_pick_lowest_index():
    scores = np.array([[3, 7, 7, 1], [5, 5, 5, 5], [-1, -1, -2, -1], [1, 2, 3, 4],
                       [c.SCORE_MIN, c.SCORE_MIN, c.SCORE_MIN, c.SCORE_MAX]])
    assert model.argmax(scores).tolist() == [1, 0, 0, 3, 3]
    # (T, B, C) as run() uses it.
    assert model.argmax(np.zeros((2, 3, 4), dtype=np.int64)).tolist() == [[0] * 3] * 2


# --- run ---------------------------------------------------------------------------------


def test_run_hand_computed():
    # Neuron 0: I = 2 << 10 = 2048, leak 1: v = 1024 >= 1024 -> spike; ref_steps 1 makes it
    #   skip every other step.  psc0 (shift 2): 1024, 768, 1600, 1200, 1924.
    # Neuron 1: I = 2 << 9 = 1024, v_th 900: v = 512, 768, 896, 960 -> spike, then refractory.
    #   psc1: 0, 0, 0, 1024, 768.
    # Scores: class 0 = psc0 + 2 psc1; class 1 = 2000 - psc0.
    net = make_net([[1], [1]], w_shift=[10, 9], v_th=[1024, 900], dec=[[1, 2], [-1, 0]],
                   dec_bias=[0, 2000], leak_shift=1, psc_shift=2, ref_steps=1)
    res = model.run(np.array([[2]]), net, 5, record=True)
    assert res.spikes[:, 0].astype(int).tolist() == [[1, 0], [0, 0], [1, 0], [0, 1], [1, 0]]
    assert res.v[:, 0].tolist() == [[0, 512], [0, 768], [0, 896], [0, 0], [0, 0]]
    assert res.psc[:, 0].tolist() == [[1024, 0], [768, 0], [1600, 0], [1200, 1024],
                                      [1924, 768]]
    assert res.scores[:, 0].tolist() == [[1024, 976], [768, 1232], [1600, 400],
                                         [3248, 800], [3460, 76]]
    assert res.classes[:, 0].tolist() == [0, 1, 0, 0, 0]
    assert res.spike_count.tolist() == [4]


def test_run_rate_mode_draw_order():
    # Neuron j copies input j: one input spike (16) gives I = 16 << 6 = v_th with leak 0 and
    # no refractory period, so the recorded spikes are the encoder's spike trains. Draw
    # t * inputs + j belongs to pixel j at step t.
    x = [5, 11, 4, 13]
    net = make_net(np.eye(4, dtype=np.int64), w_shift=6, v_th=16 << 6, leak_shift=0)
    res = model.run(np.array([x]), net, 4, mode=c.MODE_RATE, record=True)
    expected = [[DEFAULT_SEED_DRAWS_4BIT[t * 4 + j] < x[j] for j in range(4)] for t in range(4)]
    assert res.spikes[:, 0].tolist() == expected
    # and, spelt out: draws [4 7 4 6], [9 11 11 13], [9 11 3 8], [4 15 1 13]; a draw equal
    # to the pixel (4 vs 4, 11 vs 11, 13 vs 13) gives no spike.
    assert np.array(expected, dtype=int).tolist() == [[1, 1, 0, 1], [0, 0, 0, 0],
                                                      [0, 0, 1, 1], [1, 0, 1, 0]]


def random_net(rng, neurons=5, inputs=4, classes=3, **kw) -> model.Network:
    params = dict(leak_shift=2, psc_shift=3, ref_steps=1, rate_bits=4)
    params.update(kw)
    return make_net(
        rng.integers(-128, 128, (neurons, inputs)), w_shift=rng.integers(2, 7, neurons),
        bias=rng.integers(-200, 200, neurons), v_th=rng.integers(500, 3000, neurons),
        dec=rng.integers(-128, 128, (classes, neurons)),
        dec_bias=rng.integers(-5000, 5000, classes), **params)


def compose(images, net, timesteps, mode, seeds):
    """run() rebuilt from the model's parts, image by image, step by step."""
    out = {k: [] for k in ("scores", "spikes", "v", "psc")}
    for b, img in enumerate(images):
        x = np.asarray(img, dtype=np.int64)[None, :]
        seed = seeds[b] if np.ndim(seeds) else seeds
        draws = lfsr.draws(int(seed), timesteps * net.inputs, net.rate_bits)
        state = model.initial_state(1, net.neurons)
        v, ref, psc = state
        per = {k: [] for k in out}
        for t in range(timesteps):
            if mode == c.MODE_CURRENT:
                x_t = x
            else:
                x_t = model.encode_rate(x, draws[t * net.inputs:(t + 1) * net.inputs],
                                        net.rate_bits)
            current = model.input_current(x_t, net)
            s, v, ref = model.lif_step(current, v, ref, net)
            psc = model.psc_step(psc, s, net.psc_shift)
            for k, val in (("scores", model.readout(psc, net)), ("spikes", s), ("v", v),
                           ("psc", psc)):
                per[k].append(val[0])
        for k in out:
            out[k].append(np.array(per[k]))
    return {k: np.stack(v, axis=1) for k, v in out.items()}  # (T, B, ...)


@pytest.mark.parametrize("mode", [c.MODE_CURRENT, c.MODE_RATE])
def test_run_record_matches_composition(mode):
    rng = np.random.default_rng(1)
    net = random_net(rng)
    images = rng.integers(0, 17, (4, net.inputs))
    timesteps = 30
    res = model.run(images, net, timesteps, mode=mode, record=True)
    exp = compose(images, net, timesteps, mode, net.lfsr_seed)
    for k in ("scores", "spikes", "v", "psc"):
        assert np.array_equal(getattr(res, k), exp[k]), k
    assert np.array_equal(res.classes, np.argmax(exp["scores"], axis=-1))
    assert res.spikes.dtype == bool
    assert res.spikes.any() and not res.spikes.all()  # the test exercises real dynamics
    assert np.array_equal(res.spike_count, res.spikes.sum(axis=(0, 2)))


@pytest.mark.parametrize("mode", [c.MODE_CURRENT, c.MODE_RATE])
def test_run_batch_equals_single_images(mode):
    rng = np.random.default_rng(2)
    net = random_net(rng, neurons=6, inputs=5, classes=3, ref_steps=2)
    images = rng.integers(0, 17, (6, net.inputs))
    images[1] = images[0]  # duplicates in one batch must not interact
    batch = model.run(images, net, 25, mode=mode, record=True)
    assert batch.scores.shape == (25, 6, 3)
    assert batch.classes.shape == (25, 6)
    for b in range(len(images)):
        alone = model.run(images[b:b + 1], net, 25, mode=mode, record=True)
        for k in ("scores", "classes", "spike_count", "spikes", "v", "psc"):
            assert np.array_equal(getattr(batch, k)[..., b:b + 1, :]
                                  if getattr(batch, k).ndim == 3 else
                                  getattr(batch, k)[..., b:b + 1],
                                  getattr(alone, k)), (b, k)
    assert np.array_equal(batch.scores[:, 0], batch.scores[:, 1])


def test_run_without_record_has_no_traces_and_same_results():
    rng = np.random.default_rng(3)
    net = random_net(rng)
    images = rng.integers(0, 17, (3, net.inputs))
    a = model.run(images, net, 12, mode=c.MODE_RATE)
    b = model.run(images, net, 12, mode=c.MODE_RATE, record=True)
    assert a.spikes is None and a.v is None and a.psc is None
    assert np.array_equal(a.scores, b.scores)
    assert np.array_equal(a.classes, b.classes)
    assert np.array_equal(a.spike_count, b.spike_count)


def test_run_rate_mode_per_image_seeds():
    rng = np.random.default_rng(4)
    net = random_net(rng)
    images = np.repeat(rng.integers(0, 17, (1, net.inputs)), 3, axis=0)
    seeds = np.array([1, 0x12345678, c.LFSR_SEED_DEFAULT])
    batch = model.run(images, net, 40, mode=c.MODE_RATE, seeds=seeds, record=True)
    for b, seed in enumerate(seeds):
        alone = model.run(images[b:b + 1], net, 40, mode=c.MODE_RATE, seeds=int(seed),
                          record=True)
        assert np.array_equal(batch.scores[:, b:b + 1], alone.scores)
        assert np.array_equal(batch.spikes[:, b:b + 1], alone.spikes)
    # Same image, different seeds: the spike trains differ (the seeds are really used).
    assert not np.array_equal(batch.spikes[:, 0], batch.spikes[:, 1])
    exp = compose(images, net, 40, c.MODE_RATE, seeds)
    assert np.array_equal(batch.scores, exp["scores"])


def test_run_rate_mode_default_seed_is_network_seed():
    rng = np.random.default_rng(5)
    net = random_net(rng, lfsr_seed=0x13579BDF)
    images = rng.integers(0, 17, (2, net.inputs))
    default = model.run(images, net, 20, mode=c.MODE_RATE, record=True)
    explicit = model.run(images, net, 20, mode=c.MODE_RATE, seeds=0x13579BDF, record=True)
    per_image = model.run(images, net, 20, mode=c.MODE_RATE,
                          seeds=np.array([0x13579BDF] * 2), record=True)
    other = model.run(images, net, 20, mode=c.MODE_RATE, seeds=c.LFSR_SEED_DEFAULT,
                      record=True)
    assert np.array_equal(default.spikes, explicit.spikes)
    assert np.array_equal(default.spikes, per_image.spikes)
    assert not np.array_equal(default.spikes, other.spikes)


def test_run_errors():
    net = make_net([[1, 2, 3], [4, 5, 6]])
    good = np.zeros((2, 3), dtype=np.int64)
    for bad in (np.zeros((2, 4)), np.zeros(3), np.zeros((1, 2, 3)), np.zeros((2, 2))):
        with pytest.raises(ValueError, match="images must have shape"):
            model.run(bad, net, 4)
    for mode in (2, -1, "rate", None):
        with pytest.raises(ValueError, match="unknown encoder mode"):
            model.run(good, net, 4, mode=mode)
    for t in (0, -1):
        with pytest.raises(ValueError, match="timesteps"):
            model.run(good, net, t)
    for seeds in (np.array([1, 2, 3]), np.array([1]), np.array([[1, 2]]), [[1], [2]]):
        with pytest.raises(ValueError, match="seeds"):
            model.run(good, net, 4, mode=c.MODE_RATE, seeds=seeds)
    for seeds in (0, np.array([1, 0]), 1 << 32):
        with pytest.raises(ValueError, match="LFSR seed"):
            model.run(good, net, 4, mode=c.MODE_RATE, seeds=seeds)


# --- extremes on a full-size network -----------------------------------------------------


def extreme_net(rng, leak_shift, psc_shift, ref_steps, rate_bits) -> model.Network:
    n, m, k = 256, 64, 10
    w_in = rng.integers(-128, 128, (n, m))
    w_in[:8] = 127  # neurons driven to +saturation ...
    w_in[8:16] = -128  # ... and to -saturation
    w_shift = rng.integers(c.W_SHIFT_MIN, c.W_SHIFT_MAX + 1, n)
    w_shift[:16] = c.W_SHIFT_MAX
    b_lo, b_hi = c.signed_range(c.B_BITS)
    bias = rng.choice([b_lo, b_hi, 0, -1, 1], n)
    v_th = rng.integers(1, 1 << c.V_TH_BITS, n)
    v_th[:4] = 1
    v_th[4:8] = (1 << c.V_TH_BITS) - 1
    d_lo, d_hi = c.signed_range(c.D_BITS)
    dec = rng.choice([d_lo, d_hi], (k, n))
    dec[0] = d_lo
    dec[1] = d_hi
    # The largest |dec_bias| the image format allows for 256 neurons.
    room = c.SCORE_MAX - n * (1 << (c.D_BITS - 1)) * (c.PSC_ONE - 1)
    dec_bias = rng.choice([-room, room], k)
    return model.Network(w_in, w_shift, bias, v_th, dec, dec_bias, leak_shift, psc_shift,
                         ref_steps, rate_bits, c.LFSR_SEED_DEFAULT)


@pytest.mark.parametrize(("leak_shift", "psc_shift", "ref_steps", "rate_bits"),
                         [(0, 1, 0, 4), (4, 4, 2, 4), (1, 2, 7, 8), (14, 12, 0, 8)])
def test_full_size_extremes_stay_in_range(tmp_path, leak_shift, psc_shift, ref_steps,
                                          rate_bits):
    rng = np.random.default_rng(leak_shift * 100 + psc_shift)
    net = extreme_net(rng, leak_shift, psc_shift, ref_steps, rate_bits)
    # The network is a valid image: these extremes are what the hardware may be given.
    image.save(tmp_path / "img", net, 64, c.MODE_CURRENT, 16, {})
    images = np.array([np.zeros(64, dtype=np.int64), np.full(64, 16)])
    current = model.input_current(images, net)
    assert current.min() == c.I_MIN and current.max() == c.I_MAX  # both extremes are hit
    for mode in (c.MODE_CURRENT, c.MODE_RATE):
        res = model.run(images, net, 64, mode=mode, record=True)
        assert res.v.min() >= 0 and res.v.max() <= c.I_MAX
        assert res.psc.min() >= 0 and res.psc.max() <= c.PSC_ONE - 1
        assert res.scores.min() >= c.SCORE_MIN and res.scores.max() <= c.SCORE_MAX
        # Scores are exact: recompute the last step with Python integers.
        exact = (res.psc[-1].astype(object) @ net.dec.T.astype(object)
                 + net.dec_bias.astype(object))
        assert (res.scores[-1].astype(object) == exact).all()
        assert np.array_equal(res.spike_count, res.spikes.sum(axis=(0, 2)))
        # Even at the largest shifts the loader allows, neurons integrate, spike and move PSC.
        assert res.spikes.any() and res.v.max() > 0
        assert res.psc.max() > 0


# --- pixel validation (added after review) ---------------------------------------------------


@pytest.mark.parametrize(("images", "message"), [
    (np.array([[1.5]]), "integer pixels"),
    (np.array([[-1]]), "pixels must lie in"),
    (np.array([[256]]), "pixels must lie in"),
])
def test_run_rejects_bad_pixels(images, message):
    with pytest.raises(ValueError, match=message):
        model.run(images, make_net([[1]]), 4)
