# amaranth: UnusedElaboratable=no
"""hw/argmax.py against golden.model.argmax (Amaranth simulator)."""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Shape, signed, unsigned

from golden import constants as c
from golden import model
from hw.argmax import Argmax
from sim.streams import receive, simulate

CLASSES = (2, 3, 10, 16, 17)


def run_argmax(classes, vectors, shape=None, idle=0.0, stall=0.0, seed=0):
    """Start the argmax on each score vector in turn and take its result; returns ``(label,
    scores, cycles from start to o.valid)`` per vector. ``idle``: chance of one more idle cycle
    before each start, random scores on the inputs meanwhile (the tree follows them all the
    time); ``stall``: chance per cycle that ``o.ready`` is low. The stream rules are checked on
    ``o``."""
    dut = Argmax(classes, shape)
    width, is_signed = dut.score_shape.width, dut.score_shape.signed
    low = -(1 << (width - 1)) if is_signed else 0
    trace = []  # (start, o.valid) at every edge

    async def producer(ctx):
        rng = np.random.default_rng(seed)
        for b, scores in enumerate(vectors):
            while rng.random() < idle:
                ctx.set(dut.scores, [int(v) for v in rng.integers(low, low + (1 << width),
                                                                   classes)])
                await ctx.tick()
            ctx.set(dut.scores, [int(v) for v in scores])
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await receive(ctx, dut.o, 1, stall=stall, seed=[seed, b], deadline=100)

    async def watch(ctx):
        async for _, _, start, valid in ctx.tick().sample(dut.start, dut.o.valid):
            trace.append((start, valid))

    seen = simulate(dut, producer, background=[watch])
    starts = [e for e, (start, _) in enumerate(trace) if start]
    valid = [v for _, v in trace]
    waits = [valid.index(1, s) - s for s in starts]
    return [(t.payload["label"], t.payload["scores"], w)
            for t, w in zip(seen["o"].transfers, waits, strict=True)]


def check(classes, vectors, shape=None, **kwargs):
    """The results equal golden's, the scores pass through and o.valid comes after ``levels``."""
    vectors = np.asarray(vectors, dtype=np.int64)
    got = run_argmax(classes, vectors, shape, **kwargs)
    assert [g[0] for g in got] == model.argmax(vectors).tolist()
    assert [g[1] for g in got] == vectors.tolist()
    assert {g[2] for g in got} == {(classes - 1).bit_length()} == {Argmax(classes).levels}


@pytest.mark.parametrize("classes", CLASSES)
def test_ties_everywhere(classes):
    # Every pair of classes tied at the maximum, each at the top, the bottom and in the middle
    # of the range; then all equal; then small random scores, which tie at every node.
    vectors = []
    for high, low in [(c.SCORE_MAX, c.SCORE_MIN), (c.SCORE_MIN + 1, c.SCORE_MIN), (0, -1)]:
        for a, b in itertools.combinations(range(classes), 2):
            v = [low] * classes
            v[a] = v[b] = high
            vectors.append(v)
        vectors.append([high] * classes)
        vectors.append([low] * classes)
    rng = np.random.default_rng(classes)
    vectors += rng.integers(0, 3, (40, classes)).tolist()
    check(classes, vectors)


@pytest.mark.parametrize("classes", CLASSES)
def test_random_and_extremes(classes):
    rng = np.random.default_rng(100 + classes)
    edges = [c.SCORE_MIN, c.SCORE_MIN + 1, -1, 0, 1, c.SCORE_MAX - 1, c.SCORE_MAX]
    vectors = rng.integers(c.SCORE_MIN, c.SCORE_MAX, (30, classes), endpoint=True).tolist()
    vectors += rng.choice(edges, (30, classes)).tolist()
    # The maximum alone in each class, against the minimum everywhere else (the widest compare).
    for k in range(classes):
        v = [c.SCORE_MIN] * classes
        v[k] = c.SCORE_MAX
        vectors.append(v)
    check(classes, vectors, idle=0.3, stall=0.5, seed=classes)


@pytest.mark.parametrize("shape", [signed(c.V_BITS), unsigned(c.STEPS_BITS), unsigned(1),
                                   signed(2)], ids=str)
@pytest.mark.parametrize("classes", [2, 10, 17])
def test_other_score_shapes(classes, shape):
    # Narrower scores, signed and unsigned (the li and spikes readouts use their values' own
    # shapes): extremes and ties, compared as numbers of that shape.
    shape = Shape.cast(shape)
    low = -(1 << (shape.width - 1)) if shape.signed else 0
    high = low + (1 << shape.width) - 1
    rng = np.random.default_rng(classes * 7 + shape.width)
    vectors = rng.integers(low, high, (30, classes), endpoint=True).tolist()
    vectors += rng.choice([low, low + 1, high - 1, high], (30, classes)).tolist()
    vectors += [[high] * classes, [low] * classes]
    check(classes, vectors, shape, idle=0.2, stall=0.3, seed=classes)


def test_result_held_until_taken():
    # o.ready mostly low: o.valid and the payload stay until taken (the monitor fails the test
    # on any change).
    vectors = [[5, 9, 9, 2], [-3, -3, -4, -3], [0, 1, 2, 3]]
    got = run_argmax(4, vectors, stall=0.9, seed=3)
    assert [g[0] for g in got] == [1, 0, 3]


def test_interface():
    dut = Argmax(10)
    assert dut.levels == 4 and dut.label_shape == unsigned(4)
    assert dut.score_shape == signed(c.SCORE_BITS)
    assert Argmax(2).levels == 1 and Argmax(17).levels == 5
    with pytest.raises(ValueError, match="at least 2 classes"):
        Argmax(1)
