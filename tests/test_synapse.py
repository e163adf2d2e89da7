# amaranth: UnusedElaboratable=no
"""hw/synapse.py against golden.layers.layer_current: pixel and spike events, recurrent ones,
empty passes, saturation, one memory and banks, and the documented latency."""

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.lib import data

from golden import constants as c
from golden import layers
from golden.layers import Layer
from golden.neurons import NeuronParams
from hw.geometry import SYNAPSE_ADDR_STAGES, SYNAPSE_BANK_STAGES, layer_geometries
from hw.synapse import Synapse
from sim.streams import simulate

P = 4


def event_layout(group_bits=4, index_bits=10, x_bits=9):
    return data.StructLayout({"group": unsigned(group_bits), "j": unsigned(index_bits),
                              "x": unsigned(x_bits), "rec": unsigned(1), "first": unsigned(1),
                              "last": unsigned(1)})


def make_layers(rng, sizes, inputs, recurrent, w_bits=8):
    out, fan_in = [], inputs
    for n, rec in zip(sizes, recurrent, strict=True):
        w_lo, w_hi = c.signed_range(w_bits)
        out.append(Layer(rng.integers(w_lo, w_hi + 1, (n, fan_in)), rng.integers(-6, 4, n),
                         rng.integers(-3000, 3000, n), NeuronParams(np.ones(n, np.int64)),
                         rng.integers(w_lo, w_hi + 1, (n, n)) if rec else None, w_bits))
        fan_in = n
    out[0].bias[0] = c.signed_range(c.B_BITS)[1]  # saturates high
    out[0].bias[1] = c.signed_range(c.B_BITS)[0]  # and low
    return out


def build(rng, sizes, inputs, recurrent, banks=1, w_bits=8, bank_depth=None):
    nets = make_layers(rng, sizes, inputs, recurrent, w_bits)
    geos = layer_geometries(sizes, inputs, recurrent, P)
    words, params = [], []
    for geo, lay in zip(geos, nets, strict=True):
        for matrix in (lay.w, lay.w_rec) if geo.recurrent else (lay.w,):
            padded = np.zeros((geo.groups * P, matrix.shape[1]), np.int64)
            padded[:len(matrix)] = matrix
            words += [padded[g * P:(g + 1) * P, j].tolist() for g in range(geo.groups)
                      for j in range(matrix.shape[1])]
        bias = np.zeros(geo.groups * P, np.int64)
        shift = np.zeros(geo.groups * P, np.int64)
        bias[:lay.neurons], shift[:lay.neurons] = lay.bias, lay.w_shift
        params += [list(zip(bias[g * P:(g + 1) * P].tolist(), shift[g * P:(g + 1) * P].tolist(),
                            strict=True)) for g in range(geo.groups)]
    syn = Synapse(layers=geos, weights=words, params=params, event=event_layout(),
                  lanes=P, w_bits=w_bits, x_bits=9, total_bits=34, banks=banks,
                  bank_depth=bank_depth)
    return syn, geos, nets


def run(syn, runs):
    """``runs``: (layer, passes) with passes a list per group of event dicts; returns the
    currents per run as {global word: [P currents]} and the cycle of each output."""
    outputs = []

    async def tb(ctx):
        ctx.set(syn.o.ready, 1)
        for layer, passes in runs:
            ctx.set(syn.layer, layer)
            ctx.set(syn.start, 1)
            await ctx.tick()
            ctx.set(syn.start, 0)
            cycle = 0
            events = [(g, e, k == 0, k == len(evs) - 1) for g, evs in enumerate(passes)
                      for k, e in enumerate(evs)]
            got = {}
            for cycle in range(len(events) + syn.latency + 2):
                if cycle < len(events):
                    g, e, first, last = events[cycle]
                    ctx.set(syn.i.valid, 1)
                    ctx.set(syn.i.p, {"group": g, "j": e["j"], "x": e["x"], "rec": e["rec"],
                                      "first": first, "last": last})
                else:
                    ctx.set(syn.i.valid, 0)
                if ctx.get(syn.o.valid):
                    got[ctx.get(syn.o.p.addr)] = (list(ctx.get(syn.o.p.current)), cycle)
                await ctx.tick()
            outputs.append((got, events))

    simulate(syn, tb)
    return outputs


def passes_for(rng, geo, x_in, prev, dense=0.5):
    """Events of every pass: the layer's recurrent spikes first, then its inputs."""
    events = [{"j": j, "x": 1, "rec": 1} for j in np.flatnonzero(prev)] if geo.recurrent else []
    events += [{"j": j, "x": int(x_in[j]), "rec": 0} for j in np.flatnonzero(x_in)]
    if not events:
        events = [{"j": 0, "x": 0, "rec": 0}]
    return [list(events) for _ in range(geo.groups)]


@pytest.mark.parametrize("banks", [1, 5])
def test_currents_equal_golden(banks):
    # 70 weight words: one memory, or five banks of 16 (the extra stages of a banked memory)
    rng = np.random.default_rng(banks)
    sizes, recurrent = (10, 7), (False, True)
    syn, geos, nets = build(rng, sizes, 12, recurrent, banks=banks, bank_depth=16)
    assert syn.weight_stages == (SYNAPSE_ADDR_STAGES if banks == 1 else SYNAPSE_BANK_STAGES)
    pixels = rng.integers(0, 256, 12) * (rng.random(12) < 0.6)
    spikes0 = rng.random(10) < 0.4
    prev1 = rng.random(7) < 0.5
    blank = np.zeros(12, np.int64)
    runs = [(0, passes_for(rng, geos[0], pixels, None)),
            (1, passes_for(rng, geos[1], spikes0.astype(int), prev1)),
            (0, passes_for(rng, geos[0], blank, None)),  # empty passes: the bias alone
            (1, passes_for(rng, geos[1], np.zeros(10, int), np.zeros(7, bool)))]
    outputs = run(syn, runs)
    inputs = [(pixels, None), (spikes0, prev1), (blank, None), (np.zeros(10), np.zeros(7))]
    for (layer, _), (got, events), (x, prev) in zip(runs, outputs, inputs, strict=True):
        geo, lay = geos[layer], nets[layer]
        want = layers.layer_current(np.asarray(x, np.int64)[None],
                                    None if prev is None else prev[None], lay)[0]
        padded = np.zeros(geo.groups * P, np.int64)
        padded[:lay.neurons] = want
        assert sorted(got) == [geo.group_base + g for g in range(geo.groups)]
        for g in range(geo.groups):
            assert got[geo.group_base + g][0] == padded[g * P:(g + 1) * P].tolist(), (layer, g)
        # the documented latency: a pass's currents follow its last event by `latency`
        last_cycles = [k for k, (_, _, _, last) in enumerate(events) if last]
        assert [got[geo.group_base + g][1] for g in range(geo.groups)] == [
            k + syn.latency for k in last_cycles]
    assert c.I_MAX in outputs[0][0][0][0] and c.I_MIN in outputs[0][0][0][0]


def test_single_layer_address_needs_no_adder():
    rng = np.random.default_rng(5)
    syn, _, _ = build(rng, (8,), 16, (False,))
    assert syn.single
    syn2, _, _ = build(rng, (8,), 12, (False,))
    assert not syn2.single
