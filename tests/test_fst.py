"""sim/fst.py (LZ4 and zlib for Verilator's FST writer), and the FST file that a model built
with ``waves="fst"`` (sim/verilator.py) dumps.

Verilator's FST writer links LZ4, which this machine has only as a run-time library; the first
FST build makes ``build/sim/lz4/liblz4.a`` from the PyPI sdist of python-lz4 (a download of
170 kB, see :func:`sim.fst.fst_build_args`). The fast tests (at the end) check how LZ4 is found
and the VCD fallback, without a Verilator build or a download. The slow ones build the model
with tracing once, for the shipped image (about 30 s), and dump one image at one step; the file
is checked with the small FST reader below (blocks, header, hierarchy) and, when ``pywellen``
(the waveform loader of the Surfer viewer) is installed, read back value by value.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import struct

import numpy as np
import pytest

from golden import model
from golden.constants import MODE_CURRENT
from golden.data import load_split
from sim import fst, verilator
from sim import run as sim_run

LANES = 16

# FST block types (GTKWave's fstapi.h, FST_BL_*).
BL_HDR, BL_VCDATA, BL_BLACKOUT, BL_GEOM, BL_HIER = 0, 1, 2, 3, 4
BL_VCDATA_DYN_ALIAS, BL_HIER_LZ4, BL_HIER_LZ4DUO, BL_VCDATA_DYN_ALIAS2 = 5, 6, 7, 8
BL_ZWRAPPER, BL_SKIP = 254, 255
VALUE_BLOCKS = {BL_VCDATA, BL_VCDATA_DYN_ALIAS, BL_VCDATA_DYN_ALIAS2}
HIER_BLOCKS = {BL_HIER, BL_HIER_LZ4, BL_HIER_LZ4DUO}
#: Size of the header block's payload plus its 8-byte length: always 329.
HDR_LEN = 329


# A minimal FST reader: enough to check the structure and list the signals.

def fst_blocks(data: bytes) -> list[tuple[int, bytes]]:
    """``(type, payload)`` of every block; each is a type byte and a big-endian u64 length
    that counts itself. Fails unless the blocks tile the file exactly."""
    blocks, pos = [], 0
    while pos < len(data):
        assert pos + 9 <= len(data), f"truncated block header at byte {pos}"
        kind = data[pos]
        (length,) = struct.unpack(">Q", data[pos + 1:pos + 9])
        assert length >= 8 and pos + 1 + length <= len(data), f"bad block length at {pos}"
        blocks.append((kind, data[pos + 9:pos + 1 + length]))
        pos += 1 + length
    return blocks


def fst_header(payload: bytes) -> dict:
    """The fields of a header block (FST_BL_HDR) that a viewer needs first."""
    start, end = struct.unpack(">QQ", payload[:16])
    # e, in the writer's own byte order: how a reader tells the byte order of the file.
    endian = next((e for order in "<>" if abs((e := struct.unpack(f"{order}d",
                  payload[16:24])[0]) - 2.718281828459045) < 1e-12), None)
    _memory, scopes, hier_vars, vars_, vc_blocks = struct.unpack(">QQQQQ", payload[24:64])
    timescale = struct.unpack(">b", payload[64:65])[0]
    writer = payload[65:65 + 128].split(b"\0")[0].decode()
    return {"start": start, "end": end, "endian": endian, "scopes": scopes,
            "hier_vars": hier_vars, "vars": vars_, "vc_blocks": vc_blocks,
            "timescale": timescale, "writer": writer}


def lz4_block_decompress(src: bytes, size: int) -> bytes:
    """Decode one raw LZ4 block (the format LZ4_compress_default writes)."""
    out, i = bytearray(), 0

    def length(n: int) -> int:
        nonlocal i
        if n == 15:
            while True:
                b = src[i]
                i += 1
                n += b
                if b != 255:
                    break
        return n

    while i < len(src):
        token = src[i]
        i += 1
        literals = length(token >> 4)
        out += src[i:i + literals]
        i += literals
        if i >= len(src):
            break
        offset = src[i] | src[i + 1] << 8
        i += 2
        match = length(token & 15) + 4
        assert 0 < offset <= len(out), "LZ4 match before the start of the output"
        begin = len(out) - offset
        for k in range(match):  # may overlap its own output
            out.append(out[begin + k])
    assert len(out) == size, f"LZ4 block decodes to {len(out)} bytes, header says {size}"
    return bytes(out)


def leb128(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def cstring(data: bytes, i: int) -> tuple[str, int]:
    end = data.index(b"\0", i)
    return data[i:end].decode(), end + 1


def fst_hierarchy(kind: int, payload: bytes) -> tuple[list[str], dict[str, int]]:
    """Scopes (dotted full names) and variables (full name without a range -> bit width) of
    a hierarchy block."""
    if kind == BL_HIER:
        data = gzip.decompress(payload[8:])
    elif kind == BL_HIER_LZ4:
        (size,) = struct.unpack(">Q", payload[:8])
        data = lz4_block_decompress(payload[8:], size)
    else:
        pytest.fail(f"hierarchy block type {kind} (FST_BL_HIER_LZ4DUO) is not decoded by this "
                    "small reader: extend fst_hierarchy")
    scopes, variables, stack, i = [], {}, [], 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag == 254:  # FST_ST_VCD_SCOPE: type, name, component
            name, i = cstring(data, i + 1)
            _component, i = cstring(data, i)
            stack.append(name)
            scopes.append(".".join(stack))
        elif tag == 255:  # FST_ST_VCD_UPSCOPE
            stack.pop()
        elif tag == 252:  # FST_ST_GEN_ATTRBEGIN: type, subtype, name, argument
            _name, i = cstring(data, i + 2)
            _arg, i = leb128(data, i)
        elif tag == 253:  # FST_ST_GEN_ATTREND
            pass
        elif tag <= 29:  # a variable (FST_VT_*): direction, name, width, alias
            name, i = cstring(data, i + 1)
            width, i = leb128(data, i)
            _alias, i = leb128(data, i)
            # A vector's name ends in its range, as GTKWave shows it: "i__payload [21:0]".
            if bits := re.fullmatch(r"(.*) \[(\d+):(\d+)\]", name):
                name, hi, lo = bits[1], int(bits[2]), int(bits[3])
                assert abs(hi - lo) + 1 == width, f"{name}: range [{hi}:{lo}], width {width}"
            variables[".".join([*stack, name])] = width
        else:
            raise AssertionError(f"unknown hierarchy tag {tag} at byte {i - 1}")
    assert not stack, f"scopes left open: {stack}"
    return scopes, variables


# The model with FST tracing, and one image through it.

@pytest.fixture(scope="module")
def traced(tmp_path_factory, shipped):
    """Build (or reuse) the FST model; run one digit for one step into a fresh .fst."""
    net, manifest = shipped
    try:
        sim_model = verilator.build(net, manifest["pixel_max"], LANES, waves="fst")
    except verilator.ToolNotFoundError as e:
        pytest.skip(f"{e.tool} is not installed: {e}")
    except fst.FstUnavailableError as e:
        if e.stage == "download":
            pytest.skip(f"the LZ4 sources for FST could not be fetched: {e}")
        raise
    x = load_split().x_test[:1]
    wave = tmp_path_factory.mktemp("waves") / "one.fst"
    result = sim_model.run(x, 1, MODE_CURRENT, wave_file=wave)
    return sim_model, result, model.run(x, net, 1, MODE_CURRENT), wave


@pytest.mark.slow
def test_traced_model_agrees_with_golden(traced):
    sim_model, result, golden, _ = traced
    assert sim_model.waves == "fst" and sim_model.build_dir.name == "obj-fst"
    assert np.array_equal(result.label, golden.classes[-1])
    assert np.array_equal(result.scores, golden.scores[-1])
    assert np.array_equal(result.spike_count, golden.spike_count)


@pytest.mark.slow
def test_fst_structure(traced):
    """Header first, blocks tiling the file, value changes, geometry, one hierarchy."""
    _, result, _, wave = traced
    data = wave.read_bytes()
    assert len(data) > 10_000, f"{wave} has only {len(data)} bytes"
    blocks = fst_blocks(data)
    kinds = [kind for kind, _ in blocks]
    assert kinds[0] == BL_HDR and len(blocks[0][1]) + 8 == HDR_LEN
    known = {BL_HDR, BL_BLACKOUT, BL_GEOM, BL_SKIP, BL_ZWRAPPER} | VALUE_BLOCKS | HIER_BLOCKS
    assert set(kinds) <= known, f"unknown block types {set(kinds) - known}"
    assert kinds.count(BL_HDR) == 1 and BL_GEOM in kinds
    assert sum(kind in HIER_BLOCKS for kind in kinds) == 1
    header = fst_header(blocks[0][1])
    assert header["endian"] is not None, "no byte-order mark (e) in the header"
    assert header["writer"].startswith("Generated by Verilated")
    assert header["timescale"] == -12  # ps: the harness's time precision (1ns / 1ps)
    assert header["vc_blocks"] == sum(kind in VALUE_BLOCKS for kind in kinds) >= 1
    # The dump covers reset and the image: at least the cycles the core reported.
    period_ps = verilator.CLOCK_PERIOD_NS * 1000
    assert header["start"] == 0
    assert header["end"] >= int(result.cycles[0]) * period_ps


@pytest.mark.slow
def test_fst_hierarchy_has_every_port(traced):
    """The harness's signals under their port names, with the widths of the export."""
    sim_model, _, _, wave = traced
    blocks = fst_blocks(wave.read_bytes())
    header = fst_header(blocks[0][1])
    kind, payload = next(b for b in blocks if b[0] in HIER_BLOCKS)
    scopes, variables = fst_hierarchy(kind, payload)
    assert len(scopes) == header["scopes"]
    assert len(variables) <= header["hier_vars"]
    top = verilator.HARNESS
    assert scopes[0] == top and f"{top}.dut" in scopes
    widths = {"clk": 1, "rst": 1, "i__valid": 1, "i__ready": 1, "o__valid": 1, "o__ready": 1,
              "i__payload": sim_model.meta["i_bits"], "o__payload": sim_model.meta["o_bits"]}
    for port, width in widths.items():
        assert variables.get(f"{top}.{port}") == width, port
        assert variables.get(f"{top}.dut.{port}") == width, f"dut.{port}"
    # Not only the ports: the core's internals are traced too.
    assert sum(name.startswith(f"{top}.dut.") for name in variables) > 100


