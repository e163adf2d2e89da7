"""golden/protocol.py: CRC, framing, resynchronisation, payloads and link figures, without
the HDL toolchain."""

import subprocess
import sys

import numpy as np
import pytest

from golden import protocol as p


def bitwise_crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE written out bit by bit, independently of amaranth.lib.crc."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def test_crc_check_value_and_definition():
    assert p.crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 7, 70, 300):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert p.crc16(data) == bitwise_crc16(data)


def test_frame_round_trip_in_pieces():
    frame = p.encode_frame(p.Command.CLASSIFY, 200, bytes(range(70)))
    parser = p.FrameParser()
    got = [item for byte in frame for item in parser.feed(bytes([byte]))]
    assert got == [p.Frame(p.Command.CLASSIFY, 200, bytes(range(70)))]



def test_reset_is_a_request_without_payload():
    assert p.request_length(p.Command.RESET, 64) == 0
    assert p.request_length(p.Command.INFO, 64) == 0
    assert p.request_length(p.Command.CLASSIFY, 64) == 67
    assert p.request_length(0x7F, 64) is None


def test_link_rate_of_the_digits():
    rate = p.link_rate(64, 10, 3_000_000)
    assert (rate.request_bytes, rate.answer_bytes) == (75, 58)
    assert rate.images_per_s_pipelined == pytest.approx(300_000 / 75)
    assert rate.images_per_s_serial == pytest.approx(300_000 / 133)


