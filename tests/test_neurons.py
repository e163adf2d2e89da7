"""Tests of the neuron models, :mod:`golden.neurons`: known answers worked by hand, and random
states against a scalar reference written from the equations of docs/ARITHMETIC.md."""

from __future__ import annotations

import numpy as np
import pytest

from golden import constants as c
from golden import neurons
from golden.neurons import NeuronParams, NeuronState


def run_one(params: NeuronParams, currents) -> tuple[list[int], list[int], list[int]]:
    """Drive one neuron with ``currents``; returns its spikes, membranes and adaptations."""
    state = neurons.initial_state(1, 1)
    spikes, vs, adapts = [], [], []
    for current in currents:
        s, state = neurons.step(np.array([[current]]), state, params)
        spikes.append(int(s[0, 0]))
        vs.append(int(state.v[0, 0]))
        adapts.append(int(state.a[0, 0]))
    return spikes, vs, adapts


def arr(*values) -> np.ndarray:
    return np.array(values, dtype=np.int64)


# --- known answers --------------------------------------------------------------------------

def test_lif_known_answer():
    # v += (2048 - v) >> 2: 512, 896, 1184 >= 1000 spikes, reset; refractory 1 step; 512 ...
    p = NeuronParams(arr(1000), c.NEURON_LIF, leak_shift=2, ref_steps=1)
    spikes, vs, _ = run_one(p, [2048] * 6)
    assert spikes == [0, 0, 1, 0, 0, 0]
    assert vs == [512, 896, 0, 0, 512, 896]


def test_lif_fires_at_equal_threshold():
    p = NeuronParams(arr(512), c.NEURON_LIF, leak_shift=2)
    assert run_one(p, [2048])[0] == [1]  # v = 512 >= 512


def test_leaky_subtract_known_answer():
    # beta 0.5: u = v/2 + 600: 600, 900, 1050 > 1000 spikes; next step subtracts 1000:
    # 525 + 600 - 1000 = 125; then 62 + 600 = 662
    p = NeuronParams(arr(1000), c.NEURON_LEAKY, beta=arr(2048), reset=c.RESET_SUBTRACT)
    spikes, vs, _ = run_one(p, [600] * 5)
    assert spikes == [0, 0, 1, 0, 0]
    assert vs == [600, 900, 1050, 125, 662]


def test_leaky_zero_known_answer():
    # the step after a spike holds v at 0 whatever the input (snnTorch's zero reset)
    p = NeuronParams(arr(1000), c.NEURON_LEAKY, beta=arr(2048), reset=c.RESET_ZERO)
    spikes, vs, _ = run_one(p, [600] * 5)
    assert spikes == [0, 0, 1, 0, 0]
    assert vs == [600, 900, 1050, 0, 600]


def test_leaky_spike_test_is_strict():
    p = NeuronParams(arr(600), c.NEURON_LEAKY, beta=arr(0), reset=c.RESET_ZERO)
    assert run_one(p, [600, 601])[0] == [0, 1]


def test_leaky_floor_of_negative_membrane():
    # (4000 * -1) >> 12 = floor(-0.977) = -1: a membrane of -1 never decays to 0
    p = NeuronParams(arr(1000), c.NEURON_LEAKY, beta=arr(4000), reset=c.RESET_ZERO)
    assert run_one(p, [-1, 0, 0, 0])[1] == [-1, -1, -1, -1]


def test_leaky_membrane_saturates():
    p = NeuronParams(arr((1 << c.V_TH_BITS) - 1), c.NEURON_LEAKY,
                     beta=arr(4095), reset=c.RESET_ZERO)
    _, vs, _ = run_one(p, [c.I_MIN] * 3)
    assert vs == [c.I_MIN, c.V_MIN, c.V_MIN]  # -32768 * 4095 / 4096 - 32768 clamps


def test_alif_known_answer():
    # lif, leak_shift 0 (v = I), v_th 1000, I 1100; adapt_step 512, adapt_shift 1:
    # t0 th 1000 spike, a = 512; t1 th 1512, a = 256; t2 th 1256, a = 128; t3 th 1128, a = 64;
    # t4 th 1064 spike, a = 64 - 32 + 512 = 544; t5 a = 272; t6 136; t7 68; t8 th 1068 spike
    p = NeuronParams(arr(1000), c.NEURON_LIF, leak_shift=0, adapt_step=512, adapt_shift=1)
    spikes, _, adapts = run_one(p, [1100] * 9)
    assert spikes == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert adapts == [512, 256, 128, 64, 544, 272, 136, 68, 546]


def test_adaptation_decays_to_exactly_zero():
    # 1 + (-1 >> 1) = 0: the floor rounds the decay step away from zero
    p = NeuronParams(arr(1000), c.NEURON_LIF, leak_shift=0, adapt_step=512, adapt_shift=1)
    assert run_one(p, [1100] + [0] * 10)[2] == [512, 256, 128, 64, 32, 16, 8, 4, 2, 1, 0]


def test_adaptive_leaky_subtracts_the_base_threshold():
    # beta 0; the spike at t0 (1500 > 1000) raises the threshold to 1500; t1: u = 1500 - 1000
    p = NeuronParams(arr(1000), c.NEURON_LEAKY, beta=arr(0), reset=c.RESET_SUBTRACT,
                     adapt_step=500, adapt_shift=3)
    spikes, vs, adapts = run_one(p, [1500, 1500])
    assert spikes == [1, 0] and vs == [1500, 500] and adapts == [500, 500 - 63]