@pytest.mark.slow
def test_fst_reads_back_in_surfers_loader(traced):
    """pywellen (the loader of the Surfer viewer) reads the result the testbench took."""
    pywellen = pytest.importorskip("pywellen", reason="pywellen (the dev extra) is not installed")
    sim_model, result, _, wave = traced
    waveform = pywellen.Waveform(str(wave))
    assert waveform.file_format == "FST"
    variables = {var.full_name: var for var in waveform.all_vars()}
    top = verilator.HARNESS
    rises = [t for t, v in variables[f"{top}.o__valid"].tv if int(v) == 1]
    assert len(rises) == 1, f"o.valid rose at {rises}, expected once for one image"
    word = variables[f"{top}.o__payload"].signal.value_at(rises[0])
    word = int(word, 16) if isinstance(word, str) else int(word)
    fields = sim_model.meta["o"]
    for name in ("label", "cycles", "spike_count"):
        spec = fields[name]
        got = (word >> spec["offset"]) & ((1 << spec["width"]) - 1)
        assert got == int(getattr(result, name)[0]), name


# How LZ4 is found, and the VCD fallback: no Verilator build, no download.

def test_fst_build_args_reuses_the_built_lz4(tmp_path, monkeypatch):
    """With liblz4.a and its stamp in place, nothing is fetched or compiled."""
    lib = tmp_path / "build" / "sim" / "lz4"
    lib.mkdir(parents=True)
    (lib / "lz4.h").write_text("")
    (lib / "liblz4.a").write_bytes(b"")
    name, version, sha256 = fst.LZ4_SDIST
    (lib / "liblz4.json").write_text(json.dumps(
        {"sdist": f"{name}-{version}", "sha256": sha256, "cflags": list(fst.LZ4_CFLAGS)}))

    def unexpected(*args, **kwargs):
        raise AssertionError("probed or built LZ4 although it was there")

    monkeypatch.setattr(fst, "_fst_probe", unexpected)
    monkeypatch.setattr(fst, "_build_lz4", unexpected)
    assert fst.fst_build_args(tmp_path) == ("-CFLAGS", f"-I{lib}", "-LDFLAGS", f"-L{lib}")


