# amaranth: UnusedElaboratable=no
"""hw/frame_dispatcher.py in Amaranth's simulator: the requests golden.device.DeviceParser
finds in a fuzz corpus go in; every one comes out as its reply, in order, and every CLASSIFY
streams its image (the payload's pixels, expanded from the slot's entries of nonzero pixels)
into the core with its steps and mode, under random back-pressure on both outputs
(sim.streams). The slot is filled with garbage before each image's entries, so an image that
reads past its list's end shows."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import memory, wiring

from golden import device
from golden import protocol as p
from hw.core import LifCore
from hw.frame_dispatcher import REPLY_LAYOUT, FrameDispatcher
from hw.frame_parser import IMAGE_SLOTS, Kind
from sim import fuzz
from sim.streams import receive, send, simulate, stream_ports


class Harness(Elaboratable):
    """The dispatcher with a slot memory the testbench fills."""

    def __init__(self, inputs: int, i_layout):
        self.dispatcher = FrameDispatcher(inputs=inputs, i_layout=i_layout)
        self.slots = memory.Memory(shape=self.dispatcher.entry_layout,
                                   depth=IMAGE_SLOTS << self.dispatcher.index_bits, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.dispatcher = self.dispatcher
        m.submodules.slots = self.slots
        wiring.connect(m, self.dispatcher.slot_rd, self.slots.read_port())
        return m


@pytest.fixture(scope="module")
def setup(shipped):
    net, manifest = shipped
    core = LifCore(net, pixel_max=manifest["pixel_max"], lanes=16)
    info = device.device_info(net, manifest, lanes=16, clock_hz=1, baud=1)
    return info, core.i_layout


def requests_of(chunks: list[fuzz.Chunk], info: p.Info) -> list[tuple[dict, list[int]]]:
    """``(request payload, pixels)`` for each request DeviceParser finds; pixels for an OK
    CLASSIFY only, which goes to slots 0, 1, 0, ... as the parser fills them."""
    parser = device.DeviceParser(info.inputs)
    found = []
    for chunk in chunks:
        found += [parser.feed(byte) for byte in chunk.data]
        if chunk.pause:
            found.append(parser.timeout())
    out, slot = [], 0
    head = struct.calcsize(p.CLASSIFY_HEADER_FORMAT)
    for r in filter(None, found):
        entry = {"kind": Kind.ERROR, "cmd": r.cmd, "seq": r.seq, "status": int(r.status),
                 "steps": 0, "mode": 0, "slot": 0}
        pixels = []
        if r.status == p.Status.OK and r.cmd == p.Command.INFO:
            entry["kind"] = Kind.INFO
        elif r.status == p.Status.OK and r.cmd in p.CLASSIFY_COMMANDS:
            steps, mode = struct.unpack_from(p.CLASSIFY_HEADER_FORMAT, r.payload)
            mode = info.default_mode if mode == p.MODE_DEFAULT else mode
            if mode not in (0, 1) or max(r.payload[head:]) > info.pixel_max:
                entry["status"] = int(p.Status.BAD_PARAMETER)  # refused by the parser
            else:
                pixels = list(r.payload[head:])
                entry.update(kind=Kind.CLASSIFY, steps=steps or info.default_steps, mode=mode,
                             slot=slot)
                slot = (slot + 1) % IMAGE_SLOTS
        out.append((entry, pixels))
    return out


def fill_slot(ctx, harness: Harness, slot: int, pixels: list[int], rng):
    """Garbage in every entry of ``slot``, then ``pixels``' entries as the parser writes them:
    each nonzero pixel in order, then value 0 unless all M are nonzero."""
    dut = harness.dispatcher
    layout, size = dut.entry_layout, 1 << dut.index_bits
    base = slot << dut.index_bits
    for e in range(size):
        garbage = {"value": int(rng.integers(0, 32)), "index": int(rng.integers(0, size))}
        ctx.set(harness.slots.data[base + e], layout.const(garbage))
    nonzero = [(j, x) for j, x in enumerate(pixels) if x]
    for e, (j, x) in enumerate(nonzero):
        ctx.set(harness.slots.data[base + e], layout.const({"value": x, "index": j}))
    if len(nonzero) < len(pixels):
        ctx.set(harness.slots.data[base + len(nonzero)], layout.const({"value": 0, "index": 0}))


@pytest.mark.parametrize(("seed", "stall"), [(1, 0.0), (2, 0.6)])
def test_requests_become_replies_and_images(setup, seed, stall):
    info, i_layout = setup
    requests = requests_of(fuzz.corpus(seed, 80, info), info)
    # Both ends of the entry list: an image with every pixel nonzero, and one all zero.
    full = {"kind": Kind.CLASSIFY, "cmd": p.Command.CLASSIFY, "seq": 200, "status": 0,
            "steps": 3, "mode": 0}
    free = 1 - requests[-1][0]["slot"] if requests[-1][0]["kind"] == Kind.CLASSIFY else 0
    requests += [({**full, "slot": free}, [1 + j % 16 for j in range(info.inputs)]),
                 ({**full, "seq": 201, "slot": 1 - free}, [0] * info.inputs)]
    harness = Harness(info.inputs, i_layout)
    dut = harness.dispatcher
    images = [pixels for entry, pixels in requests if entry["kind"] == Kind.CLASSIFY]
    got = {}
    freed = []
    rng = np.random.default_rng(seed)

    async def producer(ctx):
        for k, (entry, pixels) in enumerate(requests):
            if entry["kind"] == Kind.CLASSIFY:  # the slot is free: its last image was sent
                fill_slot(ctx, harness, entry["slot"], pixels, rng)
            await send(ctx, dut.requests, [entry], idle=[k % 3], seed=seed)
        await ctx.tick().repeat(10)

    async def replies(ctx):
        got["replies"] = await receive(ctx, dut.replies, len(requests), stall=stall, seed=seed)

    async def core(ctx):
        got["core"] = await receive(ctx, dut.core_i, info.inputs * len(images), stall=stall,
                                    seed=seed + 1)

    async def pulses(ctx):
        async for _, _, pulse in ctx.tick().sample(dut.slot_freed):
            freed.append(pulse)

    seen = simulate(harness, producer, replies, core, background=[pulses],
                    watch=stream_ports(dut))
    assert got["replies"] == [{name: entry[name] for name in REPLY_LAYOUT.members}
                              for entry, _ in requests]
    beats = got["core"]
    want = [{"pixel": x, "steps": entry["steps"], "mode": entry["mode"]}
            for entry, pixels in requests for x in pixels]
    assert beats == want
    # One slot_freed per image, at the edge its last pixel is taken.
    last_pixels = seen["core_i"].cycles[info.inputs - 1::info.inputs]
    assert [k for k, pulse in enumerate(freed) if pulse] == last_pixels
    assert {entry["kind"] for entry, _ in requests} == set(Kind)


def test_a_request_waits_for_its_reply_to_be_taken(setup):
    """Back-pressure on ``replies`` holds the request: both transfer at the same edge."""
    info, i_layout = setup
    harness = Harness(info.inputs, i_layout)
    dut = harness.dispatcher
    entry = {"kind": Kind.INFO, "cmd": 1, "seq": 5, "status": 0, "steps": 0, "mode": 0,
             "slot": 0}

    async def producer(ctx):
        await send(ctx, dut.requests, [entry])

    async def consumer(ctx):
        await receive(ctx, dut.replies, 1, stall=lambda cycle: cycle < 5)

    seen = simulate(harness, producer, consumer, watch=stream_ports(dut))
    assert seen["requests"].cycles == seen["replies"].cycles == [5]
