"""The frame engine's first stage: received bytes in, one request per frame out.

It is :class:`golden.device.DeviceParser` in gateware: it checks the header when LEN arrives
and refuses a wrong LEN at once (``BAD_LENGTH``); otherwise it consumes ``LEN + 2`` more bytes,
computing the CRC on the fly (``amaranth.lib.crc`` with :data:`hw.crc.CRC_ALGORITHM`), writing
the image of a CLASSIFY or CLASSIFY_SPARSE into a free image slot and noting a bad mode, an
out-of-range pixel or (CLASSIFY_SPARSE) a token stream that does not describe M pixels. A frame
that stalls for ``idle_timeout_cycles`` is abandoned (``TIMEOUT`` once its CMD and SEQ are
known). The header and CLASSIFY layouts are read from :mod:`golden.protocol`'s formats.

A complete frame becomes one entry of ``requests`` (:data:`REQUEST_LAYOUT`), except a good
RESET, which becomes its SEQ on ``resets`` and a one-cycle ``flush`` (see
:class:`hw.frame_engine.FrameEngine`). Both outputs are registers that hold their entry until
it is taken; a frame completed while its output still holds one is dropped whole.

An image slot holds an image's nonzero pixels only, as entries (:func:`slot_entry_layout`:
pixel index and value) in increasing index order, then an entry of value 0 that ends the list
(left out when all M pixels are nonzero); :class:`~hw.frame_dispatcher.FrameDispatcher`
expands them to M pixels. A received byte writes at most one entry (a literal pixel), so a
zero run of up to 255 pixels in one CLASSIFY_SPARSE byte costs one cycle like any byte, and
the parser keeps up with bytes arriving on every cycle. The list-ending entry is written with
the frame's first CRC byte, so a frame refused after its pixels (a bad CRC, say) leaves a
slot that the next frame simply overwrites from entry 0.

Image slots form a ring: the parser fills them in order, the dispatcher empties them in the
same order and says so on ``slot_freed``; ``slots_used`` counts the filled ones. A CLASSIFY
whose header (LEN) arrives while all :data:`~golden.protocol.IMAGE_SLOTS` are filled is
consumed and refused ``BUSY``.
"""

from __future__ import annotations

import struct

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.crc import Processor
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden import protocol
from golden.constants import MODE_CURRENT, MODE_RATE, STEPS_BITS
from golden.protocol import (
    CLASSIFY_HEADER_FORMAT,
    CRC_BYTES,
    HEADER_BYTES,
    HEADER_FORMAT,
    IMAGE_SLOTS,
    MAX_PAYLOAD,
    MODE_DEFAULT,
    SPARSE_RUN_MAX,
    SYNC,
    Command,
    Status,
)

from .crc import CRC_ALGORITHM

__all__ = ["FrameParser", "Kind", "REQUEST_LAYOUT", "HEADER_FIELDS", "SLOT_BITS",
           "field_offsets", "slot_entry_layout"]

#: The header after SYNC, as :func:`golden.protocol.encode_frame` packs it.
HEADER_FIELDS = ("cmd", "seq", "length")
#: The CLASSIFY payload before the pixels, as :func:`golden.protocol.pack_classify` packs it.
CLASSIFY_FIELDS = ("steps", "mode")

SLOT_BITS = max(1, ceil_log2(IMAGE_SLOTS))


def slot_entry_layout(pixel_bits: int, index_bits: int) -> data.StructLayout:
    """One image-slot entry: a nonzero pixel's ``value`` and its ``index`` in the image
    (0 .. M-1); ``value`` 0 ends the slot's list."""
    return data.StructLayout({"value": unsigned(pixel_bits), "index": unsigned(index_bits)})