def test_integrator_known_answers():
    lif = NeuronParams(None, c.NEURON_LIF, leak_shift=1, spiking=False)
    spikes, vs, _ = run_one(lif, [1000, 1000, -1000])
    assert spikes == [0, 0, 0] and vs == [500, 750, -125]  # no clamp at 0, no reset
    leaky = NeuronParams(None, c.NEURON_LEAKY, beta=arr(2048), spiking=False)
    assert run_one(leaky, [1000, 1000, -3000])[1] == [1000, 1500, -2250]


# --- random states against a scalar reference ----------------------------------------------

def reference(current: int, v: int, ref: int, a: int, s_prev: bool, p: NeuronParams, k: int):
    """One neuron, one step, in Python integers, straight from the written equations."""
    sat = lambda x: min(max(x, c.V_MIN), c.V_MAX)  # noqa: E731
    if not p.spiking:
        if p.model == c.NEURON_LIF:
            return False, v + ((current - v) >> p.leak_shift), ref, a
        return False, sat(((int(p.beta[k]) * v) >> c.BETA_FRAC) + current), ref, a
    th = int(p.v_th[k]) + a
    if p.model == c.NEURON_LIF:
        if ref == 0:
            v = max(v + ((current - v) >> p.leak_shift), 0)
            s = v >= th
        else:
            s = False
        if s:
            v, ref = 0, p.ref_steps
        else:
            ref = max(ref - 1, 0)
    else:
        u = ((int(p.beta[k]) * v) >> c.BETA_FRAC) + current
        if p.reset == c.RESET_SUBTRACT:
            v = sat(u - (int(p.v_th[k]) if s_prev else 0))
        else:
            v = 0 if s_prev else sat(u)
        s = v > th
    if p.adapt_step:
        a = a + ((-a) >> p.adapt_shift) + (p.adapt_step if s else 0)
    return s, v, ref, a


VARIANTS = {
    "lif": dict(model=c.NEURON_LIF, leak_shift=3, ref_steps=2),
    "alif": dict(model=c.NEURON_LIF, leak_shift=2, ref_steps=1, adapt_step=300,
                 adapt_shift=4),
    "leaky-zero": dict(model=c.NEURON_LEAKY, reset=c.RESET_ZERO),
    "leaky-subtract": dict(model=c.NEURON_LEAKY, reset=c.RESET_SUBTRACT),
    "leaky-subtract-adaptive": dict(model=c.NEURON_LEAKY, reset=c.RESET_SUBTRACT,
                                    adapt_step=2000, adapt_shift=5),
    "li-lif": dict(model=c.NEURON_LIF, leak_shift=2, spiking=False),
    "li-leaky": dict(model=c.NEURON_LEAKY, spiking=False),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_random_states_match_the_scalar_reference(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    n, batch = 40, 6
    kw = dict(VARIANTS[name])
    spiking = kw.get("spiking", True)
    if kw["model"] == c.NEURON_LEAKY:
        kw["beta"] = rng.integers(0, 1 << c.BETA_FRAC, n)
    p = NeuronParams(rng.integers(1, 3000, n) if spiking else None, **kw)
    lif = p.model == c.NEURON_LIF
    a_max = p.adapt_step << p.adapt_shift
    state = NeuronState(
        v=rng.integers(0 if lif and spiking else c.V_MIN, c.V_MAX + 1, (batch, n)),
        ref=rng.integers(0, p.ref_steps + 1, (batch, n)),
        a=rng.integers(0, a_max + 1, (batch, n)),
        s=rng.random((batch, n)) < 0.3)
    for _ in range(20):
        current = rng.integers(c.I_MIN, c.I_MAX + 1, (batch, n))
        spikes, new = neurons.step(current, state, p)
        for b in range(batch):
            for k in range(n):
                want = reference(int(current[b, k]), int(state.v[b, k]), int(state.ref[b, k]),
                                 int(state.a[b, k]), bool(state.s[b, k]), p, k)
                got = (bool(spikes[b, k]), int(new.v[b, k]), int(new.ref[b, k]),
                       int(new.a[b, k]))
                assert got == want, (name, b, k)
        assert new.v.min() >= c.V_MIN and new.v.max() <= c.V_MAX
        assert new.a.min() >= 0 and new.a.max() <= max(a_max, 0)
        state = new


def test_adaptation_stays_within_its_bound():
    # a spike on every step drives a to its fixed point adapt_step << adapt_shift, never above
    a = np.zeros(1, dtype=np.int64)
    for _ in range(2000):
        a = neurons.adapt(a, np.ones(1, bool), 1023, 6)
        assert a[0] <= 1023 << 6
    assert a[0] > (1023 << 6) - (1 << 6)


def test_unknown_model_and_reset_are_refused():
    state = neurons.initial_state(1, 1)
    with pytest.raises(ValueError, match="model"):
        neurons.step(arr(1)[None], state, NeuronParams(arr(1), "izhikevich"))
    with pytest.raises(ValueError, match="reset"):
        neurons.step(arr(1)[None], state, NeuronParams(arr(1), c.NEURON_LEAKY, beta=arr(1),
                                                       reset="halfway"))