@pytest.mark.parametrize("module", ["golden.protocol", "firmware.driver", "firmware.cli"])
def test_the_host_side_loads_no_hdl(module):
    code = (f"import sys, {module}; bad = sorted(m for m in sys.modules "
            f"if m.split('.')[0] in ('amaranth', 'cocotb', 'hw')); print(bad); "
            f"sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, f"importing {module} loads {done.stdout.strip()}"


# --- CLASSIFY_SPARSE ---------------------------------------------------------------------------


@pytest.mark.parametrize(("pixels", "tokens"), [
    ([0] * 10, "0a 00"),
    ([3, 4, 0, 0, 0, 5], "00 02 03 04 03 01 05"),
    # Zero runs of 1 and 2 after a literal stay literals; a trailing single zero too.
    ([0, 7, 0, 8, 0, 0, 9, 0], "01 07 07 00 08 00 00 09 00"),
    ([0, 7, 0, 0, 0, 9, 0, 0, 0], "01 01 07 03 01 09 03 00"),
])
def test_sparse_tokens_by_hand(pixels, tokens):
    assert p.sparse_tokens(pixels) == bytes.fromhex(tokens)
    assert p.unpack_sparse_pixels(bytes.fromhex(tokens), len(pixels)).tolist() == pixels


def test_sparse_runs_longer_than_a_byte():
    """Zero runs and literal runs above 255 are split into tokens of at most 255."""
    pixels = [0] * 600 + [1] * 300 + [0] * 3
    tokens = p.sparse_tokens(pixels)
    assert tokens == bytes([255, 0, 255, 0, 90, 255]) + bytes(255 * [1]) \
        + bytes([0, 45]) + bytes(45 * [1]) + bytes([3, 0])
    assert p.unpack_sparse_pixels(tokens, 903).tolist() == pixels


def test_sparse_round_trip_and_never_longer_than_needed():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(1, 900))
        x = rng.integers(0, 256, n) * (rng.random(n) < rng.random())
        tokens = p.sparse_tokens(x)
        assert p.unpack_sparse_pixels(tokens, n).tolist() == x.tolist()
        # Never more than a token header per 255 literals (and the first) above the pixels.
        assert len(tokens) <= n + 2 + 2 * (n // 255)
    for n in (64, 255, 510, 784):
        ones = np.ones(n, int)
        assert len(p.sparse_tokens(ones)) == n + 2 + 2 * ((n - 1) // 255)


@pytest.mark.parametrize(("tokens", "inputs"), [
    ("05 00", 6),             # fewer pixels
    ("06 00 00 00", 5),       # a zero run past M
    ("00 03 01 02 03", 2),    # literals past M
    ("02 00 01", 3),          # a zeros byte without its count
    ("00 03 01 02", 3),       # literals cut short
    ("", 1),                  # nothing at all
])
def test_sparse_decoder_refuses_anything_but_m_pixels(tokens, inputs):
    assert p.unpack_sparse_pixels(bytes.fromhex(tokens), inputs) is None


def test_sparse_decoder_takes_any_token_split():
    """Empty tokens and literal zeros are valid; a device decodes any split alike."""
    tokens = bytes.fromhex("00 00 02 00 00 02 00 05 01 00")  # (), 2 zeros, [0, 5], 1 zero
    assert p.unpack_sparse_pixels(tokens, 5).tolist() == [0, 0, 0, 5, 0]


def test_request_lengths():
    assert p.request_lengths(p.Command.CLASSIFY, 64) == range(67, 68)
    assert p.request_lengths(p.Command.CLASSIFY_SPARSE, 64) == range(5, p.MAX_PAYLOAD + 1)
    # 784 = 3 x 255 + 19: three tokens of 255 zeros and one of 19 (8 bytes).
    assert p.request_lengths(p.Command.CLASSIFY_SPARSE, 784) == range(3 + 8, p.MAX_PAYLOAD + 1)
    assert p.request_length(p.Command.CLASSIFY_SPARSE, 64) is None
    assert p.request_lengths(0x7F, 64) is None
    # The shortest payload is the all-zero image's (256 = 255 zeros, then 1 literal zero).
    for m, tokens in ((1, 2), (64, 2), (255, 2), (256, 3), (257, 4), (258, 4), (510, 4),
                      (784, 8)):
        assert len(p.pack_classify_sparse(np.zeros(m, int))) == p.sparse_min_length(m) \
            == 3 + tokens
    rng = np.random.default_rng(1)
    for m in rng.integers(1, 1000, 200):
        image = rng.integers(0, 3, m) * (rng.random(m) < 0.2)
        assert len(p.pack_classify_sparse(image)) >= p.sparse_min_length(m)


def test_classify_request_picks_the_shorter_frame():
    sparse_image, dense_image = np.zeros(64, int), np.arange(64) % 2
    assert p.classify_request(sparse_image)[0] == p.Command.CLASSIFY_SPARSE
    assert p.classify_request(dense_image)[0] == p.Command.CLASSIFY
    assert p.classify_request(np.ones(64, int))[0] == p.Command.CLASSIFY  # a tie: dense
    assert len(p.pack_classify_sparse(np.ones(64, int))) == len(p.pack_classify(
        np.ones(64, int))) + 2
    cmd, payload = p.classify_request(dense_image, 5, 1, encoding="sparse")
    assert (cmd, payload) == (p.Command.CLASSIFY_SPARSE, p.pack_classify_sparse(dense_image, 5, 1))
    assert p.classify_request(sparse_image, encoding="dense")[0] == p.Command.CLASSIFY
    with pytest.raises(ValueError, match="encoding must be one of"):
        p.classify_request(sparse_image, encoding="rle")


def test_link_figures_dense_equal_link_rate_and_sparse_by_hand():
    images = np.zeros((3, 64), int)
    images[1, :10] = 1
    dense = p.link_figures(images, 10, 3_000_000, "dense")
    rate = p.link_rate(64, 10, 3_000_000)
    assert (dense.request_bytes_mean, dense.request_bytes_max) == (75, 75)
    assert dense.images_per_s_pipelined_worst == pytest.approx(rate.images_per_s_pipelined)
    assert dense.images_per_s_serial_mean == pytest.approx(rate.images_per_s_serial)
    sparse = p.link_figures(images, 10, 3_000_000, "sparse")
    sizes = [8 + 3 + 2, 8 + 3 + 12 + 2, 8 + 3 + 2]  # (0, 10, 1 x 10) then (54, 0)
    assert sparse.request_bytes_max == max(sizes) == 25
    assert sparse.request_bytes_mean == pytest.approx(np.mean(sizes))
    assert sparse.images_per_s_serial_mean == pytest.approx(300_000 / (np.mean(sizes) + 58))
    assert sparse.images_per_s_pipelined_mean == pytest.approx(300_000 / 58)  # the answer sets it
    assert sparse.images_per_s_serial_worst == pytest.approx(300_000 / (25 + 58))


def test_resync_parses_the_frames_a_stale_header_buffered():
    """A header whose body was lost buffers the frames behind it; resync finds them."""
    stale = p.encode_frame(p.Command.CLASSIFY | p.RESPONSE_FLAG, 7, bytes(50))[:p.HEADER_BYTES]
    answers = [p.encode_frame(p.Command.RESET | p.RESPONSE_FLAG, s, b"\0") for s in (0, 1)]
    parser = p.FrameParser()
    assert parser.feed(stale + b"".join(answers) + answers[0][:4]) == []
    assert [(f.cmd, f.seq, f.payload) for f in parser.resync()] == [(0x83, 0, b"\0"),
                                                                   (0x83, 1, b"\0")]
    assert bytes(parser.buffer) == answers[0][:4]  # a frame still arriving is kept
    assert parser.feed(answers[0][4:])[0].seq == 0
    assert parser.resync() == [] and not parser.pending()
    parser.feed(p.SYNC[:1])
    assert parser.resync() == [] and parser.buffer == bytearray()


def test_the_idle_timeout_floor_is_a_protocol_constant():
    """A device/transport fact: defined in golden.protocol, which the reference board and the
    driver (an alias) take it from."""
    import firmware.driver
    import sim.refboard

    assert p.IDLE_TIMEOUT_FLOOR_S == 0.05
    assert sim.refboard.IDLE_TIMEOUT_MIN_S == firmware.driver.IDLE_TIMEOUT_FLOOR_S == 0.05
    assert "IDLE_TIMEOUT_FLOOR_S" not in vars(sim.refboard)  # not the driver's import


def test_info_of_both_versions_parses():
    """Version 3's INFO (LEN 60: STATUS and 59 bytes) round-trips; a version-2 device's (LEN
    52) parses with the cycle bound 0 (unknown); any other length is refused."""
    import struct

    info = p.Info(3, bytes(range(32)), 64, 192, 10, 16, 64, 16, 0, 100_000_000, 3_000_000,
                  140, 1117)
    assert p.unpack_info(p.pack_info(info)) == info
    old = bytes([p.Status.OK]) + struct.pack(p.INFO_FORMAT_V2, *info[:11])
    assert len(old) == 1 + 51 and p.unpack_info(old) == info._replace(
        version=3, cycles_base=0, cycles_per_step=0)
    for bad in (old[:-1], p.pack_info(info) + b"\0", bytes([p.Status.BUSY]) + old[1:]):
        with pytest.raises(ValueError, match="not an OK INFO response"):
            p.unpack_info(bad)