def field_offsets(fmt: str, names: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """``{name: (byte offset, size)}`` of the fields of a little-endian :mod:`struct` format."""
    codes = fmt.lstrip("<")
    if not fmt.startswith("<") or len(codes) != len(names) or not codes.isalpha():
        raise ValueError(f"{fmt!r} is not a little-endian format of {len(names)} scalar fields")
    return {name: (struct.calcsize("<" + codes[:k]), struct.calcsize("<" + code))
            for k, (name, code) in enumerate(zip(names, codes, strict=True))}



class Kind(enum.Enum, shape=2):
    """What a request asks of the dispatcher and responder."""

    ERROR = 0     # answer ``status`` alone
    INFO = 1      # answer the INFO payload
    CLASSIFY = 2  # stream slot ``slot`` into the core, answer its result


#: One entry of ``requests``: ``steps`` already has 0 replaced by the image's default;
#: ``status`` matters for ``Kind.ERROR`` only, ``steps``, ``mode`` and ``slot`` for
#: ``Kind.CLASSIFY`` only.
REQUEST_LAYOUT = data.StructLayout({
    "kind": Kind, "cmd": unsigned(8), "seq": unsigned(8),
    "status": unsigned(max(Status).bit_length()), "steps": unsigned(STEPS_BITS),
    "mode": unsigned(1), "slot": unsigned(SLOT_BITS)})


class _Token(enum.Enum, shape=2):
    """Where a CLASSIFY_SPARSE payload byte falls in its token."""

    ZEROS = 0     # the zero-run length
    COUNT = 1     # the literal count
    LITERALS = 2  # a literal pixel


class _FrameState:
    """The registers and per-cycle verdict signals of the frame being received."""

    def __init__(self, info: protocol.Info):
        header_bytes = HEADER_BYTES - len(SYNC)
        self.header = Signal(8 * header_bytes)
        fields = field_offsets(HEADER_FORMAT, HEADER_FIELDS)
        self.cmd, self.seq, self.length = (self.header[8 * offset:8 * (offset + size)]
                                           for offset, size in map(fields.get, HEADER_FIELDS))
        #: Header bytes received once CMD and SEQ are both known.
        self.seq_known = sum(fields["seq"])
        self.at = Signal(range(MAX_PAYLOAD + CRC_BYTES + 1))  # byte index in header, then body
        self.crc_lo = Signal(8)
        self.steps = Signal(STEPS_BITS)
        self.mode = Signal(1, init=info.default_mode)
        self.no_slot = Signal()       # every slot was full when LEN arrived
        self.mode_bad = Signal()
        self.pixel_bad = Signal()
        self.slot_at = Signal(SLOT_BITS)  # the slot this frame's pixels go to
        inputs = info.inputs
        # Pixels described so far; once past M (``over``) it is no longer used, so it takes
        # every byte's count without a compare in its enable (timing).
        self.px = Signal(range(inputs + 1 + 255))
        self.over = Signal()                  # more than M pixels described
        self.entry = Signal(range(inputs + 1))  # slot entries written so far
        self.token = Signal(_Token)
        self.literals_left = Signal(8)
        self.store = Signal()                 # this byte is a nonzero pixel: an entry
        #: The next body byte is a pixel byte (``head <= at < LEN``), registered when ``at``
        #: moves so that the byte-index comparisons stay off the pixel-count path (timing).
        self.pixel_zone = Signal()
        #: CMD is CLASSIFY or CLASSIFY_SPARSE (``classify``), CLASSIFY (``dense``): registered
        #: with the header's last byte, so that the CMD compares stay off the pixel-count
        #: path (the MNIST ULX3S-85F's critical path, 89.4 MHz).
        self.classify = Signal()
        self.dense = Signal()
        # Driven in the cycle a frame ends:
        self.done = Signal()
        self.kind = Signal(Kind)
        self.status = Signal(REQUEST_LAYOUT.members["status"])
        self.reset = Signal()         # a good RESET (not a request)
        self.fill = Signal()          # a CLASSIFY that filled its slot was queued

    def end(self, m: Module, kind: Kind, status: Status = Status.OK):
        m.d.comb += [self.done.eq(1), self.kind.eq(kind), self.status.eq(status)]


class FrameParser(wiring.Component):
    """Bytes in, requests out; the frame rules of :class:`golden.device.DeviceParser`.

    Parameters
    ----------
    info : golden.protocol.Info
        Gives ``inputs`` (M, the CLASSIFY pixel count), ``pixel_max``, the default steps and
        mode.
    pixel_bits : int
        Width of a stored pixel.
    idle_timeout_cycles : int
        Cycles without a byte after which a partial frame is abandoned.

    Members
    -------
    rx : :py:`In(stream.Signature(8))`
        Received bytes. ``rx.ready`` is always high: a byte is taken in the cycle it is offered.
    requests : :py:`Out(stream.Signature(REQUEST_LAYOUT))`
        One entry per complete or refused frame (RESET aside), in arrival order.
    resets : :py:`Out(stream.Signature(8))`
        The SEQ of every complete, CRC-good RESET frame.
    flush : :py:`Out(1)`
        One-cycle pulse, the cycle after a RESET frame's last byte (when its SEQ appears on
        ``resets``): every request before it that has not been answered is abandoned.
        ``slots_used`` returns to 0, and ``requests`` drops what it holds, at the edge ending
        this cycle, when the queue it feeds must be flushed too.
    slot_wr : :py:`In(memory.WritePort.Signature(addr_width=..., shape=slot_entry_layout(...)))`
        To the slot memory, ``addr_width = SLOT_BITS + index_bits`` with
        ``index_bits = max(1, ceil_log2(M))``: entry ``e`` of the image for slot ``s`` is
        written at address ``s << index_bits | e``; entries are
        ``slot_entry_layout(pixel_bits, index_bits)``.
    slot_freed : :py:`In(1)`
        Pulse: the oldest filled slot has been emptied.
    slots_used : :py:`Out(range(IMAGE_SLOTS + 1))`
        Slots filled and not yet freed.
    """

    def __init__(self, info: protocol.Info, *, pixel_bits: int, idle_timeout_cycles: int):
        if idle_timeout_cycles < 1:
            raise ValueError(f"idle_timeout_cycles must be positive, got {idle_timeout_cycles}")
        self.info = info
        self.pixel_bits = pixel_bits
        self.index_bits = max(1, ceil_log2(info.inputs))
        self.idle_timeout_cycles = idle_timeout_cycles
        self.entry_layout = slot_entry_layout(pixel_bits, self.index_bits)
        slot_port = memory.WritePort.Signature(addr_width=SLOT_BITS + self.index_bits,
                                               shape=self.entry_layout)
        super().__init__({"rx": In(stream.Signature(8)),
                          "requests": Out(stream.Signature(REQUEST_LAYOUT)),
                          "resets": Out(stream.Signature(8)),
                          "flush": Out(1),
                          "slot_wr": In(slot_port),
                          "slot_freed": In(1),
                          "slots_used": Out(range(IMAGE_SLOTS + 1))})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.crc = crc = Processor(CRC_ALGORITHM(data_width=8))
        f = _FrameState(self.info)
        m.d.comb += [self.rx.ready.eq(1), crc.data.eq(self.rx.payload)]
        self._outputs(m, f)
        self._slot_ring(m, f)
        hunting = Signal()
        timed_out = self._idle_timer(m, hunting)
        with m.FSM(name="parser"):
            with m.State("HUNT"):
                m.d.comb += hunting.eq(1)
                with m.If(self.rx.valid & (self.rx.payload == SYNC[0])):
                    m.next = "SYNC1"
            with m.State("SYNC1"):
                self._sync1(m, f, timed_out)
            with m.State("HEADER"):
                self._header(m, f, crc, timed_out)
            with m.State("BODY"):
                self._body(m, f, crc, timed_out)
        return m

    def _outputs(self, m: Module, f: _FrameState):
        """The two output registers: loaded when a frame ends, held until taken."""
        request = self.requests.payload
        for out in (self.requests, self.resets):
            with m.If(out.ready):
                m.d.sync += out.valid.eq(0)
        # A RESET that finds ``resets`` still holding one is dropped whole, like any frame
        # that finds its output full: no flush, no answer.
        reset_taken = f.done & f.reset & (~self.resets.valid | self.resets.ready)
        m.d.sync += self.flush.eq(reset_taken)
        with m.If(reset_taken):
            m.d.sync += [self.resets.valid.eq(1), self.resets.payload.eq(f.seq)]
        with m.Elif(f.done & ~f.reset & (~self.requests.valid | self.requests.ready)):
            m.d.sync += [
                self.requests.valid.eq(1), request.kind.eq(f.kind), request.cmd.eq(f.cmd),
                request.seq.eq(f.seq), request.status.eq(f.status),
                request.steps.eq(Mux(f.steps == 0, self.info.default_steps, f.steps)),
                request.mode.eq(f.mode), request.slot.eq(f.slot_at)]
            m.d.comb += f.fill.eq(f.kind == Kind.CLASSIFY)
        with m.If(self.flush):
            # Abandoned like everything before the RESET; the queue it was waiting for is
            # flushed in the same cycle (a reset of both ends of the stream).
            m.d.sync += self.requests.valid.eq(0)

    def _slot_ring(self, m: Module, f: _FrameState):
        """``slots_used``, and the slot the next CLASSIFY fills."""
        with m.If(self.flush):
            m.d.sync += self.slots_used.eq(0)
        with m.Else():
            m.d.sync += self.slots_used.eq(self.slots_used + f.fill - self.slot_freed)
        with m.If(f.fill):
            m.d.sync += f.slot_at.eq(Mux(f.slot_at == IMAGE_SLOTS - 1, 0, f.slot_at + 1))

    def _idle_timer(self, m: Module, hunting: Signal) -> Signal:
        """High in the cycle a partial frame times out (a byte in that cycle wins)."""
        idle = Signal(range(self.idle_timeout_cycles + 1))
        got = self.rx.valid
        with m.If(hunting | got):
            m.d.sync += idle.eq(0)
        with m.Else():
            m.d.sync += idle.eq(idle + 1)
        timed_out = Signal()
        m.d.comb += timed_out.eq(~got & ~hunting & (idle == self.idle_timeout_cycles - 1))
        return timed_out

    def _sync1(self, m: Module, f: _FrameState, timed_out: Signal):
        """After ``A5``: an ``A5`` while waiting for ``5A`` keeps waiting for ``5A``."""
        byte = self.rx.payload
        with m.If(timed_out):
            m.next = "HUNT"
        with m.If(self.rx.valid):
            with m.If(byte == SYNC[1]):
                m.d.sync += f.at.eq(0)
                m.next = "HEADER"
            with m.Elif(byte != SYNC[0]):
                m.next = "HUNT"

    def _wrong_length(self, m: Module, f: _FrameState) -> Signal:
        """LEN, its last byte arriving now, is wrong for CMD (or above MAX_PAYLOAD)."""
        length = Cat(f.length[:-8], self.rx.payload)
        wrong = Signal()
        too_long = length > MAX_PAYLOAD  # one comparator, shared by every command that needs it
        with m.Switch(f.cmd):
            for command in Command:
                with m.Case(command):
                    lengths = protocol.request_lengths(command, self.info.inputs)
                    if len(lengths) == 1:
                        m.d.comb += wrong.eq(length != lengths.start)
                    else:
                        assert lengths.stop == MAX_PAYLOAD + 1
                        m.d.comb += wrong.eq((length < lengths.start) | too_long)
            with m.Default():
                m.d.comb += wrong.eq(too_long)
        return wrong

    def _header(self, m: Module, f: _FrameState, crc: Processor, timed_out: Signal):
        """CMD, SEQ and LEN; a wrong LEN is refused as soon as it is complete."""
        byte = self.rx.payload
        header_bytes = len(f.header) // 8
        # f.dense and f.classify are taken from CMD at the header's last byte.
        assert sum(field_offsets(HEADER_FORMAT, HEADER_FIELDS)["cmd"]) < header_bytes
        wrong = self._wrong_length(m, f)
        with m.If(timed_out):
            m.next = "HUNT"
            with m.If(f.at >= f.seq_known):
                f.end(m, Kind.ERROR, Status.TIMEOUT)
        with m.If(self.rx.valid):
            m.d.comb += [crc.valid.eq(1), crc.start.eq(f.at == 0)]
            m.d.sync += [f.header.word_select(f.at[:ceil_log2(header_bytes)], 8).eq(byte),
                         f.at.eq(f.at + 1)]
            with m.If(f.at == header_bytes - 1):
                m.d.sync += [f.at.eq(0), f.steps.eq(0), f.mode.eq(self.info.default_mode),
                             f.mode_bad.eq(0), f.pixel_bad.eq(0), f.px.eq(0), f.over.eq(0),
                             f.entry.eq(0), f.token.eq(_Token.ZEROS), f.pixel_zone.eq(0),
                             f.no_slot.eq(self.slots_used == IMAGE_SLOTS),
                             f.dense.eq(f.cmd == Command.CLASSIFY),
                             f.classify.eq((f.cmd == Command.CLASSIFY)
                                           | (f.cmd == Command.CLASSIFY_SPARSE))]
                with m.If(wrong):
                    f.end(m, Kind.ERROR, Status.BAD_LENGTH)
                    m.next = "HUNT"
                with m.Else():
                    m.next = "BODY"

    def _body(self, m: Module, f: _FrameState, crc: Processor, timed_out: Signal):
        """LEN payload bytes and the CRC; the frame is judged at its last byte."""
        byte, at = self.rx.payload, f.at
        with m.If(timed_out):
            m.next = "HUNT"
            f.end(m, Kind.ERROR, Status.TIMEOUT)
        head = struct.calcsize(CLASSIFY_HEADER_FORMAT)
        with m.If(self.rx.valid):
            m.d.sync += [at.eq(at + 1),
                         f.pixel_zone.eq((at + 1 >= head) & (at + 1 < f.length))]
            m.d.comb += crc.valid.eq(at < f.length)
            with m.If(f.classify):
                self._classify_byte(m, f)
            with m.If(at == f.length):
                m.d.sync += f.crc_lo.eq(byte)
            with m.If(at == f.length + CRC_BYTES - 1):
                self._judge(m, f, crc_ok=Cat(f.crc_lo, byte) == crc.crc)
                m.next = "HUNT"

    def _classify_byte(self, m: Module, f: _FrameState):
        """A CLASSIFY payload byte: steps, mode, then pixels into the slot."""
        byte, at = self.rx.payload, f.at
        fields = field_offsets(CLASSIFY_HEADER_FORMAT, CLASSIFY_FIELDS)
        (steps_at, steps_size), (mode_at, _) = fields["steps"], fields["mode"]
        for k in range(steps_size):
            with m.If(at == steps_at + k):
                m.d.sync += f.steps.word_select(k, 8).eq(byte)
        with m.If(at == mode_at):
            with m.Switch(byte):
                with m.Case(MODE_CURRENT, MODE_RATE):
                    m.d.sync += f.mode.eq(byte)
                with m.Case(MODE_DEFAULT):
                    pass
                with m.Default():
                    m.d.sync += f.mode_bad.eq(1)
        literal, skip = Signal(), Signal()  # this byte is a pixel; a zero-run length
        with m.If(f.pixel_zone):
            with m.If(f.dense):
                m.d.comb += literal.eq(1)
            with m.Else():
                self._token_byte(m, f, literal, skip)
        self._describe(m, f, literal, skip)
        # A nonzero literal is the next entry; the first CRC byte ends the slot's list
        # (unless all M entries are used).
        last = (at == f.length) & (f.entry != self.info.inputs)
        m.d.comb += [self.slot_wr.addr.eq(Cat(f.entry[:self.index_bits], f.slot_at)),
                     self.slot_wr.data.value.eq(Mux(last, 0, byte)),
                     self.slot_wr.data.index.eq(f.px[:self.index_bits]),
                     self.slot_wr.en.eq((f.store | last) & ~f.no_slot)]

    def _token_byte(self, m: Module, f: _FrameState, literal: Signal, skip: Signal):
        """A CLASSIFY_SPARSE pixel byte: a zero-run length, a literal count or a literal."""
        byte = self.rx.payload
        with m.Switch(f.token):
            with m.Case(_Token.ZEROS):
                m.d.comb += skip.eq(1)
                m.d.sync += f.token.eq(_Token.COUNT)
            with m.Case(_Token.COUNT):
                m.d.sync += [f.literals_left.eq(byte),
                             f.token.eq(Mux(byte == 0, _Token.ZEROS, _Token.LITERALS))]
            with m.Case(_Token.LITERALS):
                m.d.comb += literal.eq(1)
                m.d.sync += f.literals_left.eq(f.literals_left - 1)
                with m.If(f.literals_left == 1):
                    m.d.sync += f.token.eq(_Token.ZEROS)

    def _describe(self, m: Module, f: _FrameState, literal: Signal, skip: Signal):
        """Count the pixels a byte describes; a nonzero literal becomes the next slot entry."""
        byte, inputs = self.rx.payload, self.info.inputs
        assert SPARSE_RUN_MAX < 1 << 8
        described = f.px + Mux(literal, 1, byte)
        with m.If((literal | skip) & ~f.over):
            m.d.sync += f.px.eq(described)
            with m.If(described > inputs):
                m.d.sync += f.over.eq(1)
        with m.If(literal & (byte > self.info.pixel_max)):
            m.d.sync += f.pixel_bad.eq(1)
        m.d.comb += f.store.eq(literal & (byte != 0) & (f.px < inputs) & ~f.over)
        with m.If(f.store):
            m.d.sync += f.entry.eq(f.entry + 1)

    def _judge(self, m: Module, f: _FrameState, crc_ok):
        """The verdict on a frame whose last byte arrives now (checks in the reference's
        order, BUSY before the payload checks: the pixel count, the mode, the pixels)."""
        with m.If(~crc_ok):
            f.end(m, Kind.ERROR, Status.BAD_CRC)
        with m.Elif(f.cmd == Command.INFO):
            f.end(m, Kind.INFO)
        with m.Elif(f.cmd == Command.RESET):
            f.end(m, Kind.ERROR)
            m.d.comb += f.reset.eq(1)
        with m.Elif((f.cmd != Command.CLASSIFY) & (f.cmd != Command.CLASSIFY_SPARSE)):
            f.end(m, Kind.ERROR, Status.UNKNOWN_COMMAND)
        with m.Elif(f.no_slot):
            f.end(m, Kind.ERROR, Status.BUSY)
        with m.Elif((f.cmd == Command.CLASSIFY_SPARSE)
                    & ((f.token != _Token.ZEROS) | f.over | (f.px != self.info.inputs))):
            f.end(m, Kind.ERROR, Status.BAD_LENGTH)
        with m.Elif(f.mode_bad):
            f.end(m, Kind.ERROR, Status.BAD_PARAMETER)
        with m.Elif(f.pixel_bad):
            f.end(m, Kind.ERROR, Status.PIXEL_RANGE)
        with m.Else():
            f.end(m, Kind.CLASSIFY)
