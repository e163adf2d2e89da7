# amaranth: UnusedElaboratable=no
"""hw/core.py against golden.model in Amaranth's simulator: small networks, every output field."""

import numpy as np
import pytest

from golden import constants as c
from golden import model
from hw.core import MIN_GROUPS, LifCore
from sim.streams import receive, send, simulate


def random_net(rng, neurons=16, inputs=5, classes=3, **params) -> model.Network:
    p = dict(leak_shift=2, psc_shift=2, ref_steps=1, rate_bits=4, lfsr_seed=0xACE1)
    p.update(params)
    return model.Network(
        w_in=rng.integers(-128, 128, (neurons, inputs)),
        w_shift=rng.integers(0, 4, neurons),
        bias=rng.integers(-200, 600, neurons),
        v_th=rng.integers(200, 3000, neurons),
        dec=rng.integers(-128, 128, (classes, neurons)),
        dec_bias=rng.integers(-5000, 5000, classes),
        **p)


def simulate_core(core: LifCore, images, steps, mode, ready_gaps=0.0, idle=0.0, seed=0):
    """Drive images through the core, one result taken before the next image; returns the
    result payloads (dicts), with the stream rules checked on ``i`` and ``o``.

    ``idle`` is the chance of an idle cycle (with junk on the payload) before each pixel,
    ``ready_gaps`` the chance per cycle that ``o.ready`` is low.
    """
    results = []
    budget = 50 * (core.net.inputs * core.groups + core.net.neurons) * (steps + 1)

    async def tb(ctx):
        for b, img in enumerate(images):
            # Only the first pixel's steps and mode count: the later ones carry junk.
            pixels = [{"pixel": int(px), "steps": steps if k == 0 else 0xBEEF,
                       "mode": mode if k == 0 else 1 - mode} for k, px in enumerate(img)]
            await send(ctx, core.i, pixels, idle=idle, seed=[seed, b], junk=idle > 0,
                       deadline=budget)
            results.extend(await receive(ctx, core.o, 1, stall=ready_gaps, seed=[seed, b],
                                         deadline=budget))

    seen = simulate(core, tb)
    assert seen["o"].payloads == results
    assert len(seen["i"].transfers) == sum(len(img) for img in images)
    return results


def check(core, images, steps, mode, **kw):
    got = simulate_core(core, images, steps, mode, **kw)
    ref = model.run(np.asarray(images), core.net, steps, mode)
    assert len(got) == len(images)
    for b, res in enumerate(got):
        assert res["label"] == ref.classes[-1, b], b
        assert res["scores"] == ref.scores[-1, b].tolist(), b
        assert res["spike_count"] == ref.spike_count[b], b
    return got


@pytest.mark.parametrize("mode", [c.MODE_CURRENT, c.MODE_RATE])
@pytest.mark.parametrize(("lanes", "groups", "steps"),
                         [(2, 8, 1), (4, 8, 5), (2, MIN_GROUPS, 7), (3, MIN_GROUPS, 2)])
def test_small_network_equals_golden(mode, lanes, groups, steps):
    # The fewest groups the core accepts is where its pipelines overlap most tightly.
    rng = np.random.default_rng(lanes * 10 + steps)
    net = random_net(rng, neurons=lanes * groups)
    core = LifCore(net, pixel_max=16, lanes=lanes)
    images = rng.integers(0, 17, (3, net.inputs))
    images[0] = 0
    images[1] = 16
    got = check(core, images, steps, mode)
    # The documented formula holds for every image.
    assert [r["cycles"] for r in got] == [core.expected_cycles(px, steps, mode) for px in images]


def test_backpressure_and_ties():
    rng = np.random.default_rng(5)
    zeros = np.zeros((3, 16), dtype=np.int64)
    net = random_net(rng)._replace(dec=zeros, dec_bias=np.array([4, 9, 9]))
    core = LifCore(net, pixel_max=16, lanes=2)
    got = check(core, rng.integers(0, 17, (3, net.inputs)), 3, c.MODE_CURRENT, ready_gaps=0.7,
                idle=0.3)
    assert [r["label"] for r in got] == [1, 1, 1]  # tie between classes 1 and 2: lowest wins


def test_shipped_image_one_digit_each_mode(shipped):
    from golden import data

    net, manifest = shipped
    core = LifCore(net, pixel_max=manifest["pixel_max"], lanes=16)
    digit = data.load_split().x_test[:1]
    for mode in (c.MODE_CURRENT, c.MODE_RATE):
        check(core, digit, 2, mode)


def test_bad_parameters():
    net = random_net(np.random.default_rng(0))
    with pytest.raises(ValueError, match="divide"):
        LifCore(net, pixel_max=16, lanes=3)
    with pytest.raises(ValueError, match=f"need at least {MIN_GROUPS}"):
        LifCore(net, pixel_max=16, lanes=4)  # 16 neurons: 4 groups
    LifCore(random_net(np.random.default_rng(0), neurons=2 * MIN_GROUPS), pixel_max=16,
            lanes=2)
