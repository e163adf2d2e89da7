# amaranth: UnusedElaboratable=no
"""hw/readout.py against golden.model.readout and argmax (Amaranth simulator)."""

import numpy as np
import pytest

from golden import constants as c
from golden import model
from hw.readout import Readout
from sim.streams import receive, send, simulate


def run_readout(dec, dec_bias, psc_batches, gaps=0.0, ready_gaps=0.0, seed=0):
    """Feed each PSC vector in order; returns (label, scores, cycles from last psc to the result
    transfer) per vector. ``gaps``: chance of an idle cycle before each value; ``ready_gaps``:
    chance per cycle that ``o.ready`` is low. The stream rules are checked on ``i`` and ``o``."""
    dut = Readout(dec, dec_bias)
    neurons = dut.dec.shape[1]

    async def tb(ctx):
        for b, psc in enumerate(psc_batches):
            await send(ctx, dut.i, [int(v) for v in psc], idle=gaps, seed=[seed, b, 0],
                       junk=gaps > 0)
            await receive(ctx, dut.o, 1, stall=ready_gaps, seed=[seed, b, 1],
                          deadline=10 * (len(dec_bias) + 5))

    seen = simulate(dut, tb)
    last_in = seen["i"].cycles[neurons - 1::neurons]
    return [(t.payload["label"], t.payload["scores"], t.cycle - last)
            for t, last in zip(seen["o"].transfers, last_in, strict=True)]


def golden(dec, dec_bias, psc):
    net = model.Network(np.zeros((dec.shape[1], 1), np.int64), *([np.zeros(dec.shape[1],
                        np.int64)] * 3), dec, dec_bias, 4, 5, 2, 4, 1)
    scores = model.readout(np.asarray(psc, dtype=np.int64), net)
    return model.argmax(scores), scores


@pytest.mark.parametrize(("classes", "neurons"), [(10, 32), (2, 3), (3, 17)])
def test_random_equals_golden(classes, neurons):
    rng = np.random.default_rng(classes * 100 + neurons)
    dec = rng.integers(-128, 128, (classes, neurons))
    dec_bias = rng.integers(-(2**20), 2**20, classes)
    psc = rng.integers(0, c.PSC_ONE, (4, neurons))
    got = run_readout(dec, dec_bias, psc, gaps=0.3, ready_gaps=0.5, seed=classes)
    labels, scores = golden(dec, dec_bias, psc)
    for b, (label, score, _) in enumerate(got):
        assert label == labels[b] and score == scores[b].tolist(), b


def test_extremes_and_timing():
    # Largest magnitudes the formats allow: every product at its extreme, bias at the edge of
    # what the image loader accepts.
    neurons, classes = 64, 4
    dec = np.array([[-128] * neurons, [127] * neurons, [0] * neurons, [-128] * neurons])
    room = c.SCORE_MAX - neurons * 128 * (c.PSC_ONE - 1)
    dec_bias = np.array([-room - 1, room, 0, room])
    psc = np.full((2, neurons), c.PSC_ONE - 1)
    psc[1] = 0
    got = run_readout(dec, dec_bias, psc)
    labels, scores = golden(dec, dec_bias, psc)
    assert [g[0] for g in got] == labels.tolist()
    assert [g[1] for g in got] == scores.tolist()
    assert min(min(g[1]) for g in got) == c.SCORE_MIN
    # From the last PSC transfer to o.valid: ceil(log2 C) + 4 cycles, as documented.
    levels = (classes - 1).bit_length()
    assert {g[2] for g in got} == {levels + 4} == {Readout(dec, dec_bias).latency}


def test_ties_go_to_lowest_class():
    dec = np.zeros((5, 4), dtype=np.int64)
    dec_bias = np.array([3, 7, 7, 1, 7])
    got = run_readout(dec, dec_bias, [[1, 2, 3, 4]])
    assert got[0][0] == 1
    dec_bias = np.array([5, 5, 5, 5, 5])
    assert run_readout(dec, dec_bias, [[0, 0, 0, 0]])[0][0] == 0


@pytest.mark.parametrize("classes", range(2, 12))
def test_argmax_tree_ties(classes):
    # Tiny weights and PSC values make many equal scores: the tree must pick the lowest class
    # among the best, as golden does, for every class count (odd nodes pass through).
    rng = np.random.default_rng(classes)
    neurons = 3
    dec = rng.integers(0, 2, (classes, neurons))
    dec_bias = rng.integers(0, 2, classes)
    psc = rng.integers(0, 3, (12, neurons))
    got = run_readout(dec, dec_bias, psc)
    labels, scores = golden(dec, dec_bias, psc)
    assert [g[0] for g in got] == labels.tolist()
    assert [g[1] for g in got] == scores.tolist()
    assert {g[2] for g in got} == {Readout(dec, dec_bias).latency}
