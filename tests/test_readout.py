# amaranth: UnusedElaboratable=no
"""hw/readout.py against golden.model.readout and argmax (Amaranth simulator): Readout (psc), and
ScoreReadout (li, spikes), whose scores are the values streamed in."""

import numpy as np
import pytest

from golden import constants as c
from golden import model
from hw.readout import VALUE_FORMATS, Readout, ScoreReadout
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


# --- ScoreReadout: the li and spikes readouts -------------------------------------------------

def run_score_readout(classes, kind, images, gaps=0.0, stall=0.0, seed=0):
    """Send every image's values back to back while a consumer takes the results with ``stall``
    (a probability per cycle or a function of the cycle, as :func:`sim.streams.receive`);
    returns ``(label, scores, cycles from the last value to o.valid)`` per image. Checks that
    ``i.ready`` is low whenever a result waits, and the stream rules on ``i`` and ``o``."""
    dut = ScoreReadout(classes, *VALUE_FORMATS[kind])
    trace = []  # (i.ready, o.valid) at every edge

    async def producer(ctx):
        await send(ctx, dut.i, [int(v) for image in images for v in image], idle=gaps,
                   seed=[seed, 0], junk=gaps > 0)

    async def consumer(ctx):
        await receive(ctx, dut.o, len(images), stall=stall, seed=[seed, 1],
                      deadline=100 * len(images) * (classes + 5))

    async def watch(ctx):
        async for _, _, ready, valid in ctx.tick().sample(dut.i.ready, dut.o.valid):
            trace.append((ready, valid))

    seen = simulate(dut, producer, consumer, background=[watch])
    assert not any(ready and valid for ready, valid in trace)
    assert seen["i"].payloads == [int(v) for image in images for v in image]
    valid = [v for _, v in trace]
    last_in = seen["i"].cycles[classes - 1::classes]
    return [(t.payload["label"], t.payload["scores"], valid.index(1, last) - last)
            for t, last in zip(seen["o"].transfers, last_in, strict=True)]


def value_range(kind):
    bits, is_signed = VALUE_FORMATS[kind]
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if is_signed else (0, (1 << bits) - 1)


def test_value_formats():
    # li: the output layer's membranes, Q5.10; spikes: counts of up to 65535 steps.
    assert value_range(c.READOUT_LI) == (c.V_MIN, c.V_MAX) == (-32768, 32767)
    assert value_range(c.READOUT_SPIKES) == (0, 2**c.STEPS_BITS - 1) == (0, 65535)
    assert set(VALUE_FORMATS) | {c.READOUT_PSC} == set(c.READOUTS)


@pytest.mark.parametrize("classes", [2, 10])
@pytest.mark.parametrize("kind", [c.READOUT_LI, c.READOUT_SPIKES])
def test_score_readout_equals_golden(kind, classes):
    # Random values, the extremes of the format, and ties: all equal (class 0 wins) and two
    # maxima (the lower wins), at both ends of the range.
    low, high = value_range(kind)
    rng = np.random.default_rng(classes)
    images = rng.integers(low, high, (8, classes), endpoint=True).tolist()
    images += rng.choice([low, low + 1, 0, high - 1, high], (8, classes)).tolist()
    images += [[v] * classes for v in (low, 0, high)]
    for top, rest in [(high, low), (low + 1, low)]:
        for a, b in [(0, classes - 1), (classes - 2, classes - 1), (0, 1)]:
            image = [rest] * classes
            image[a] = image[b] = top
            images.append(image)
    got = run_score_readout(classes, kind, images, gaps=0.3, stall=0.5, seed=classes)
    scores = np.array(images, dtype=np.int64)
    assert [g[0] for g in got] == model.argmax(scores).tolist()
    assert [g[1] for g in got] == images  # sign- or zero-extended to SCORE_BITS
    assert got[16][0] == got[17][0] == got[18][0] == 0
    assert {g[0] for g in got[19:]} <= {0, classes - 2}


@pytest.mark.parametrize("kind", [c.READOUT_LI, c.READOUT_SPIKES])
def test_score_readout_held_while_o_waits(kind):
    # Consecutive images sent back to back while o.ready stays low for 20 cycles out of every
    # 25: each result is held until taken, the next image's values wait (i.ready low), and none
    # is lost or repeated (run_score_readout checks every value and the stream rules).
    low, high = value_range(kind)
    classes = 10
    rng = np.random.default_rng(7)
    images = rng.integers(low, high, (12, classes), endpoint=True).tolist()
    got = run_score_readout(classes, kind, images, stall=lambda cycle: cycle % 25 < 20)
    assert [g[0] for g in got] == model.argmax(np.array(images)).tolist()
    assert [g[1] for g in got] == images


@pytest.mark.parametrize("classes", [2, 3, 10, 16, 17])
def test_score_readout_latency(classes):
    # From the last value to o.valid: ceil(log2 C) + 1 cycles, as documented, with values one
    # per cycle and o.ready high, and with idle cycles between the values.
    rng = np.random.default_rng(classes)
    low, high = value_range(c.READOUT_LI)
    images = rng.integers(low, high, (5, classes), endpoint=True).tolist()
    latency = ScoreReadout(classes, c.V_BITS, True).latency
    assert latency == (classes - 1).bit_length() + 1
    for gaps in (0.0, 0.4):
        got = run_score_readout(classes, c.READOUT_LI, images, gaps=gaps, seed=classes)
        assert [g[1] for g in got] == images
        assert {g[2] for g in got} == {latency}


def test_score_readout_rejects():
    with pytest.raises(ValueError, match="at least 2 classes"):
        ScoreReadout(1, 16, True)
    with pytest.raises(ValueError, match="1 .. 31 bit unsigned"):
        ScoreReadout(10, c.SCORE_BITS, False)
    ScoreReadout(10, c.SCORE_BITS, True)
    with pytest.raises(ValueError):
        ScoreReadout(10, 0, True)
