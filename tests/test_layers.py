"""Tests of layered networks, :mod:`golden.layers`: the single-layer networks run exactly as
:mod:`golden.model` runs them, spikes cross layers in the step they are made and recurrent
spikes one step later, the three readouts, and validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from golden import constants as c
from golden import image, layers, model
from golden.layers import Decoder, Layer, LayeredNetwork
from golden.neurons import NeuronParams

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
SHIPPED = ("digits", "digits-seed", "digits-small", "mnist")


def arr(*values) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def lif(n: int, v_th: int = 1000, **kw) -> NeuronParams:
    return NeuronParams(np.full(n, v_th, dtype=np.int64), c.NEURON_LIF, **kw)


def dense(w, neuron: NeuronParams, w_rec=None, shift: int = 0, bias: int = 0) -> Layer:
    w = np.asarray(w, dtype=np.int64)
    n = w.shape[0]
    return Layer(w, np.full(n, shift, dtype=np.int64), np.full(n, bias, dtype=np.int64), neuron,
                 None if w_rec is None else np.asarray(w_rec, dtype=np.int64))


def network(*layer_list: Layer, readout: str = c.READOUT_SPIKES, decoder=None):
    return LayeredNetwork(tuple(layer_list), readout, 4, c.LFSR_SEED_DEFAULT, decoder)


# --- the single-layer network is one instance -----------------------------------------------

@pytest.fixture(scope="module", params=SHIPPED)
def shipped(request):
    net, manifest = image.load(FIRMWARE / request.param)
    rng = np.random.default_rng(3)
    x = rng.integers(0, manifest["pixel_max"] + 1, (48, net.inputs))
    return net, x


@pytest.mark.parametrize("mode", [c.MODE_CURRENT, c.MODE_RATE])
def test_classic_networks_run_exactly_as_golden_model(shipped, mode):
    net, x = shipped
    lnet = layers.from_classic(net)
    want = model.run(x, net, 12, mode, record=True)
    got = layers.run(x, lnet, 12, mode, record=True)
    assert np.array_equal(got.scores, want.scores)
    assert np.array_equal(got.classes, want.classes)
    assert np.array_equal(got.spike_count, want.spike_count)
    assert np.array_equal(got.spikes[0], want.spikes)
    assert np.array_equal(got.v[0], want.v)


def test_classic_per_image_seeds(shipped):
    net, x = shipped
    seeds = np.arange(1, len(x) + 1) * 7919
    want = model.run(x, net, 6, c.MODE_RATE, seeds)
    assert np.array_equal(layers.run(x, layers.from_classic(net), 6, c.MODE_RATE, seeds).scores,
                          want.scores)


def test_classic_round_trip(shipped):
    net, _ = shipped
    lnet = layers.from_classic(net)
    assert layers.is_classic(lnet)
    back = layers.to_classic(lnet)
    for name in net._fields:
        assert np.array_equal(getattr(back, name), getattr(net, name)), name
    layers.validate(lnet, 255 if net.inputs == 784 else 16)


def test_to_classic_refuses_a_layered_network():
    net = network(dense([[1]], lif(1)), dense([[1], [2]], lif(2)))
    assert not layers.is_classic(net)
    with pytest.raises(ValueError, match=r"layers \(1, 2\)"):
        layers.to_classic(net)


# --- timing between layers ------------------------------------------------------------------

def test_a_spike_crosses_every_layer_in_its_step():
    # leak_shift 0: v = I. Pixel 10 * 200 = 2000 >= 1000: layer 0 fires at step 0, and layer
    # 1 (weight 1, shift 11: 2048) and layer 2 fire in the same step; then all are refractory
    first = dense([[200]], lif(1, ref_steps=1))
    second = dense([[1]], lif(1, ref_steps=1), shift=11)
    out = dense([[1], [0]], lif(2, ref_steps=1), shift=11)
    result = layers.run(arr(10)[None], network(first, second, out), 4, record=True)
    for k in range(3):
        assert result.spikes[k][:, 0, 0].tolist() == [True, False, True, False], k
    assert result.scores[:, 0].tolist() == [[1, 0], [1, 0], [2, 0], [2, 0]]
    assert result.layer_spike_count[:, 0].tolist() == [2, 2, 2]
    assert result.spike_count.tolist() == [6]


def test_a_recurrent_spike_arrives_one_step_later():
    # neuron 0 is driven by the pixel and fires at step 0; neuron 1 hears only neuron 0's
    # recurrent weight, so it fires at step 1, then (no input of its own) never again
    w = [[200], [0]]
    w_rec = [[0, 0], [127, 0]]
    hidden = dense(w, lif(2, ref_steps=7), w_rec=w_rec, shift=4)
    out = dense([[1, 0], [0, 1]], lif(2), shift=11)
    result = layers.run(arr(10)[None], network(hidden, out), 4, record=True)
    assert result.spikes[0][:, 0].tolist() == [[True, False], [False, True],
                                                [False, False], [False, False]]
    assert result.scores[-1, 0].tolist() == [1, 1]


def test_recurrent_first_layer_in_constant_current_mode():
    # the constant-current shortcut must not skip the recurrent input of the first layer
    hidden = dense([[200], [0]], lif(2, ref_steps=0), w_rec=[[0, 0], [127, 0]], shift=4)
    out = dense([[1, 0], [0, 1]], lif(2), shift=11)
    got = layers.run(arr(10)[None], network(hidden, out), 5, c.MODE_CURRENT)
    no_rec = layers.run(arr(10)[None], network(hidden._replace(w_rec=None), out), 5)
    assert got.scores[-1, 0, 1] > 0 and no_rec.scores[-1, 0, 1] == 0


def test_layer_current_saturates_and_shifts():
    layer = dense([[3, -2]], lif(1), w_rec=[[5]], shift=-1, bias=1)
    x, prev = arr(4, 1)[None], np.array([[True]])
    # (3*4 - 2*1 + 5 + 1) >> 1 = 8
    assert layers.layer_current(x, prev, layer).tolist() == [[8]]
    big = dense([[127, 127]], lif(1), shift=15)
    assert layers.layer_current(arr(16, 16)[None], None, big).tolist() == [[c.I_MAX]]
    assert layers.layer_current(arr(16, 16)[None], None,
                                big._replace(w=-big.w)).tolist() == [[c.I_MIN]]


# --- readouts -------------------------------------------------------------------------------

def two_layer(readout: str) -> LayeredNetwork:
    rng = np.random.default_rng(11)
    hidden = Layer(rng.integers(-128, 128, (24, 16)), rng.integers(-2, 2, 24),
                   rng.integers(-500, 500, 24), NeuronParams(rng.integers(400, 1200, 24),
                                                             c.NEURON_LIF, 3, 1))
    if readout == c.READOUT_PSC:
        decoder = Decoder(rng.integers(-128, 128, (3, 24)), rng.integers(-1000, 1000, 3), 3)
        return network(hidden, readout=readout, decoder=decoder)
    beta = rng.integers(2000, 4000, 3)
    params = NeuronParams(None, c.NEURON_LEAKY, beta=beta, spiking=False) \
        if readout == c.READOUT_LI else NeuronParams(rng.integers(200, 600, 3), c.NEURON_LEAKY,
                                                     beta=beta, reset=c.RESET_SUBTRACT)
    out = Layer(rng.integers(-128, 128, (3, 24)), np.full(3, 6), np.zeros(3, np.int64), params)
    return network(hidden, out, readout=readout)


def test_psc_readout_is_the_decoder_of_the_last_layers_psc():
    net = two_layer(c.READOUT_PSC)
    x = np.random.default_rng(1).integers(0, 17, (10, 16))
    result = layers.run(x, net, 8, record=True)
    psc = np.zeros((10, 24), np.int64)
    for t in range(8):
        psc = model.psc_step(psc, result.spikes[0][t], 3)
        assert np.array_equal(result.scores[t], psc @ net.decoder.dec.T + net.decoder.dec_bias)


def test_li_readout_scores_are_the_output_membranes():
    net = two_layer(c.READOUT_LI)
    x = np.random.default_rng(2).integers(0, 17, (10, 16))
    result = layers.run(x, net, 8, c.MODE_RATE, record=True)
    assert np.array_equal(result.scores, result.v[1])
    assert not result.spikes[1].any() and result.layer_spike_count[1].sum() == 0
    assert np.ptp(result.scores) > 0


def test_spike_readout_scores_are_output_spike_counts():
    net = two_layer(c.READOUT_SPIKES)
    x = np.random.default_rng(3).integers(0, 17, (10, 16))
    result = layers.run(x, net, 8, record=True)
    assert np.array_equal(result.scores, np.cumsum(result.spikes[1], axis=0))
    assert result.scores[-1].sum() > 0
    assert np.array_equal(result.spike_count, result.layer_spike_count.sum(axis=0))


def test_spike_count_ties_go_to_the_lowest_class():
    # no output neuron can fire: every count is 0, class 0 wins
    out = dense([[0], [0], [0]], lif(3))
    result = layers.run(arr(5)[None], network(out), 3)
    assert result.classes[:, 0].tolist() == [0, 0, 0]


# --- validation -----------------------------------------------------------------------------

def check_invalid(net: LayeredNetwork, fragment: str, pixel_max: int = 16):
    with pytest.raises(ValueError, match=fragment):
        layers.validate(net, pixel_max)


def test_validate_accepts_every_readout():
    for readout in c.READOUTS:
        layers.validate(two_layer(readout), 16)


def test_validate_refuses_bad_structures():
    good = two_layer(c.READOUT_SPIKES)
    hidden, out = good.layers
    check_invalid(good._replace(readout="max"), "readout")
    check_invalid(good._replace(layers=(hidden,) * (c.LAYERS_MAX + 1)), "layers")
    check_invalid(good._replace(layers=(hidden, out._replace(w=out.w[:, :5]))),
                  r"layer 1.w: shape \(3, 5\), expected \(3, 24\)")
    check_invalid(two_layer(c.READOUT_PSC)._replace(decoder=None), "needs a decoder")
    check_invalid(good._replace(decoder=two_layer(c.READOUT_PSC).decoder), "has no decoder")
    li = two_layer(c.READOUT_LI)
    check_invalid(li._replace(readout=c.READOUT_SPIKES), "non-spiking")
    check_invalid(good._replace(readout=c.READOUT_LI), "must be non-spiking")
    check_invalid(good._replace(rate_bits=3), "cannot encode pixel_max 16")


def test_validate_refuses_bad_neurons():
    good = two_layer(c.READOUT_SPIKES)
    hidden, out = good.layers

    def with_neuron(**kw):
        return good._replace(layers=(hidden._replace(neuron=hidden.neuron._replace(**kw)), out))

    check_invalid(with_neuron(model="izhikevich"), "model")
    check_invalid(with_neuron(beta=np.zeros(24, np.int64)), "no beta")
    check_invalid(with_neuron(reset=c.RESET_SUBTRACT), "resets to zero")
    check_invalid(with_neuron(v_th=np.zeros(24, np.int64)), "threshold of 0")
    check_invalid(with_neuron(leak_shift=c.V_BITS - 1), "leak_shift")
    check_invalid(with_neuron(ref_steps=8), "ref_steps")
    check_invalid(with_neuron(adapt_step=1 << c.ADAPT_STEP_BITS), "adapt_step")
    check_invalid(with_neuron(adapt_step=4096, adapt_shift=4), "exceeds the 16-bit")
    check_invalid(with_neuron(adapt_shift=3), "adapt_shift without adapt_step")
    leaky = out.neuron
    bad_beta = leaky._replace(beta=np.full(3, 1 << c.BETA_FRAC, np.int64))
    check_invalid(good._replace(layers=(hidden, out._replace(neuron=bad_beta))), "beta")
    bad_ref = leaky._replace(ref_steps=1)
    check_invalid(good._replace(layers=(hidden, out._replace(neuron=bad_ref))), "no leak_shift")


def test_validate_bounds_the_accumulator():
    # 65,536 inputs of 8-bit weights and 8-bit rate spikes reach 2**31; one fewer does not
    out = dense([[1], [1]], lif(2))
    for inputs, ok in ((1 << 16, False), ((1 << 16) - 1, True)):
        wide = network(dense(np.zeros((1, inputs), np.int64), lif(1)), out)._replace(rate_bits=8)
        if ok:
            layers.validate(wide, 255)
        else:
            check_invalid(wide, "beyond 31 bits", pixel_max=255)


def test_neuron_model_names():
    names = layers.neuron_models(two_layer(c.READOUT_LI))
    assert names == ["lif", "li-leaky"]
    hidden = two_layer(c.READOUT_SPIKES).layers[0]
    alif = hidden._replace(neuron=hidden.neuron._replace(adapt_step=10, adapt_shift=2),
                           w_rec=np.zeros((24, 24), np.int64))
    assert layers.neuron_models(network(alif)) == ["alif+rec"]
