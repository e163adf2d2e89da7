"""golden/device.py: the reference device's answers, byte by byte, and the golden
comparison."""

import numpy as np
import pytest

from golden import layers
from golden import protocol as p
from golden.data import load_split
from golden.device import ReferenceDevice, agreement


@pytest.fixture(scope="module")
def device(shipped):
    net, manifest = shipped
    return ReferenceDevice(net, manifest)


def responses(device, data: bytes):
    return p.FrameParser().feed(device.receive(data))


def test_info(device):
    (reply,) = responses(device, p.encode_frame(p.Command.INFO, 7))
    assert (reply.cmd, reply.seq, reply.payload[0]) == (p.Command.INFO | 0x80, 7, p.Status.OK)
    info = p.unpack_info(reply.payload)
    assert (info.inputs, info.neurons, info.classes, info.pixel_max) == (64, 256, 10, 16)
    assert "sha256:" + info.image_hash.hex() == device.manifest["hash"]


def test_classify_equals_golden_after_garbage(device):
    x = load_split().x_test[:3]
    stream = b"\x00\xa5garbage\x5a"
    for seq, px in enumerate(x):
        stream += p.encode_frame(p.Command.CLASSIFY, seq, p.pack_classify(px, 32, 1))
    replies = responses(device, stream)
    assert len(replies) == 3
    ref = layers.run(x, device.net, 32, 1)
    for b, reply in enumerate(replies):
        got = p.unpack_classification(reply.payload, 10)
        assert reply.seq == b and got.label == ref.classes[-1, b]
        assert list(got.scores) == ref.scores[-1, b].tolist()
        assert got.spike_count == ref.spike_count[b]


@pytest.mark.parametrize(("frame", "status"), [
    (p.encode_frame(0x33, 1), p.Status.UNKNOWN_COMMAND),
    (p.encode_frame(p.Command.INFO, 1, b"x"), p.Status.BAD_LENGTH),
    (p.encode_frame(p.Command.CLASSIFY, 1, p.pack_classify(np.zeros(63, int))),
     p.Status.BAD_LENGTH),
    (p.encode_frame(p.Command.CLASSIFY, 1, p.pack_classify(np.full(64, 17))),
     p.Status.PIXEL_RANGE),
    (p.encode_frame(p.Command.CLASSIFY, 1, p.pack_classify(np.zeros(64, int), mode=2)),
     p.Status.BAD_PARAMETER),
    (p.SYNC + b"\x01\x01\xff\xff", p.Status.BAD_LENGTH),
])
def test_errors_then_a_valid_frame(device, frame, status):
    replies = responses(device, frame + p.encode_frame(p.Command.INFO, 9))
    assert replies[0].payload == bytes([status])
    assert replies[-1].seq == 9 and replies[-1].payload[0] == p.Status.OK


def test_bad_crc_resynchronises(device):
    good = p.encode_frame(p.Command.INFO, 3)
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    replies = responses(device, bytes(bad) + good)
    assert [r.payload[0] for r in replies] == [p.Status.BAD_CRC, p.Status.OK]


def test_idle_timeout_abandons_a_cut_frame(device):
    frame = p.encode_frame(p.Command.INFO, 5)
    assert device.receive(frame[:5]) == b""
    (reply,) = p.FrameParser().feed(device.idle_timeout())
    assert reply.payload == bytes([p.Status.TIMEOUT])
    assert responses(device, frame)[0].payload[0] == p.Status.OK


def test_idle_timeout_drops_fewer_than_four_bytes_silently(device):
    """docs/PROTOCOL.md, resynchronisation rule 4: no CMD/SEQ known, no reply."""
    frame = p.encode_frame(p.Command.INFO, 5)
    for cut in (1, 2, 3):
        assert device.receive(frame[:cut]) == b""
        assert device.idle_timeout() == b""
    (reply,) = p.FrameParser().feed(device.receive(frame[:4]) + device.idle_timeout())
    assert (reply.cmd, reply.seq, reply.payload) == (
        p.Command.INFO | 0x80, 5, bytes([p.Status.TIMEOUT]))


# --- the device parser's resynchronisation rules (docs/PROTOCOL.md) ---------------------------


