# amaranth: UnusedElaboratable=no
"""hw/neuron_stage.py against golden.neurons.step: layers of different neuron models in one
stage, over several steps from rest, back-to-back groups, the write-back, and the readout's
peek at the final state."""

import re

import numpy as np
import pytest
from amaranth.back import rtlil

from golden import constants as c
from golden import model, neurons
from golden.neurons import NeuronParams
from hw.geometry import LUT_RAM_GROUPS, STATE_STAGES
from hw.neuron import LaneConfig
from hw.neuron_stage import NeuronStage, readout_field
from sim.streams import simulate

P, G = 4, 3  # lanes, groups per layer


def layer_params(rng, kind: str, n: int) -> NeuronParams:
    spiking = not kind.startswith("li-")
    leaky = "leaky" in kind
    return NeuronParams(
        rng.integers(200, 1500, n) if spiking else None,
        c.NEURON_LEAKY if leaky else c.NEURON_LIF,
        leak_shift=0 if leaky else 2, ref_steps=1 if spiking and not leaky else 0,
        beta=rng.integers(1500, 4000, n) if leaky else None,
        reset=c.RESET_SUBTRACT if "subtract" in kind else c.RESET_ZERO,
        adapt_step=300 if "adaptive" in kind else 0,
        adapt_shift=2 if "adaptive" in kind else 0, spiking=spiking)


STAGES = {
    "lif-psc": (("lif", "lif-adaptive"), c.READOUT_PSC),
    "lif-leaky-psc": (("lif-adaptive", "leaky-subtract"), c.READOUT_PSC),
    "leaky-li": (("leaky-zero", "li-leaky"), c.READOUT_LI),
    "lif-li-lif": (("lif", "li-lif"), c.READOUT_LI),
    "leaky-spikes": (("leaky-subtract-adaptive", "lif"), c.READOUT_SPIKES),
}


def make_stage(name, rng, G=G, state_stages=0):
    """The stage of case ``name`` with ``G`` groups a layer, and its layers' parameters."""
    kinds, readout = STAGES[name]
    params = [layer_params(rng, kind, P * G) for kind in kinds]
    psc = 3 if readout == c.READOUT_PSC else None
    configs = [LaneConfig.of(p, psc) for p in params]

    def words(arrays):
        return [a[g * P:(g + 1) * P].tolist() for a in arrays for g in range(G)]

    zeros = np.zeros(P * G, np.int64)
    stage = NeuronStage(configs=configs, readout=readout,
                        v_th=words([p.v_th if p.spiking else zeros + 1 for p in params]),
                        beta=words([p.beta if p.beta is not None else zeros for p in params]),
                        lanes=P, output_layer=len(params) - 1, state_stages=state_stages)
    return stage, params