def test_fst_build_args_reports_a_failed_download(tmp_path, monkeypatch):
    """No package index (as offline): FstUnavailableError saying what could not be fetched."""
    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    # Hide a system LZ4 (liblz4-dev), if any, from the probe: only the download path is left.
    real_probe = fst._fst_probe
    monkeypatch.setattr(fst, "_fst_probe",
                        lambda flags, workdir: real_probe(flags, workdir) if flags else "no lz4")
    with pytest.raises(fst.FstUnavailableError, match=r"pip download lz4==") as info:
        fst.fst_build_args(tmp_path, announce=lambda line: None)
    assert info.value.stage == "download"
    assert not (tmp_path / "build" / "sim" / "lz4" / "liblz4.a").exists()


def test_wave_falls_back_to_vcd_with_a_message(tmp_path, monkeypatch, capsys):
    """``make sim ARGS=--wave`` without LZ4: one warning saying why, then a VCD model."""
    def unavailable(*args, **kwargs):
        raise fst.FstUnavailableError("download", "could not fetch the LZ4 sources")

    asked = []

    def fake_build(net, manifest, lanes, waves=None):
        asked.append(waves)
        return "stopped here by the test"

    monkeypatch.setattr(fst, "fst_build_args", unavailable)
    monkeypatch.setattr(sim_run, "_build", fake_build)
    error = sim_run._dump_wave(None, {}, LANES, np.zeros((1, 64), np.uint8), 1, "current",
                               tmp_path)
    assert error == "stopped here by the test" and asked == ["vcd"]
    err = capsys.readouterr().err
    assert err.count("warning:") == 1
    assert "VCD" in err and "could not fetch the LZ4 sources" in err
