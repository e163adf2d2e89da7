"""docs/PROTOCOL.md says what the code does: its byte examples are golden.protocol's frames, its
steps table is hw.geometry.max_cycles, its limits and timeouts are the constants they quote."""

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import MNIST_DIR

from golden import protocol as p
from golden.constants import MODE_CURRENT, MODE_RATE
from golden.data import load_split
from golden.device import ReferenceDevice
from hw.geometry import max_cycles

DOC = (Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md").read_text()
#: The document with its lines joined, for phrases a rewrap may break.
FLAT = " ".join(DOC.split())


def code_blocks() -> list[str]:
    """The text of every fenced block (```), in order."""
    blocks, current = [], None
    for line in DOC.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line.strip())
    return blocks


def hex_bytes(block: str) -> bytes:
    """The hex byte pairs that open each line of a code block (annotations after them)."""
    out = bytearray()
    for line in block.splitlines():
        for token in line.split():
            if not re.fullmatch(r"[0-9a-f]{2}", token):
                break
            out.append(int(token, 16))
    return bytes(out)


def block_with(text: str) -> str:
    (block,) = [b for b in code_blocks() if text in b]
    return block


def first_digit() -> np.ndarray:
    return load_split().x_test[0]


def test_info_request_example():
    assert hex_bytes(block_with("SYNC  CMD SEQ LEN   CRC")) == p.encode_frame(p.Command.INFO, 0)
    assert p.crc16(bytes([1, 0, 0, 0])) == 0xF274 and "`0xF274`" in DOC


def test_classify_request_example():
    frame = p.encode_frame(p.Command.CLASSIFY, 1, p.pack_classify(first_digit(), 32, MODE_CURRENT))
    assert hex_bytes(block_with("pixels 0..15")) == frame
    assert frame[-2:] == bytes.fromhex("848e") and "`0x8E84`" in DOC


def test_classify_answer_example(shipped):
    answer = ReferenceDevice(*shipped).receive(
        p.encode_frame(p.Command.CLASSIFY, 1, p.pack_classify(first_digit(), 32, MODE_CURRENT)))
    (frame,) = p.FrameParser().feed(answer)
    result = p.unpack_classification(frame.payload, 10)
    assert len(answer) == 58 and "The response to it is 58 bytes" in DOC
    assert f"`{answer[:6].hex(' ')}`" in DOC
    assert f"label `{result.label:02x}`" in DOC
    spikes = result.spike_count.to_bytes(4, "little").hex(" ")
    assert f"spike count `{spikes}` ({result.spike_count})" in DOC


@pytest.mark.parametrize(("cmd", "seq", "status"), [
    (p.Command.CLASSIFY, 1, p.Status.PIXEL_RANGE),
    (p.Command.RESET, 7, p.Status.UNKNOWN_COMMAND),
])
def test_error_answer_examples(cmd, seq, status):
    assert f"`{p.encode_frame(cmd | 0x80, seq, bytes([status])).hex(' ')}`" in DOC


def test_reset_example():
    block = block_with("request:  SYNC CMD SEQ LEN CRC")
    request, answer = (hex_bytes(line) for line in block.splitlines())
    assert request == p.encode_frame(p.Command.RESET, 7)
    assert answer == p.encode_frame(p.Command.RESET | 0x80, 7, bytes([p.Status.OK]))
    assert p.crc16(request[2:6]) == 0x9A8C and "`0x9A8C`" in DOC
    assert p.crc16(answer[2:7]) == 0xBB13 and "`0xBB13`" in DOC