def run_stage(name, steps=6, G=G, state_stages=0):
    readout = STAGES[name][1]
    rng = np.random.default_rng(sum(map(ord, name)))
    stage, params = make_stage(name, rng, G, state_stages)
    currents = rng.integers(-400, 2500, (steps, len(params), P * G))
    got_spikes = np.zeros((steps, len(params), P * G), bool)
    peeked = {}

    async def tb(ctx):
        # the stage's outputs have no back-pressure: their consumers are always ready
        ctx.set(stage.o.ready, 1)
        ctx.set(stage.r.ready, 1)
        for t in range(steps):
            for k in range(len(params)):
                for g in range(G):  # this step's currents, one word per cycle
                    ctx.set(stage.cur_in.valid, 1)
                    ctx.set(stage.cur_in.p.addr, k * G + g)
                    ctx.set(stage.cur_in.p.current, currents[t, k, g * P:(g + 1) * P].tolist())
                    await ctx.tick()
                ctx.set(stage.cur_in.valid, 0)
                outs = []
                for cycle in range(G + stage.latency + 1):  # the groups back to back
                    issue = cycle < G
                    ctx.set(stage.i.valid, issue)
                    # between transfers the payload is anything: a misaligned delay shows
                    junk = int(rng.integers(0, len(params) * G))
                    ctx.set(stage.i.p.layer, k if issue else junk // G)
                    ctx.set(stage.i.p.addr, k * G + cycle if issue else junk)
                    ctx.set(stage.i.p.rest, (t == 0) == issue)
                    ctx.set(stage.i.p.peek, 0 if issue else int(rng.integers(0, 2)))
                    if ctx.get(stage.o.valid):
                        outs.append((ctx.get(stage.o.p.addr), ctx.get(stage.o.p.spikes),
                                     ctx.get(stage.o.p.layer)))
                    await ctx.tick()
                assert [a for a, _, _ in outs] == [k * G + g for g in range(G)]
                assert {lay for _, _, lay in outs} == {k}
                for a, word, _ in outs:
                    g = a - k * G
                    got_spikes[t, k, g * P:(g + 1) * P] = [(word >> p) & 1 for p in range(P)]
        order = [(k, g) for k in range(len(params)) for g in range(G)]
        seen = []
        for cycle in range(len(order) + 3):  # peek every group of every layer, back to back
            issue = cycle < len(order)
            junk = int(rng.integers(0, len(params) * G))
            k, g = order[cycle] if issue else divmod(junk, G)
            ctx.set(stage.i.valid, issue)
            ctx.set(stage.i.p.layer, k)
            ctx.set(stage.i.p.addr, k * G + g)
            ctx.set(stage.i.p.peek, 1 if issue else int(rng.integers(0, 2)))
            ctx.set(stage.i.p.rest, int(rng.integers(0, 2)))
            assert not ctx.get(stage.o.valid)
            if ctx.get(stage.r.valid):  # registered: two cycles after its peek
                assert 2 <= cycle < len(order) + 2
                peeked[order[cycle - 2]] = ctx.get(stage.r.p.value)
            seen.append(ctx.get(stage.r.valid))
            await ctx.tick()
        assert seen == [0, 0] + [1] * len(order) + [0]
    simulate(stage, tb)
    return params, readout, currents, got_spikes, peeked


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_equals_golden_neurons(name):
    check_stage(name, G, 0)


@pytest.mark.parametrize("name", ["lif-leaky-psc", "leaky-spikes"])
def test_a_deep_held_stage_equals_golden_neurons(name):
    # 18 groups: the thresholds and leaks are chunked ROMs (GROUP_ROM_CHUNK = 16), and the
    # memories' outputs are held a cycle (a banked engine's state_stages)
    check_stage(name, 9, STATE_STAGES)


def check_stage(name, G, state_stages):
    params, readout, currents, got, peeked = run_stage(name, G=G, state_stages=state_stages)
    steps = len(currents)
    for k, p in enumerate(params):
        state = neurons.initial_state(1, P * G)
        psc = np.zeros((1, P * G), np.int64)
        count = np.zeros((1, P * G), np.int64)
        for t in range(steps):
            spikes, state = neurons.step(currents[t, k][None], state, p)
            psc = model.psc_step(psc, spikes, 3)
            count += spikes
            assert got[t, k].tolist() == spikes[0].tolist(), (name, k, t)
        if k != len(params) - 1:
            count[:] = 0  # the spike readout counts its output layer's spikes only
        final = {"psc": psc, "v": state.v, "count": count}[readout_field(readout)][0]
        assert [v for g in range(G) for v in peeked[k, g]] == final.tolist(), (name, k)
    assert got[:, 0].any() and not got[:, 0].all()  # the cases cover both outcomes


class FakePlatform:
    """What the stage reads of an Amaranth platform: its FPGA family."""

    def __init__(self, family):
        self.family = family


@pytest.mark.parametrize(("family", "groups", "lut_ram"), [
    ("ecp5", 2, True), ("ecp5", LUT_RAM_GROUPS // 2, True),
    ("ecp5", LUT_RAM_GROUPS // 2 + 1, False), ("iCE40", 2, False), (None, 2, False)])
def test_per_group_memories_ask_for_lut_ram_on_the_ecp5_only(family, groups, lut_ram):
    # two layers of `groups` groups: the memories are 2 * groups deep
    stage, _ = make_stage("lif-leaky-psc", np.random.default_rng(1), G=groups)
    platform = FakePlatform(family) if family else None
    text = rtlil.convert(stage, platform=platform, emit_src=False)
    marked = re.findall(r'attribute \\ram_style "distributed"\n\s*memory .* \\(\w+)\n', text)
    assert sorted(marked) == (["cur_mem", "st_mem"] if lut_ram else [])
    assert stage.memory_attrs(platform) == ({"ram_style": "distributed"} if lut_ram else {})
