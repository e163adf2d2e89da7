# amaranth: UnusedElaboratable=no
"""hw/readout.py against golden.model.readout and argmax (Amaranth simulator)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import constants as c
from golden import model
from hw.readout import Readout


def run_readout(dec, dec_bias, psc_batches, gaps=0.0, ready_gaps=0.0, seed=0):
    """Feed each PSC vector in order; returns (labels, scores, cycles from last psc to valid)."""
    dut = Readout(dec, dec_bias)
    rng = np.random.default_rng(seed)
    out = []

    async def tb(ctx):
        for psc in psc_batches:
            for value in psc:
                while rng.random() < gaps:
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, int(value))
                await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            waited, held = 0, None
            while True:
                ready = int(rng.random() >= ready_gaps)
                ctx.set(dut.o.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                waited += 1
                assert waited < 10 * (len(dec_bias) + 5), "no result"
                now = (int(payload.label), [int(s) for s in payload.scores])
                if valid:  # a result not taken must stay as it is
                    assert held is None or now == held
                    held = now
                if valid and ready:
                    break
            out.append((int(payload.label), [int(s) for s in payload.scores], waited))
            ctx.set(dut.o.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return out


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
