"""sim/fuzz.py: the corpora are seeded, every kind occurs, and a valid RESET only ever starts a
chunk (where the device is idle, so the gateware answers it as the reference device does)."""

from __future__ import annotations

import pytest

from golden import device
from golden import protocol as p
from sim import fuzz


@pytest.fixture(scope="module")
def info(shipped) -> p.Info:
    net, manifest = shipped
    return device.device_info(net, manifest, lanes=16, clock_hz=1, baud=1)


def test_corpus_is_seeded(info):
    assert fuzz.corpus(3, 50, info) == fuzz.corpus(3, 50, info)
    assert fuzz.corpus(3, 50, info) != fuzz.corpus(4, 50, info)


@pytest.mark.parametrize("seed", range(5))
def test_a_valid_reset_only_starts_a_chunk(info, seed):
    chunks = fuzz.corpus(seed, 200, info)
    parser = device.DeviceParser(info.inputs)
    resets = 0
    for chunk in chunks:
        for at, byte in enumerate(chunk.data):
            request = parser.feed(byte)
            if request and request.cmd == p.Command.RESET and request.status == p.Status.OK:
                resets += 1
                assert at == len(p.encode_frame(p.Command.RESET, 0)) - 1, chunk.kind
                assert not parser.pending()
        if chunk.pause:
            parser.timeout()
        assert not chunk.kind.startswith("reset") or chunk.data[:2] == p.SYNC
    assert resets >= 1
    kinds = {kind for chunk in chunks for kind in chunk.kind.split("+")}
    assert kinds == set(fuzz.KINDS)


def test_expected_answers_resets(info, shipped):
    net, manifest = shipped
    chunks = [fuzz.Chunk(p.encode_frame(p.Command.RESET, 9), False, "reset")]
    ref = device.ReferenceDevice(net, manifest, lanes=16)
    assert fuzz.expected(ref, chunks) == [
        p.encode_frame(p.Command.RESET | p.RESPONSE_FLAG, 9, bytes([p.Status.OK]))]


@pytest.mark.parametrize(("kind", "statuses"), [
    ("sparse", {p.Status.OK}),
    ("bad_sparse", {p.Status.BAD_LENGTH}),
])
def test_sparse_kinds_are_what_they_say(info, shipped, kind, statuses):
    """Each ``sparse`` item is one CLASSIFY_SPARSE the reference serves; each ``bad_sparse``
    one it refuses BAD_LENGTH once complete (LEN itself is plausible)."""
    import numpy as np

    net, manifest = shipped
    rng = np.random.default_rng(7)
    for seq in range(200):
        data, pause = fuzz.make_item(rng, info, kind, seq & 0xFF, 4)
        ref = device.ReferenceDevice(net, manifest, lanes=16)
        replies = p.FrameParser().feed(ref.receive(data) + (ref.idle_timeout() if pause else b""))
        first = replies[0]
        assert (first.cmd, first.seq) == (p.Command.CLASSIFY_SPARSE | 0x80, seq & 0xFF)
        assert first.payload[0] in statuses, data.hex()
        assert len(data) - p.HEADER_BYTES - p.CRC_BYTES >= p.sparse_min_length(info.inputs)
