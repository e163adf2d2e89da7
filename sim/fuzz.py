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

__all__ = ["Chunk", "corpus", "expected", "KINDS", "make_item"]


class Chunk(NamedTuple):
    data: bytes
    #: Pause after the bytes for the idle timeout to fire.
    pause: bool
    #: What the chunk is, for messages.
    kind: str


def sparse_image(rng, info: p.Info) -> np.ndarray:
    """Random pixels with zero runs of every length, from single zeros to the whole image."""
    pixels = rng.integers(1, info.pixel_max + 1, info.inputs)
    for _ in range(int(rng.integers(0, 6))):
        start = int(rng.integers(0, info.inputs))
        length = int(rng.choice([1, 2, 3, int(rng.integers(1, info.inputs + 1))]))
        pixels[start:start + length] = 0
    if rng.random() < 0.1:
        pixels[:] = 0
    return pixels


def _classify(rng, info: p.Info, seq: int, *, max_steps: int, pixels=None, mode=None,
              steps=None, sparse: bool = False) -> bytes:
    if pixels is None:
        pixels = (sparse_image(rng, info) if sparse or rng.random() < 0.3
                  else rng.integers(0, info.pixel_max + 1, info.inputs))
    if mode is None:
        mode = int(rng.choice([0, 1, p.MODE_DEFAULT]))
    if steps is None:
        steps = int(rng.integers(1, max_steps + 1))
    if sparse:
        return p.encode_frame(p.Command.CLASSIFY_SPARSE, seq,
                              p.pack_classify_sparse(pixels, steps, mode))
    return p.encode_frame(p.Command.CLASSIFY, seq, p.pack_classify(pixels, steps, mode))


def _tokens(rng, info: p.Info, pixels) -> bytes:
    """A token stream for ``pixels``: the encoder's, or runs cut into random shorter tokens
    (including empty ones), which a device must decode alike."""
    if rng.random() < 0.5:
        return p.sparse_tokens(pixels)
    out, pos = bytearray(), 0
    while pos < len(pixels):
        zeros = 0
        while pos + zeros < len(pixels) and pixels[pos + zeros] == 0 and zeros < 255:
            zeros += 1
        zeros = int(rng.integers(0, zeros + 1))
        count = int(rng.integers(0, min(255, len(pixels) - pos - zeros) + 1))
        out += bytes([zeros, count]) + bytes(int(x) for x in pixels[pos + zeros:pos + zeros
                                                                     + count])
        pos += zeros + count
    return bytes(out)


def _bad_sparse(rng, info: p.Info, seq: int, max_steps: int) -> bytes:
    """CLASSIFY_SPARSE whose tokens describe too many or too few pixels, run past M, or end
    inside a token: BAD_LENGTH once the frame is complete (its LEN is at least the minimum;
    a LEN below it is the ``wrong_length`` kind's)."""
    m = info.inputs
    head = struct.pack(p.CLASSIFY_HEADER_FORMAT, int(rng.integers(1, max_steps + 1)),
                         int(rng.choice([0, 1, p.MODE_DEFAULT])))
    tokens = _tokens(rng, info, sparse_image(rng, info))
    how = str(rng.choice(["more", "fewer", "past", "cut_token", "literals_short"]))
    if how == "more":
        extra = int(rng.integers(1, 4))
        tokens += (bytes([extra, 0]) if rng.random() < 0.5
                   else bytes([0, extra]) + bytes(extra * [1]))
    elif how == "fewer":
        tokens = _tokens(rng, info, np.zeros(m - int(rng.integers(1, min(m, 4) + 1)), int))
    elif how == "past":
        # A zero run that alone passes M, then more tokens.
        tokens = bytes([min(255, m + int(rng.integers(1, 5))), 1, 1]) + tokens
    elif how == "cut_token":
        tokens += bytes([int(rng.integers(0, 4))])  # a zeros byte without its count
    else:
        tokens += bytes([0, 5, 1, 1])  # a literal count longer than what follows
    return p.encode_frame(p.Command.CLASSIFY_SPARSE, seq, head + tokens)


def _noise(rng, n: int) -> bytes:
    """Random bytes with SYNC halves salted in, so that false starts happen."""
    pool = np.array([0xA5, 0x5A, 0x00, 0xFF], dtype=np.uint8)
    raw = rng.integers(0, 256, n, dtype=np.uint8)
    salt = rng.random(n) < 0.3
    raw[salt] = rng.choice(pool, int(salt.sum()))
    return raw.tobytes()