def format_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def test_steps_table_is_max_cycles():
    """Every row: the worst-case cycles of the engine running the shipped digits image
    (hw.geometry.EngineGeometry.max_cycles, 16 lanes), at 100 MHz, at the virtual board's
    simulated 12 MHz and at about 1 million simulated cycles per second of wall time."""
    from firmware import DIGITS_IMAGE
    from golden import image
    from hw.geometry import EngineGeometry
    from sim.board import CLK_HZ

    net, manifest = image.load_layers(DIGITS_IMAGE)
    engine = EngineGeometry.of(net, pixel_max=manifest["pixel_max"], lanes=16)
    assert CLK_HZ == 12_000_000
    lines = DOC.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| steps | current:"))
    rows = []
    for line in lines[head + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    steps = [int(row[0].replace(",", "")) for row in rows]
    assert steps[-1] == (1 << 16) - 1 and 64 in steps and len(steps) >= 6
    for n, row in zip(steps, rows, strict=True):
        expected = []
        for mode in (MODE_CURRENT, MODE_RATE):
            cycles = engine.max_cycles(n, mode)
            expected += [f"{cycles:,}", format_time(cycles / 100e6),
                         f"{format_time(cycles / CLK_HZ)} (~{format_time(cycles / 1e6)})"]
        assert row[1:] == expected, f"steps {n}"
    largest = engine.max_cycles(65535, MODE_RATE) / 100e6
    assert f"takes {format_time(largest)}" in DOC


def test_the_default_deadline_on_the_ice40_hx8k():
    """The 2 s default deadline covers every request at 100 MHz, not on the iCE40-HX8K (the
    digits-small image, 1 lane, 48 MHz): the sentence saying so quotes hw.geometry."""
    from firmware import DIGITS_SMALL_IMAGE
    from firmware.driver import DEFAULT_TIMEOUT_S
    from golden import image
    from hw.boards import BOARDS

    net, _ = image.load(DIGITS_SMALL_IMAGE)
    board = BOARDS["ice40-hx8k"]
    shape = (net.inputs, net.neurons, board.lanes, net.classes)
    assert (shape, board.clk_hz, DEFAULT_TIMEOUT_S) == ((64, 64, 1, 10), 48_000_000, 2.0)
    rate, current = (max_cycles(*shape, 65535, mode) for mode in (MODE_RATE, MODE_CURRENT))
    assert (f"runs the digits-small image (M = 64, N = 64, C = 10) on 1 lane at 48 MHz, where "
            f"65,535 steps in rate mode take at most {rate:,} cycles, "
            f"{format_time(rate / board.clk_hz)}, and {current:,} cycles, "
            f"{format_time(current / board.clk_hz)}, in constant-current mode") in FLAT
    first = next(n for n in range(1, 65536)
                 if max_cycles(*shape, n, MODE_RATE) / board.clk_hz > DEFAULT_TIMEOUT_S)
    assert f"rate mode from about {round(first, -2):,} steps needs a longer deadline" in FLAT


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``11th``, ``132nd`` ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def test_quoted_limits_and_timeouts_are_the_constants():
    from firmware.driver import DEFAULT_TIMEOUT_S
    from hw.frame_engine import REPLIES_DEPTH, RESETS_DEPTH
    from sim import board, refboard

    assert f"`REPLY_QUEUE` = {p.REPLY_QUEUE} entries" in FLAT
    assert f"the **reply queue** ({REPLIES_DEPTH} entries)" in FLAT
    assert f"| {RESETS_DEPTH} (`RESETS_DEPTH`, plus 1 held by the parser) |" in FLAT
    assert f"while {RESETS_DEPTH + 1} RESET answers wait is dropped whole" in FLAT
    assert f"`IMAGE_SLOTS` = {p.IMAGE_SLOTS}" in FLAT
    assert f"| CLASSIFY requests unanswered (`MAX_IN_FLIGHT`) | {p.MAX_IN_FLIGHT}:" in FLAT
    depth = p.REPLY_QUEUE  # FrameEngine's default queue_depth, D in its docstring
    assert f"| {depth + 2} (`REPLY_QUEUE` + 2) always fit |" in FLAT
    assert f"happens to the {ordinal(depth + 3)} unanswered request" in FLAT
    assert f"to the {ordinal(depth + 6)} (the reply queue holds {REPLIES_DEPTH} more)" in FLAT
    assert f"`MAX_WINDOW` = {p.MAX_WINDOW}" in FLAT
    assert f"`IDLE_TIMEOUT_BYTES` = {p.IDLE_TIMEOUT_BYTES} byte times" in FLAT
    assert f"about {board.QUIET_MS} ms of wall-clock silence from the client (`QUIET_MS`)" in FLAT
    assert f"simulates {board.IDLE_BYTE_TIMES} byte times (`IDLE_BYTE_TIMES`" in FLAT
    assert f"never less than {refboard.IDLE_TIMEOUT_MIN_S * 1e3:g} ms" in FLAT
    assert f"for {refboard.SEND_TIMEOUT_S:g} s (`SEND_TIMEOUT_S`)" in FLAT
    assert f"default deadline of {DEFAULT_TIMEOUT_S:g} s" in FLAT
    assert board.BUSY_LINE.decode().strip() in block_with("lifpga virtual board: busy")


def test_classify_sparse_example():
    x = first_digit()
    frame = p.encode_frame(p.Command.CLASSIFY_SPARSE, 1,
                           p.pack_classify_sparse(x, 32, MODE_CURRENT))
    assert hex_bytes(block_with("2 zeros, 4 literals: pixels 2..5")) == frame
    assert p.crc16(frame[2:-2]) == 0xA358 and "`0xA358`" in DOC
    dense = p.encode_frame(p.Command.CLASSIFY, 1, p.pack_classify(x, 32, MODE_CURRENT))
    tokens = len(p.sparse_tokens(x))
    assert f"{len(frame)} bytes instead of {len(dense)}" in FLAT
    assert f"LEN is 3 + {tokens} = {tokens + 3} = `0x{tokens + 3:04X}`" in FLAT


def test_sparse_rules_quote_the_code():
    assert f"`PROTOCOL_VERSION`, currently {p.PROTOCOL_VERSION}" in DOC
    assert f"Version {p.SPARSE_VERSION} (`SPARSE_VERSION`) adds CLASSIFY_SPARSE" in FLAT
    assert (f"({p.sparse_min_length(64)} for M = 64, {p.sparse_min_length(784)} for M = 784)"
            in FLAT)
    assert f"| `0x{p.Command.CLASSIFY_SPARSE:02x}` | CLASSIFY_SPARSE |" in DOC
    for m in (64, 784):
        extra = 2 + 2 * (m // 255)
        assert len(p.sparse_tokens(np.ones(m, int))) - m <= extra
    assert "2 bytes for the digits, 8 for MNIST" in FLAT


def link_table() -> dict[tuple[str, str], list[str]]:
    lines = DOC.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| data set | request |"))
    rows = {}
    for line in lines[head + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0], cells[1]] = cells[2:]
    return rows


def link_row(images, encoding: str) -> list[str]:
    f = p.link_figures(images, 10, 3_000_000, encoding)
    return [f"{f.request_bytes_mean:,.1f}", f"{f.request_bytes_max:,}",
            f"{f.images_per_s_serial_mean:,.0f}", f"{f.images_per_s_serial_worst:,.0f}",
            f"{f.images_per_s_pipelined_mean:,.0f}", f"{f.images_per_s_pipelined_worst:,.0f}"]


NAMES = {"dense": "CLASSIFY", "sparse": "CLASSIFY_SPARSE", "auto": "auto (shorter)"}


def test_link_figures_table_digits():
    rows = link_table()
    x = load_split().x_test
    for encoding in p.ENCODINGS:
        assert rows["digits, 599 test images", NAMES[encoding]] == link_row(x, encoding)
    assert rows["digits, 599 test images", "CLASSIFY"][4] == f"{4000:,}"  # the table above


def test_link_figures_table_mnist():
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST not in {MNIST_DIR}: the table's MNIST rows are not checked")
    rows = link_table()
    x = load_split("mnist", MNIST_DIR).x_test
    assert len(x) == 10_000
    for encoding in p.ENCODINGS:
        assert rows["MNIST, 10,000 test images", NAMES[encoding]] == link_row(x, encoding)
    sparse = p.link_figures(x, 10, 3_000_000, "sparse")
    assert f"{795 / sparse.request_bytes_mean:.1f} times fewer bytes" in FLAT
    assert f"takes {sparse.request_bytes_mean:.0f} bytes on average instead of 795" in FLAT
