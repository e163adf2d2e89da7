"""UART receiver and transmitter: 8N1, LSB first, idle high, byte streams on the fabric side.

Frame format
------------
One frame is ten bit times of ``D = divisor`` clock cycles each::

    line  ‾‾‾‾‾\\_____/‾‾‾‾‾\\_____ ... _____/‾‾‾‾‾‾‾‾‾‾‾‾‾‾
    bit        start  d0    d1          d7   stop   (idle)
    level        0    LSB first ...    MSB     1      1

``D = round(clk_hz / baud)``. The constructors refuse ``D < MIN_DIVISOR`` (too few cycles to
find the middle of a bit) and a baud error ``|clk_hz / D - baud| / baud > MAX_BAUD_ERROR``, and
keep ``divisor``, ``actual_baud`` (``clk_hz / D``) and ``baud_error`` (signed, relative) as
attributes.

Receiver timing
---------------
``rx`` is asynchronous: a two-flip-flop :class:`~amaranth.lib.cdc.FFSynchronizer` (reset to 1,
the idle level) brings it into ``sync``, so the receiver sees the pin two cycles late. Idle, the
receiver hunts for a low level, which is a falling edge because it only hunts after it has seen
the line high. Counting from clock edge ``k``, the first edge at which the pin is low:

* edge ``k + D // 2`` (middle of the start bit): the pin must still be low, else the low was a
  glitch and the receiver goes back to hunting;
* edge ``k + D // 2 + (n + 1) * D``: data bit ``n`` (``n = 0 .. 7``) is sampled;
* edge ``k + D // 2 + 9 * D``: the stop bit is sampled; if it is 1 the byte goes to ``o`` and
  ``o.valid`` is high after edge ``k + D // 2 + 9 * D + 2`` (the two extra cycles are the
  synchroniser); the receiver hunts again at once, half a bit before the frame ends.

Each frame is sampled from its own start edge, so rate errors do not accumulate across frames.
Within a frame the stop-bit sample must land inside the stop bit: with a one-cycle uncertainty
on where the start edge fell, the sender may be up to about ``(D / 2 - 1) / (10 * D)`` fast (4 %
at ``D = 10``) or ``(D // 2) / (9 * D)`` slow (5.5 %), which covers 2 % at each end. The tests
check a sender 2 % fast and 2 % slow.

A stop bit of 0 is a framing error (a break, noise, or a wrong baud rate): the byte is dropped,
``frame_error`` pulses, and the receiver waits for the line to be high before hunting again, so
a line held low (a break) yields one ``frame_error`` and nothing else.

Transmitter timing
------------------
A byte transferred on ``i`` at clock edge ``e`` drives the start bit on ``tx`` from edge ``e``
on; bit ``j`` of the frame (start, ``d0 .. d7``, stop) is on ``tx`` from edge ``e + j * D`` to
edge ``e + (j + 1) * D``, exactly ``D`` cycles each. ``i.ready`` is high again in the stop
bit's last cycle, so the next transfer can be at edge ``e + 10 * D``: bytes offered back to back
leave as back-to-back frames, one per ``10 * D`` cycles. Latency from the transfer to the start
bit on the pin: the ``tx`` register, one cycle.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from golden.protocol import BITS_PER_BYTE

__all__ = [
    "FRAME_BITS", "MAX_BAUD_ERROR", "MIN_DIVISOR", "UartComponent", "UartRx", "UartTx",
    "baud_divisor",
]

#: Smallest clock cycles per bit accepted: the receiver needs ``D // 2 >= 2`` to sample the
#: middle of a bit behind its two-cycle synchroniser.
MIN_DIVISOR = 4
#: Largest relative difference between the requested and the achieved baud rate.
MAX_BAUD_ERROR = 0.02
#: Bit times per frame: start, 8 data bits, stop (the protocol's definition).
FRAME_BITS = BITS_PER_BYTE


def baud_divisor(clk_hz: int, baud: int) -> tuple[int, float, float]:
    """Clock cycles per bit for ``baud`` at ``clk_hz``, checked.

    Parameters
    ----------
    clk_hz : int
        Frequency of the ``sync`` clock, Hz.
    baud : int
        Requested bit rate, bit/s.

    Returns
    -------
    divisor : int
        ``round(clk_hz / baud)``, clock cycles per bit.
    actual_baud : float
        ``clk_hz / divisor``, bit/s.
    baud_error : float
        ``(actual_baud - baud) / baud``, signed.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is not positive, the divisor is below :data:`MIN_DIVISOR`, or the baud
        error exceeds :data:`MAX_BAUD_ERROR`.
    """
    for name, value in (("clk_hz", clk_hz), ("baud", baud)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, not {value!r}")
        if value <= 0:
            raise ValueError(f"{name} must be positive, not {value}")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"{baud} baud at {clk_hz} Hz is {clk_hz / baud:.2f} cycles per bit; "
                         f"the UART needs at least {MIN_DIVISOR}")
    actual_baud = clk_hz / divisor
    baud_error = (actual_baud - baud) / baud
    if abs(baud_error) > MAX_BAUD_ERROR:
        raise ValueError(f"{baud} baud at {clk_hz} Hz: the nearest divisor {divisor} gives "
                         f"{actual_baud:.0f} baud, {baud_error:+.2%} off (limit "
                         f"±{MAX_BAUD_ERROR:.0%})")
    return divisor, actual_baud, baud_error


class UartComponent(wiring.Component):
    """One side of a UART at one bit rate: what :class:`UartRx` and :class:`UartTx` share.

    The members are the subclass's (declared as class annotations).

    Parameters
    ----------
    clk_hz : int
        Frequency of the ``sync`` clock, Hz.
    baud : int
        Bit rate, bit/s.

    Attributes
    ----------
    clk_hz, baud : int
        As given.
    divisor : int
        Clock cycles per bit, ``D``.
    actual_baud : float
        ``clk_hz / divisor``, bit/s.
    baud_error : float
        ``(actual_baud - baud) / baud``.

    Raises
    ------
    TypeError, ValueError
        As :func:`baud_divisor`.
    """

    def __init__(self, *, clk_hz: int, baud: int):
        self.divisor, self.actual_baud, self.baud_error = baud_divisor(clk_hz, baud)
        self.clk_hz = clk_hz
        self.baud = baud
        super().__init__()


class UartRx(UartComponent):
    """UART receiver, 8N1: asynchronous pin in, one stream transfer per received byte.

    See the module documentation for the sampling points and the latency. Parameters,
    attributes and errors: as :class:`UartComponent`.

    Members
    -------
    rx : :py:`In(1)`
        The receive pin, idle high. Asynchronous: synchronised inside with two flip-flops.
    o : :py:`Out(stream.Signature(8))`
        Received bytes, one per transfer. ``o.valid`` and ``o.payload`` are registers: a byte
        is held until taken, and ``o.valid`` never depends on ``o.ready``. The register holds
        one byte: the consumer has until the next stop bit is sampled, at least ``10 * D``
        cycles after ``o.valid`` rises for back-to-back frames, to take it.
    overrun : :py:`Out(1)`
        One-cycle pulse, registered: a byte was complete while ``o`` still held an untaken
        byte. The new byte is dropped; the held byte stays on ``o`` unchanged. A byte whose stop
        bit is sampled in the cycle ``o.ready`` takes the held one is not an overrun.
    frame_error : :py:`Out(1)`
        One-cycle pulse, registered, at the stop-bit sample: the stop bit was 0. The byte is
        dropped and the receiver waits for the line to go high before hunting again.
    busy : :py:`Out(1)`
        High from the cycle after the start bit is seen (after the synchroniser) until the
        stop bit has been sampled, or, after a framing error, until the line is high again.
        Low while hunting for a start bit, and after a rejected glitch.
    """

    rx: In(1)
    o: Out(stream.Signature(8))
    overrun: Out(1)
    frame_error: Out(1)
    busy: Out(1)

    def elaborate(self, platform) -> Module:
        m = Module()
        period = self.divisor

        # Reset to the idle level, so that reset itself never looks like a start bit.
        line = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(period))
        bit = Signal(range(8))
        shift = Signal(8)

        # Pulses last one cycle; the output register empties when taken. Assignments further
        # down override these defaults.
        m.d.sync += [self.overrun.eq(0), self.frame_error.eq(0)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM(name="rx") as fsm:
            with m.State("HUNT"):
                # Only entered with the line seen high: a low here is a falling edge.
                with m.If(~line):
                    m.d.sync += timer.eq(period // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    # High again at the middle of the start bit: a glitch, not a frame.
                    m.next = "HUNT"
                with m.Else():
                    m.d.sync += [timer.eq(period - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    # LSB first: each bit enters at the top and moves down.
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), bit.eq(bit + 1),
                                 timer.eq(period - 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                    # Hunt from the middle of the stop bit: a sender up to half a bit fast
                    # still has its next start edge seen.
                    m.next = "HUNT"
                with m.Else():
                    m.d.sync += self.frame_error.eq(1)
                    m.next = "WAIT_IDLE"
            with m.State("WAIT_IDLE"):
                # After a framing error the line may still be low (a break): hunting now would
                # take every low bit time as a new start bit.
                with m.If(line):
                    m.next = "HUNT"

        m.d.comb += self.busy.eq(~fsm.ongoing("HUNT"))
        return m


class UartTx(UartComponent):
    """UART transmitter, 8N1: one stream transfer per byte in, the frame out on ``tx``.

    See the module documentation for the bit timing. Parameters, attributes and errors: as
    :class:`UartComponent`.

    Members
    -------
    i : :py:`In(stream.Signature(8))`
        Bytes to send, one per transfer. ``i.ready`` is a function of the transmitter state
        only (high when idle and in the last cycle of a stop bit), never of ``i.valid``;
        ``i.payload`` is sampled at the transfer and need not be held after it.
    tx : :py:`Out(1, init=1)`
        The transmit pin, a register: high when idle and in reset, otherwise the frame bit,
        ``D`` cycles per bit, starting the cycle after the transfer.
    busy : :py:`Out(1)`
        High while a frame is on the line, from the cycle after the transfer to the last but
        one cycle of the stop bit; equal to :py:`~i.ready`.
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)
    busy: Out(1)

    def elaborate(self, platform) -> Module:
        m = Module()
        period = self.divisor

        timer = Signal(range(period))
        # Bits still to put on the line after the current one: 8 data bits and the stop bit.
        left = Signal(range(FRAME_BITS))
        shift = Signal(9)

        with m.FSM(name="tx") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [self.tx.eq(0), shift.eq(Cat(self.i.payload, 1)),
                                 left.eq(FRAME_BITS - 1), timer.eq(period - 1)]
                    m.next = "SEND"
            with m.State("SEND"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(left == 0):
                    # The stop bit (1) stays on the line while idle.
                    m.next = "IDLE"
                with m.Else():
                    # The stop bit's count ends a cycle early: i.ready is high in its last
                    # cycle, so a byte waiting on i starts its frame with no gap.
                    m.d.sync += [self.tx.eq(shift[0]), shift.eq(shift >> 1), left.eq(left - 1),
                                 timer.eq(Mux(left == 1, period - 2, period - 1))]

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
