"""Seeded protocol fuzz corpora: valid, malformed and cut-off frames and line noise.

A corpus is a list of :class:`Chunk`: bytes to send, then optionally a pause long enough for
the device's idle timeout. :func:`expected` runs a corpus through
:class:`golden.device.ReferenceDevice`; a device under test must send exactly those bytes back.
The frame engine's simulator test and the virtual board's test share it.

Every chunk holds at most :data:`golden.protocol.MAX_IN_FLIGHT` CLASSIFY requests and at most
:data:`golden.protocol.REPLY_QUEUE` replies, the device's documented capacity: a sender waits for
the answers to a chunk before the next.

A valid RESET (kind ``"reset"``) only ever starts a chunk: the device is idle then, so it
abandons nothing and answers as :class:`golden.device.ReferenceDevice` does (a RESET with work
in flight is tested on its own, in tests/test_frame_engine.py). Malformed RESETs (a wrong LEN,
a bad CRC) may stand anywhere: they abandon nothing.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from golden import device
from golden import protocol as p

__all__ = ["Chunk", "corpus", "expected", "KINDS"]


class Chunk(NamedTuple):
    data: bytes
    #: Pause after the bytes for the idle timeout to fire.
    pause: bool
    #: What the chunk is, for messages.
    kind: str


def _classify(rng, info: p.Info, seq: int, *, max_steps: int, pixels=None, mode=None,
              steps=None) -> bytes:
    if pixels is None:
        pixels = rng.integers(0, info.pixel_max + 1, info.inputs)
    if mode is None:
        mode = int(rng.choice([0, 1, p.MODE_DEFAULT]))
    if steps is None:
        steps = int(rng.integers(1, max_steps + 1))
    return p.encode_frame(p.Command.CLASSIFY, seq, p.pack_classify(pixels, steps, mode))


def _noise(rng, n: int) -> bytes:
    """Random bytes with SYNC halves salted in, so that false starts happen."""
    pool = np.array([0xA5, 0x5A, 0x00, 0xFF], dtype=np.uint8)
    raw = rng.integers(0, 256, n, dtype=np.uint8)
    salt = rng.random(n) < 0.3
    raw[salt] = rng.choice(pool, int(salt.sum()))
    return raw.tobytes()


def _one(rng, info: p.Info, kind: str, seq: int, max_steps: int) -> tuple[bytes, bool]:
    """One malformed or valid item of ``kind``: its bytes and whether a pause must follow."""
    if kind == "info":
        return p.encode_frame(p.Command.INFO, seq), False
    if kind == "reset":
        return p.encode_frame(p.Command.RESET, seq), False
    if kind == "classify":
        return _classify(rng, info, seq, max_steps=max_steps), False
    if kind == "noise":
        return _noise(rng, int(rng.integers(1, 40))), True
    if kind == "bad_crc":
        short = p.Command.INFO if rng.random() < 0.5 else p.Command.RESET
        frame = bytearray(_classify(rng, info, seq, max_steps=max_steps)
                          if rng.random() < 0.5 else p.encode_frame(short, seq))
        at = int(rng.integers(6, len(frame)))  # payload or CRC: the header stays valid
        frame[at] ^= int(rng.integers(1, 256))
        return bytes(frame), False
    if kind == "bad_header":
        frame = bytearray(_classify(rng, info, seq, max_steps=max_steps))
        at = int(rng.integers(2, 6))
        frame[at] ^= int(rng.integers(1, 256))
        # The rest may be taken as a payload of another length: end with a pause.
        return bytes(frame), True
    if kind == "unknown":
        cmd = int(rng.choice([0x00, 0x04, 0x7F, 0x81, 0x82, 0xFF]))
        payload = rng.integers(0, 256, int(rng.integers(0, 12)), dtype=np.uint8).tobytes()
        return p.encode_frame(cmd, seq, payload), False
    if kind == "wrong_length":
        if rng.random() < 0.5:
            short = p.Command.INFO if rng.random() < 0.5 else p.Command.RESET
            return p.encode_frame(short, seq, b"\x00" * int(rng.integers(1, 4))), True
        n = info.inputs + int(rng.choice([-2, -1, 1, 5]))
        return _classify(rng, info, seq, max_steps=max_steps,
                         pixels=np.zeros(n, dtype=np.int64)), True
    if kind == "oversized":
        length = int(rng.integers(p.MAX_PAYLOAD + 1, 0x10000))
        return p.SYNC + struct.pack("<BBH", p.Command.CLASSIFY, seq, length), True
    if kind == "bad_mode":
        return _classify(rng, info, seq, max_steps=max_steps,
                         mode=int(rng.integers(2, 255))), False
    if kind == "pixel_range":
        pixels = rng.integers(0, info.pixel_max + 1, info.inputs)
        pixels[int(rng.integers(0, info.inputs))] = int(rng.integers(info.pixel_max + 1, 256))
        return _classify(rng, info, seq, max_steps=max_steps, pixels=pixels), False
    if kind == "false_start":
        # A5 before a frame's A5 5A: the parser must not lose the real SYNC.
        return _noise(rng, int(rng.integers(0, 4))) + b"\xa5" + p.encode_frame(
            p.Command.INFO, seq), True
    if kind == "cut":
        frame = _classify(rng, info, seq, max_steps=max_steps) if rng.random() < 0.5 \
            else p.encode_frame(p.Command.INFO, seq)
        return frame[:int(rng.integers(1, len(frame)))], True
    raise ValueError(f"unknown fuzz kind {kind!r}")


#: Item kinds and their weights in a corpus.
KINDS = {"info": 2, "classify": 3, "noise": 3, "bad_crc": 2, "bad_header": 2, "unknown": 2,
         "wrong_length": 1, "oversized": 1, "bad_mode": 1, "pixel_range": 1, "cut": 2,
         "false_start": 1, "reset": 1}


def corpus(seed: int, items: int, info: p.Info, *, max_steps: int = 4,
           items_per_chunk: int = 3) -> list[Chunk]:
    """A seeded corpus of ``items`` fuzz items, grouped into chunks, ending with valid frames.

    ``max_steps`` bounds the CLASSIFY steps (the answers come from the golden model, and a
    simulated core takes time per step).
    """
    rng = np.random.default_rng(seed)
    names = list(KINDS)
    weights = np.array([KINDS[k] for k in names], dtype=float)
    chunks: list[Chunk] = []
    data, kinds, seq = b"", [], 0
    for _ in range(items):
        kind = names[rng.choice(len(names), p=weights / weights.sum())]
        if kind == "reset" and kinds:
            # Only an idle device answers RESET as the reference does: start a new chunk.
            chunks.append(Chunk(data, False, "+".join(kinds)))
            data, kinds = b"", []
        item, pause = _one(rng, info, kind, seq, max_steps)
        seq = (seq + 1) & 0xFF
        data += item
        kinds.append(kind)
        # A pause ends the chunk: what follows a cut-off frame must not complete it.
        if pause or len(kinds) == items_per_chunk:
            chunks.append(Chunk(data, pause, "+".join(kinds)))
            data, kinds = b"", []
    if data:
        chunks.append(Chunk(data, True, "+".join(kinds)))
    # The device must still answer valid frames correctly after all that.
    for kind in ("info", "classify", "classify"):
        item, _ = _one(rng, info, kind, seq, max_steps)
        seq = (seq + 1) & 0xFF
        chunks.append(Chunk(item, False, kind))
    return chunks


def expected(device: device.ReferenceDevice, chunks: list[Chunk]) -> list[bytes]:
    """The reference device's answer to each chunk, in order (pauses included)."""
    out = []
    for chunk in chunks:
        reply = device.receive(chunk.data)
        if chunk.pause:
            reply += device.idle_timeout()
        out.append(reply)
    return out
