"""The whole device behind two UART pins: receiver, frame engine, core, transmitter.

::

    rx pin --> UartRx --> FrameEngine --core_i--> Engine
                              |   ^ |                ^  |
                              |   | +--core_reset----+  |   (ResetInserter)
                              |   +-------core_o--------+
                              v
    tx pin <-- UartTx <-------+

The core is the layered engine (``hw/engine.py``), built for any network image (a single-layer
one as its layered instance, ``golden.layers.as_layered``). A RESET frame pulses the frame
engine's ``core_reset``, which resets the core (every register back to its initial value; the
core's memories need no clearing, as every image starts from rest),
so an abandoned image stops at once instead of running its remaining steps.

Board tops (``hw/boards.py``) add a clock, a reset and LEDs around it; the virtual board
(``sim/board.py``) exports it as ``lifpga_system`` and drives its pins from a TCP socket.
"""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden import device, layers, protocol
from golden.layers import LayeredNetwork
from golden.model import Network

from .engine import Engine
from .frame_engine import FrameEngine
from .uart import FRAME_BITS, UartRx, UartTx

__all__ = ["LifpgaSystem"]


class LifpgaSystem(wiring.Component):
    """A lifpga device for one network image.

    Parameters
    ----------
    net, manifest : a network image (:func:`golden.image.load_layers`, or a single-layer
        network of :func:`golden.image.load`).
    lanes : int
        ``P``, parallel neuron lanes of the core.
    clk_hz : int
        Frequency of the ``sync`` clock, Hz (reported by INFO; sets the baud divisor).
    baud : int
        UART bit rate.

    Attributes
    ----------
    core : hw.engine.Engine
    info : golden.protocol.Info
        What the device answers to INFO.
    divisor : int
        Clock cycles per UART bit.

    Members
    -------
    rx : :py:`In(1)`
        UART receive pin, idle high (asynchronous; synchronised inside).
    tx : :py:`Out(1, init=1)`
        UART transmit pin, idle high.
    busy : :py:`Out(1)`
        Work in flight: a request queued or computing, or an answer being sent.
    last_label : :py:`Out(4)`
        Low 4 bits of the last class answered OK (for LEDs).
    error : :py:`Out(1)`
        One-cycle pulse when an error answer starts.
    """

    def __init__(self, net: LayeredNetwork | Network, manifest: dict, *, lanes: int = 16,
                 clk_hz: int = 100_000_000, baud: int = 3_000_000):
        net = layers.as_layered(net)
        self.core = Engine(net, pixel_max=manifest["pixel_max"], lanes=lanes)
        self.uart_rx = UartRx(clk_hz=clk_hz, baud=baud)
        self.uart_tx = UartTx(clk_hz=clk_hz, baud=baud)
        self.divisor = self.uart_rx.divisor
        self.info = device.device_info(net, manifest, lanes=lanes, clock_hz=clk_hz, baud=baud)
        self.engine = FrameEngine(
            self.info, i_layout=self.core.i_layout, o_layout=self.core.o_layout,
            idle_timeout_cycles=protocol.IDLE_TIMEOUT_BYTES * FRAME_BITS * self.divisor)
        super().__init__({
            "rx": In(1),
            "tx": Out(1, init=1),
            "busy": Out(1),
            "last_label": Out(4),
            "error": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.uart_rx = self.uart_rx
        m.submodules.uart_tx = self.uart_tx
        m.submodules.engine = self.engine
        # A RESET abandons the image the core is computing: the core returns to rest.
        m.submodules.core = ResetInserter(self.engine.core_reset)(self.core)
        wiring.connect(m, self.uart_rx.o, self.engine.rx)
        wiring.connect(m, self.engine.tx, self.uart_tx.i)
        wiring.connect(m, self.engine.core_i, self.core.i)
        wiring.connect(m, self.core.o, self.engine.core_o)
        m.d.comb += [
            self.uart_rx.rx.eq(self.rx),
            self.tx.eq(self.uart_tx.tx),
            self.busy.eq(self.engine.busy | self.uart_tx.busy),
            self.last_label.eq(self.engine.last_label),
            self.error.eq(self.engine.error),
        ]
        return m
