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