def test_a_bad_crc_frame_is_consumed_whole(device):
    """Rule 3: a frame with a plausible header and a bad CRC is consumed whole, so a frame
    hidden in its payload is not answered; the frame after it is."""
    hidden = p.encode_frame(p.Command.INFO, 4)
    bad = bytearray(p.encode_frame(0x33, 3, hidden))
    bad[-1] ^= 0x01
    replies = responses(device, bytes(bad) + p.encode_frame(p.Command.INFO, 5))
    assert [(r.seq, r.payload[0]) for r in replies] == [(3, p.Status.BAD_CRC), (5, p.Status.OK)]


def test_an_unknown_command_is_consumed_whole(device):
    hidden = p.encode_frame(p.Command.INFO, 4)
    replies = responses(device, p.encode_frame(0x33, 3, hidden) + p.encode_frame(p.Command.INFO, 5))
    assert [(r.seq, r.payload[0]) for r in replies] == [
        (3, p.Status.UNKNOWN_COMMAND), (5, p.Status.OK)]


@pytest.mark.parametrize("length", [1, 2, 100, p.MAX_PAYLOAD + 1, 0xFFFF])
def test_a_wrong_length_is_refused_at_the_header(device, length):
    """Rule 2: the frame right behind a header with a wrong LEN is answered."""
    header = p.SYNC + bytes([p.Command.INFO, 3]) + length.to_bytes(2, "little")
    replies = responses(device, header + p.encode_frame(p.Command.INFO, 5))
    assert [(r.seq, r.payload[0]) for r in replies] == [(3, p.Status.BAD_LENGTH), (5, p.Status.OK)]


def test_a5_before_sync_is_not_lost(device):
    replies = responses(device, b"\xa5\xa5" + p.encode_frame(p.Command.INFO, 5))
    assert [(r.seq, r.payload[0]) for r in replies] == [(5, p.Status.OK)]


def test_the_reference_never_answers_busy(device):
    """The reference buffers without limit; BUSY is the gateware's flow control, so more than
    MAX_IN_FLIGHT requests at once are all answered OK here."""
    frames = b"".join(p.encode_frame(p.Command.CLASSIFY, k, p.pack_classify(np.zeros(64, int)))
                      for k in range(p.MAX_IN_FLIGHT + 3))
    replies = responses(device, frames)
    assert [r.payload[0] for r in replies] == [p.Status.OK] * (p.MAX_IN_FLIGHT + 3)


def test_reset_is_answered_ok_at_once(device):
    frame = p.encode_frame(p.Command.RESET, 9)
    assert device.receive(frame) == p.encode_frame(0x83, 9, b"\x00")
    assert device.receive(frame[:4]) == b""  # cut after SEQ: TIMEOUT, as for any request
    assert device.idle_timeout() == p.encode_frame(0x83, 9, bytes([p.Status.TIMEOUT]))


def test_agreement_compares_label_scores_and_spikes(device):
    x = load_split().x_test[:3]
    ref = layers.run(x, device.net, 8, 0)
    label, scores, spikes = ref.classes[-1].copy(), ref.scores[-1].copy(), ref.spike_count.copy()
    assert agreement(label, scores, spikes, ref).all()
    scores[1, 3] += 1
    spikes[2] += 1
    assert agreement(label, scores, spikes, ref).tolist() == [True, False, False]


# --- CLASSIFY_SPARSE ---------------------------------------------------------------------------


def test_info_reports_the_protocol_version_with_sparse(device):
    (reply,) = responses(device, p.encode_frame(p.Command.INFO, 1))
    assert p.unpack_info(reply.payload).version == p.PROTOCOL_VERSION >= p.SPARSE_VERSION == 2


@pytest.mark.parametrize("mode", [0, 1, p.MODE_DEFAULT])
def test_sparse_is_answered_exactly_as_classify(device, mode):
    """Same payload, CMD 0x84 for 0x82: the image, steps and mode are what count."""
    for seq, x in enumerate(load_split().x_test[:5]):
        dense = responses(device, p.encode_frame(p.Command.CLASSIFY, seq,
                                                 p.pack_classify(x, 8, mode)))
        sparse = responses(device, p.encode_frame(p.Command.CLASSIFY_SPARSE, seq,
                                                  p.pack_classify_sparse(x, 8, mode)))
        assert [(r.cmd, r.seq, r.payload) for r in sparse] == [
            (p.Command.CLASSIFY_SPARSE | 0x80, seq, r.payload) for r in dense]


