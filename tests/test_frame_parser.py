# amaranth: UnusedElaboratable=no
"""hw/frame_parser.py against golden.device.DeviceParser and ReferenceDevice's checks, in
Amaranth's simulator, with sim.streams driving ``rx`` and taking ``requests`` and ``resets``."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from golden import device
from golden import protocol as p
from hw.frame_parser import FrameParser, Kind
from sim import fuzz
from sim.streams import send, simulate, sink

TIMEOUT = 40
PIXEL_BITS = 5


@pytest.fixture(scope="module")
def info(shipped) -> p.Info:
    net, manifest = shipped
    return device.device_info(net, manifest, lanes=16, clock_hz=1, baud=1)


def expected_entry(request: device.Request, info: p.Info) -> tuple:
    """What the parser must emit for a request of the reference parser: ``("reset", seq)``
    or ``(kind, cmd, seq, status, steps, mode, pixels)`` with the unused fields ``None``."""
    if request.status != p.Status.OK:
        return (Kind.ERROR, request.cmd, request.seq, request.status, None, None, None)
    if request.cmd == p.Command.RESET:
        return ("reset", request.seq)
    if request.cmd == p.Command.INFO:
        return (Kind.INFO, request.cmd, request.seq, None, None, None, None)
    head = struct.calcsize(p.CLASSIFY_HEADER_FORMAT)
    steps, mode = struct.unpack_from(p.CLASSIFY_HEADER_FORMAT, request.payload)
    pixels = tuple(request.payload[head:])
    mode = info.default_mode if mode == p.MODE_DEFAULT else mode
    status = (p.Status.BAD_PARAMETER if mode not in (0, 1)
              else p.Status.PIXEL_RANGE if max(pixels) > info.pixel_max else None)
    if status is not None:
        return (Kind.ERROR, request.cmd, request.seq, status, None, None, None)
    return (Kind.CLASSIFY, request.cmd, request.seq, None, steps or info.default_steps, mode,
            pixels)


def reference_entries(chunks: list[fuzz.Chunk], info: p.Info) -> list[tuple]:
    parser = device.DeviceParser(info.inputs)
    out = []
    for chunk in chunks:
        requests = [parser.feed(byte) for byte in chunk.data]
        if chunk.pause:
            requests.append(parser.timeout())
        out += [expected_entry(r, info) for r in requests if r]
    return out


class Harness:
    """A FrameParser whose slot writes are recorded and whose slots are freed at once
    (unless ``free_slots`` is false), so it never answers BUSY unless a test wants it."""

    def __init__(self, info: p.Info, *, free_slots: bool = True):
        self.info = info
        self.dut = FrameParser(info, pixel_bits=PIXEL_BITS, idle_timeout_cycles=TIMEOUT)
        self.free_slots = free_slots
        self.memory = {}       # slot memory address -> (index, value), as written
        self.snapshots = {}    # edge of a CLASSIFY request's transfer -> its slot's pixels
        self.flush_edges = []  # edges at which flush was high

    async def slots(self, ctx):
        """Record slot writes and flushes; free each filled slot (pulse every other cycle)."""
        dut, edge, pulse = self.dut, 0, 0
        async for _, _, en, addr, value, used, flush in ctx.tick().sample(
                dut.slot_wr.en, dut.slot_wr.addr, dut.slot_wr.data, dut.slots_used, dut.flush):
            if en:
                self.memory[addr] = (value["index"], value["value"])
            if flush:
                self.flush_edges.append(edge)
            edge += 1
            pulse = int(self.free_slots and used > 0 and not pulse)
            ctx.set(dut.slot_freed, pulse)

    def expand(self, slot: int) -> list[int]:
        """The M pixels slot ``slot`` holds: its entries up to the one of value 0 (or M of
        them), each a nonzero pixel, in increasing index order."""
        inputs, base = self.info.inputs, slot << self.dut.index_bits
        pixels, last = [0] * inputs, -1
        for e in range(inputs):
            index, value = self.memory[base + e]
            if value == 0:
                break
            assert last < index < inputs, f"entry {e} of slot {slot}: index {index}"
            pixels[index], last = value, index
        return pixels

    def entries(self, seen) -> list[tuple]:
        """The requests and resets seen, merged in order, as :func:`expected_entry` gives them."""
        merged = [(t.cycle, ("reset", t.payload)) for t in seen["resets"].transfers]
        for t in seen["requests"].transfers:
            r = t.payload
            kind = Kind(r["kind"])
            if kind == Kind.CLASSIFY:
                entry = (kind, r["cmd"], r["seq"], None, r["steps"], r["mode"],
                         tuple(self.snapshots[t.cycle]))
            else:
                status = r["status"] if kind == Kind.ERROR else None
                entry = (kind, r["cmd"], r["seq"], status, None, None, None)
            merged.append((t.cycle, entry))
        return [entry for _, entry in sorted(merged, key=lambda item: item[0])]

    def run(self, chunks: list[fuzz.Chunk]):
        """Send ``chunks`` (idle after each, for the timeout if it asks for a pause)."""
        dut = self.dut

        async def feeder(ctx):
            for chunk in chunks:
                await send(ctx, dut.rx, chunk.data)
                await ctx.tick().repeat(TIMEOUT + 2 if chunk.pause else 4)

        async def requests(ctx):
            # Snapshot the slot as each CLASSIFY entry is taken (later frames reuse it).
            edge = 0
            async for _, _, valid, ready, payload in ctx.tick().sample(
                    dut.requests.valid, dut.requests.ready, dut.requests.payload):
                if valid and ready and payload.kind == Kind.CLASSIFY:
                    self.snapshots[edge] = self.expand(int(payload.slot))
                edge += 1

        async def take_requests(ctx):
            await sink(ctx, dut.requests)

        async def take_resets(ctx):
            await sink(ctx, dut.resets)

        return simulate(dut, feeder, background=[self.slots, requests, take_requests,
                                                 take_resets])


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz_corpus_gives_the_reference_requests(info, seed):
    chunks = fuzz.corpus(seed, 120, info)
    harness = Harness(info)
    seen = harness.run(chunks)
    want = reference_entries(chunks, info)
    assert harness.entries(seen) == want
    kinds = {entry[0] for entry in want}
    assert kinds == {Kind.ERROR, Kind.INFO, Kind.CLASSIFY, "reset"}
    assert len(harness.flush_edges) == sum(entry[0] == "reset" for entry in want)


def classify(info: p.Info, seq: int, pixels=None) -> bytes:
    pixels = np.arange(info.inputs) % (info.pixel_max + 1) if pixels is None else pixels
    return p.encode_frame(p.Command.CLASSIFY, seq, p.pack_classify(pixels, 3, 1))


def test_busy_is_decided_at_the_header(info):
    """With every slot filled (none freed), the next CLASSIFY is consumed and refused BUSY."""
    frames = [classify(info, k) for k in range(p.IMAGE_SLOTS + 1)]
    harness = Harness(info, free_slots=False)
    seen = harness.run([fuzz.Chunk(b"".join(frames), False, "flood")])
    statuses = [(t.payload["kind"], t.payload["status"]) for t in seen["requests"].transfers]
    assert statuses[:p.IMAGE_SLOTS] == [(Kind.CLASSIFY, 0)] * p.IMAGE_SLOTS
    assert statuses[-1] == (Kind.ERROR, p.Status.BUSY)


def test_busy_then_a_freed_slot_is_used_again(info):
    """A slot freed after a CLASSIFY's LEN does not help it (BUSY is decided at the header);
    the next CLASSIFY gets that slot."""
    harness = Harness(info, free_slots=False)
    dut = harness.dut
    late = classify(info, 9, np.full(info.inputs, 1))
    header_end = p.HEADER_BYTES  # the byte after LEN

    async def feeder(ctx):
        await send(ctx, dut.rx, b"".join(classify(info, k) for k in range(p.IMAGE_SLOTS)))
        # Third frame: header while full, then free one slot mid-payload.
        await send(ctx, dut.rx, late[:header_end])
        ctx.set(dut.slot_freed, 1)
        await ctx.tick()
        ctx.set(dut.slot_freed, 0)
        await send(ctx, dut.rx, late[header_end:])
        await send(ctx, dut.rx, classify(info, 10, np.full(info.inputs, 2)))
        await ctx.tick().repeat(5)

    async def take(ctx):
        await sink(ctx, dut.requests)

    async def take_resets(ctx):
        await sink(ctx, dut.resets)

    seen = simulate(dut, feeder, background=[take, take_resets])
    got = [(t.payload["seq"], t.payload["kind"], t.payload["status"], t.payload["slot"])
           for t in seen["requests"].transfers]
    assert got == [(0, Kind.CLASSIFY, 0, 0), (1, Kind.CLASSIFY, 0, 1),
                   (9, Kind.ERROR, p.Status.BUSY, 0), (10, Kind.CLASSIFY, 0, 0)]


def test_a_frame_completed_while_requests_is_held_is_dropped(info):
    """``requests`` holds one entry until it is taken; a frame completed meanwhile is lost."""
    harness = Harness(info)
    dut = harness.dut
    frames = [p.encode_frame(p.Command.INFO, k) for k in range(3)]

    async def feeder(ctx):
        ctx.set(dut.requests.ready, 0)
        await send(ctx, dut.rx, b"".join(frames[:2]))
        await ctx.tick().repeat(3)
        ctx.set(dut.requests.ready, 1)
        await ctx.tick()
        ctx.set(dut.requests.ready, 1)
        await send(ctx, dut.rx, frames[2])
        await ctx.tick().repeat(3)

    seen = simulate(dut, feeder)
    assert [t.payload["seq"] for t in seen["requests"].transfers] == [0, 2]


def test_reset_flushes_one_cycle_after_its_last_byte(info):
    """RESET: its SEQ on ``resets``; ``flush`` one cycle after the edge that took its last
    byte; the request held in ``requests`` dropped; ``slots_used`` back to 0. A RESET with a
    bad CRC or a LEN other than 0 does none of that."""
    harness = Harness(info, free_slots=False)
    dut = harness.dut
    reset = p.encode_frame(p.Command.RESET, 7)
    bad_crc = reset[:-1] + bytes([reset[-1] ^ 1])
    bad_len = p.encode_frame(p.Command.RESET, 8, b"\x00")
    seen_state = []

    async def feeder(ctx):
        ctx.set(dut.requests.ready, 0)  # the queue is full: the CLASSIFY stays held
        await send(ctx, dut.rx, classify(info, 1) + bad_crc + bad_len)
        seen_state.append((ctx.get(dut.slots_used), ctx.get(dut.requests.valid)))
        await send(ctx, dut.rx, reset)
        await ctx.tick().repeat(3)
        seen_state.append((ctx.get(dut.slots_used), ctx.get(dut.requests.valid)))

    async def take_resets(ctx):
        await sink(ctx, dut.resets)

    # ``requests`` is not rule-checked here: the flush resets both of its ends at once.
    seen = simulate(dut, feeder, watch={"rx": dut.rx, "resets": dut.resets},
                    background=[harness.slots, take_resets])
    assert seen_state == [(1, 1), (0, 0)]
    assert [t.payload for t in seen["resets"].transfers] == [7]
    last_byte = seen["rx"].cycles[-1]
    assert harness.flush_edges == [last_byte + 1]


@pytest.mark.parametrize("length", [0, 4, p.MAX_PAYLOAD + 1])
def test_a_sparse_len_out_of_bounds_is_refused_at_the_header(info, length):
    """CLASSIFY_SPARSE with LEN below ``sparse_min_length(M)`` (5 here) or above MAX_PAYLOAD:
    BAD_LENGTH at the header, and the INFO frame right behind it is answered."""
    assert p.sparse_min_length(info.inputs) == 5
    data = (p.SYNC + struct.pack(p.HEADER_FORMAT, p.Command.CLASSIFY_SPARSE, 3, length)
            + p.encode_frame(p.Command.INFO, 4))
    chunks = [fuzz.Chunk(data, True, "short")]
    harness = Harness(info)
    want = reference_entries(chunks, info)
    assert want == [(Kind.ERROR, p.Command.CLASSIFY_SPARSE, 3, p.Status.BAD_LENGTH, None, None,
                     None), (Kind.INFO, p.Command.INFO, 4, None, None, None, None)]
    assert harness.entries(harness.run(chunks)) == want
