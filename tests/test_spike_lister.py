# amaranth: UnusedElaboratable=no
"""hw/spike_lister.py: the groups that spiked, in order, into their layer's region; the
entries per layer; the image's spike count."""

import numpy as np
from amaranth.hdl import unsigned
from amaranth.lib import data

from hw.spike_lister import SpikeLister
from sim.streams import simulate

P = 8
GROUPS = (5, 3, 2)
BASES = (0, 5, 8)


def result_layout():
    return data.StructLayout({"layer": range(3), "addr": unsigned(4), "spikes": unsigned(P)})


def test_lists_counts_and_spike_count():
    rng = np.random.default_rng(0)
    lister = SpikeLister(group_bases=BASES, groups=GROUPS, lanes=P, result=result_layout())
    # two images; per image each layer's phase twice (two steps), random words, many zeros
    phases = [(img, step, layer, [int(w) * (rng.random() < 0.6) for w in
                                  rng.integers(1, 256, GROUPS[layer])])
              for img in range(2) for step in range(2) for layer in range(3)]
    writes, counts, totals = [], [], []

    async def tb(ctx):
        for _img, step, layer, words in phases:
            if step == 0 and layer == 0:
                ctx.set(lister.clear, 1)
                await ctx.tick()
                ctx.set(lister.clear, 0)
                assert ctx.get(lister.counts) == [0, 0, 0]
            ctx.set(lister.layer, layer)
            ctx.set(lister.begin, 1)
            await ctx.tick()
            ctx.set(lister.begin, 0)
            phase_writes = []
            for _g, word in enumerate(words):
                ctx.set(lister.i.valid, 1)
                ctx.set(lister.i.p.spikes, word)
                if ctx.get(lister.spk_en):
                    phase_writes.append((ctx.get(lister.spk_addr),
                                         ctx.get(lister.spk_data.group),
                                         ctx.get(lister.spk_data.word)))
                await ctx.tick()
                if rng.random() < 0.3:  # gaps between groups are allowed
                    ctx.set(lister.i.valid, 0)
                    await ctx.tick()
            ctx.set(lister.i.valid, 0)
            await ctx.tick()
            writes.append(phase_writes)
            counts.append(ctx.get(lister.counts[layer]))
            await ctx.tick()
            totals.append(ctx.get(lister.spike_count))

    simulate(lister, tb)
    total = 0
    for k, (_img, step, layer, words) in enumerate(phases):
        if step == 0 and layer == 0:
            total = 0
        want = [(BASES[layer] + n, g, w) for n, (g, w) in
                enumerate((g, w) for g, w in enumerate(words) if w)]
        assert writes[k] == want, k
        assert counts[k] == len(want)
        total += sum(bin(w).count("1") for w in words)
        assert totals[k] == total
    assert max(counts) > 1 and min(counts) < max(GROUPS)