def sparse_frame(tokens: str, seq: int = 1, steps: int = 4, mode: int = 0) -> bytes:
    return p.encode_frame(p.Command.CLASSIFY_SPARSE, seq,
                          steps.to_bytes(2, "little") + bytes([mode]) + bytes.fromhex(tokens))


@pytest.mark.parametrize(("tokens", "status"), [
    ("3f 00", p.Status.BAD_LENGTH),                # 63 pixels
    ("41 00", p.Status.BAD_LENGTH),                # 65: a zero run past M
    ("40 00 00 01 05", p.Status.BAD_LENGTH),       # a literal past M
    ("3f 00 00", p.Status.BAD_LENGTH),             # 63, then a zeros byte without its count
    ("3e 03 01 02", p.Status.BAD_LENGTH),          # literals cut short
    ("3f 01 11", p.Status.PIXEL_RANGE),            # 64 pixels, the last 17
    ("3f 01 11 01 00", p.Status.BAD_LENGTH),       # the count is checked before the pixels
    ("40 00 00 00", p.Status.OK),                  # an empty token is allowed
    ("20 00 1f 01 10", p.Status.OK),
])
def test_sparse_pixel_count_and_range(device, tokens, status):
    replies = responses(device, sparse_frame(tokens) + p.encode_frame(p.Command.INFO, 9))
    assert replies[0].cmd == p.Command.CLASSIFY_SPARSE | 0x80
    assert replies[0].payload[0] == status
    assert replies[-1].seq == 9 and replies[-1].payload[0] == p.Status.OK


def test_sparse_mode_checked_after_the_count(device):
    (reply,) = responses(device, sparse_frame("40 00", mode=2))
    assert reply.payload == bytes([p.Status.BAD_PARAMETER])
    (reply,) = responses(device, sparse_frame("3f 00", mode=2))
    assert reply.payload == bytes([p.Status.BAD_LENGTH])


@pytest.mark.parametrize("length", [0, 3, 4, p.MAX_PAYLOAD + 1])
def test_sparse_len_below_its_minimum_is_refused_at_the_header(device, length):
    """LEN below 3 + 2 (one token) for M = 64, or above MAX_PAYLOAD: BAD_LENGTH at once, so
    the frame behind it is answered."""
    header = p.SYNC + bytes([p.Command.CLASSIFY_SPARSE, 3]) + length.to_bytes(2, "little")
    replies = responses(device, header + p.encode_frame(p.Command.INFO, 5))
    assert [(r.seq, r.payload[0]) for r in replies] == [(3, p.Status.BAD_LENGTH), (5, p.Status.OK)]
    assert p.sparse_min_length(64) == 5


def test_expected_after_reset_composes_started_answers_reset_and_the_rest(shipped):
    """The rule of RESET under load: the answers started by then, the RESET's answer, then
    the reference's answers to what follows; the others are never sent."""
    net, manifest = shipped
    x = load_split().x_test[:3]
    before = [p.encode_frame(p.Command.INFO, 1),
              p.encode_frame(p.Command.CLASSIFY, 2, p.pack_classify(x[0], 5, 0)),
              p.encode_frame(p.Command.CLASSIFY, 3, p.pack_classify(x[1], 65535, 1))]
    after = [p.encode_frame(p.Command.CLASSIFY, 5, p.pack_classify(x[2], 5, 1))]
    fresh = ReferenceDevice(net, manifest)
    answers = [fresh.receive(frame) for frame in before[:2]]
    later = fresh.receive(after[0])
    reset_ok = p.encode_frame(0x83, 4, bytes([p.Status.OK]))
    for started in (0, 1, 2):
        got = ReferenceDevice(net, manifest).expected_after_reset(before[:2], started, 4, after)
        assert got == b"".join(answers[:started]) + reset_ok + later
    # The 65,535-step image is abandoned, never computed: this returns at once.
    assert ReferenceDevice(net, manifest).expected_after_reset(before, 0, 4) == reset_ok
    with pytest.raises(ValueError, match="started"):
        ReferenceDevice(net, manifest).expected_after_reset(before, 4, 4)
    cut = ReferenceDevice(net, manifest)
    cut.receive(before[0][:3])
    with pytest.raises(ValueError, match="mid-frame"):
        cut.expected_after_reset(before, 0, 4)