def make_item(rng, info: p.Info, kind: str, seq: int, max_steps: int) -> tuple[bytes, bool]:
    """One malformed or valid item of ``kind`` (a key of :data:`KINDS`), with SEQ ``seq`` and
    at most ``max_steps`` steps if it is a CLASSIFY: its bytes and whether a pause (the idle
    timeout) must follow before the next bytes."""
    if kind == "info":
        return p.encode_frame(p.Command.INFO, seq), False
    if kind == "reset":
        return p.encode_frame(p.Command.RESET, seq), False
    if kind == "classify":
        return _classify(rng, info, seq, max_steps=max_steps), False
    if kind == "sparse":
        if rng.random() < 0.5:
            return _classify(rng, info, seq, max_steps=max_steps, sparse=True), False
        payload = (struct.pack(p.CLASSIFY_HEADER_FORMAT, int(rng.integers(1, max_steps + 1)),
                                 int(rng.choice([0, 1, p.MODE_DEFAULT])))
                   + _tokens(rng, info, sparse_image(rng, info)))
        return p.encode_frame(p.Command.CLASSIFY_SPARSE, seq, payload), False
    if kind == "bad_sparse":
        return _bad_sparse(rng, info, seq, max_steps), False
    if kind == "noise":
        return _noise(rng, int(rng.integers(1, 40))), True
    if kind == "bad_crc":
        short = p.Command.INFO if rng.random() < 0.5 else p.Command.RESET
        frame = bytearray(_classify(rng, info, seq, max_steps=max_steps,
                                    sparse=rng.random() < 0.3)
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
        cmd = int(rng.choice([0x00, 0x05, 0x7F, 0x81, 0x84, 0xFF]))
        payload = rng.integers(0, 256, int(rng.integers(0, 12)), dtype=np.uint8).tobytes()
        return p.encode_frame(cmd, seq, payload), False
    if kind == "wrong_length":
        if rng.random() < 0.5:
            short = p.Command.INFO if rng.random() < 0.5 else p.Command.RESET
            return p.encode_frame(short, seq, b"\x00" * int(rng.integers(1, 4))), True
        if rng.random() < 0.3:
            # CLASSIFY_SPARSE below its shortest LEN, refused at the header: the INFO frame
            # right behind the header is answered (a device that took LEN would swallow it).
            length = int(rng.integers(0, p.sparse_min_length(info.inputs)))
            return (p.SYNC + struct.pack(p.HEADER_FORMAT, p.Command.CLASSIFY_SPARSE, seq, length)
                    + p.encode_frame(p.Command.INFO, seq)), True
        n = info.inputs + int(rng.choice([-2, -1, 1, 5]))
        return _classify(rng, info, seq, max_steps=max_steps,
                         pixels=np.zeros(n, dtype=np.int64)), True
    if kind == "oversized":
        length = int(rng.integers(p.MAX_PAYLOAD + 1, 0x10000))
        cmd = p.Command.CLASSIFY_SPARSE if rng.random() < 0.3 else p.Command.CLASSIFY
        return p.SYNC + struct.pack("<BBH", cmd, seq, length), True
    if kind == "bad_mode":
        return _classify(rng, info, seq, max_steps=max_steps, mode=int(rng.integers(2, 255)),
                         sparse=rng.random() < 0.3), False
    if kind == "pixel_range":
        pixels = rng.integers(0, info.pixel_max + 1, info.inputs)
        pixels[int(rng.integers(0, info.inputs))] = int(rng.integers(info.pixel_max + 1, 256))
        return _classify(rng, info, seq, max_steps=max_steps, pixels=pixels,
                         sparse=rng.random() < 0.3), False
    if kind == "false_start":
        # A5 before a frame's A5 5A: the parser must not lose the real SYNC.
        return _noise(rng, int(rng.integers(0, 4))) + b"\xa5" + p.encode_frame(
            p.Command.INFO, seq), True
    if kind == "cut":
        frame = _classify(rng, info, seq, max_steps=max_steps, sparse=rng.random() < 0.4) \
            if rng.random() < 0.5 else p.encode_frame(p.Command.INFO, seq)
        return frame[:int(rng.integers(1, len(frame)))], True
    raise ValueError(f"unknown fuzz kind {kind!r}")


#: Item kinds and their weights in a corpus.
KINDS = {"info": 2, "classify": 3, "sparse": 3, "noise": 3, "bad_crc": 2, "bad_header": 2,
         "unknown": 2, "wrong_length": 1, "bad_sparse": 2, "oversized": 1, "bad_mode": 1,
         "pixel_range": 1, "cut": 2, "false_start": 1, "reset": 1}


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
        item, pause = make_item(rng, info, kind, seq, max_steps)
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
    for kind in ("info", "classify", "sparse"):
        item, _ = make_item(rng, info, kind, seq, max_steps)
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
