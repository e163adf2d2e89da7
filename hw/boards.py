"""Board tops: the lifpga system behind a PLL, a reset synchroniser, the UART pins and LEDs.

Clocking
--------
::

    board oscillator --> PLL (EHXPLLL on the ECP5, SB_PLL40_PAD on the iCE40) --> sync clock
                          | LOCK
                          v
    ~LOCK | reset button --> ResetSynchronizer --> sync reset (held until the PLL locks)

The PLL dividers come from :func:`ecp5_pll` and :func:`ice40_pll`, Python ports of the searches
of Project Trellis' ``ecppll`` and IceStorm's ``icepll`` (both ship as ``yowasp-ecppll`` and
``yowasp-icepll``; the tests compare with their outputs). The ``sync`` clock is constrained to
the frequency the PLL actually makes, which :class:`BoardTop` also hands to the system (its UART
divisor depends on it).

Pins
----
The system's ``rx``/``tx`` go to the board's USB-serial bridge (``uart`` resource 0). LEDs show
the last class in binary, ``busy`` (a request is in progress), the ``error`` pulse stretched to
:data:`ERROR_LED_S` so that it is visible, and a 1 Hz heartbeat that shows the bitstream is
running with a locked PLL. Which LED shows what is data, a table per board
(:attr:`Board.led_map`, :class:`Led`), and :attr:`Board.leds` describes it; pins held at a
constant are data too (:attr:`Board.tied`). What each board has is in :data:`BOARDS`.

Boards (:data:`BOARDS`; measured with the YoWASP tools, nextpnr 0.11.1)
------------------------------------------------------------------------
==========  ============  =======  =====  =====================  ===========================
``BOARD=``  FPGA          clock    lanes  image                  fits
==========  ============  =======  =====  =====================  ===========================
ulx3s       LFE5U-85F     100 MHz  16     firmware/digits        yes (also -12f, -25f, -45f)
ecpix5      LFE5UM5G-85F  100 MHz  16     firmware/digits        yes
ice40-hx8k  iCE40HX8K     48 MHz   1      firmware/digits-small  yes, 95 % of the LCs
icebreaker  iCE40UP5K     24 MHz   1      firmware/digits-small  no: 5,606 of 5,280 LCs
==========  ============  =======  =====  =====================  ===========================

The iCEBreaker is kept so that its refusal is explicit: the core's ``C`` readout
multiply-accumulators (32-bit scores) and the frame engine alone outgrow the UP5K, whatever the
lanes or the network size (``hw.bitstream.check_fit`` says so before synthesis).

The ULX3S needs one more pin: its ESP32 can reset and reprogram the FPGA through its GPIO0 line
(``esp32.gpio0`` in amaranth-boards, pin L2, ``wifi_gpio0`` in the ULX3S constraint files), so
the top drives it high, as every ULX3S design that does not use the ESP32 must.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
from amaranth.build import Attrs, Pins, Resource
from amaranth.hdl import ClockDomain, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from firmware import DIGITS_IMAGE, DIGITS_SMALL_IMAGE

__all__ = ["BOARDS", "Board", "BoardTop", "Ecp5Pll", "Ice40Pll", "Led", "LED_SOURCES",
           "TiedOutput", "describe_leds", "ecp5_pll", "ice40_pll", "led_table", "ERROR_LED_S"]

#: How long the error LED stays on after a one-cycle ``error`` pulse, seconds.
ERROR_LED_S = 0.1


# --- PLL solvers ----------------------------------------------------------------------------------

class Ecp5Pll(NamedTuple):
    """EHXPLLL configuration with CLKOP fed back (``FEEDBK_PATH="CLKOP"``).

    ``f_out = f_in * CLKFB_DIV / CLKI_DIV`` and ``f_vco = f_out * CLKOP_DIV``.
    """

    clki_div: int
    clkfb_div: int
    clkop_div: int
    clkop_cphase: int
    f_in_hz: int
    f_out_hz: Fraction
    f_vco_hz: Fraction


#: EHXPLLL limits (ECP5 sysCLOCK PLL design guide, TN1263), MHz, as ``ecppll`` uses them.
ECP5_PLL_LIMITS = {"input": (8.0, 400.0), "output": (10.0, 400.0), "pfd": (3.125, 400.0),
                   "vco": (400.0, 800.0)}


def ecp5_pll(f_in_hz: int, f_out_hz: int) -> Ecp5Pll:
    """EHXPLLL dividers for ``f_in_hz`` -> ``f_out_hz``, as ``ecppll -i IN -o OUT`` picks them.

    ``ecppll`` scans ``CLKI_DIV`` 1..128, ``CLKFB_DIV`` 1..80, ``CLKOP_DIV`` 1..128 in that
    order, keeps the PFD and the VCO (400-800 MHz) in range, and picks the smallest output error,
    then the VCO nearest 600 MHz, then the first found. It computes in single precision; so does
    this port, so that ``CLKOP_CPHASE`` (the primary shifted by half a period, truncated) comes
    out as ``ecppll``'s for every frequency.

    Parameters
    ----------
    f_in_hz, f_out_hz : int
        Reference and wanted output frequency, Hz.

    Returns
    -------
    Ecp5Pll
        The dividers, the phase and the exact output and VCO frequencies.

    Raises
    ------
    ValueError
        If a frequency is outside the PLL's range or no divider combination exists.
    """
    f32 = np.float32
    f_in, f_out = f32(f_in_hz / 1e6), f32(f_out_hz / 1e6)
    for name, value in (("input", f_in), ("output", f_out)):
        lo, hi = ECP5_PLL_LIMITS[name]
        if not lo <= value <= hi:
            raise ValueError(f"ECP5 PLL {name} frequency {value} MHz is outside {lo}-{hi} MHz")
    idiv, fbdiv, odiv = np.meshgrid(np.arange(1, 129), np.arange(1, 81), np.arange(1, 129),
                                    indexing="ij")
    idiv, fbdiv, odiv = (a.ravel().astype(f32) for a in (idiv, fbdiv, odiv))
    with np.errstate(all="ignore"):
        pfd = f_in / idiv
        vco = pfd * fbdiv * odiv
        out = vco / odiv
    lo_pfd, hi_pfd = ECP5_PLL_LIMITS["pfd"]
    lo_vco, hi_vco = ECP5_PLL_LIMITS["vco"]
    ok = (pfd >= lo_pfd) & (pfd <= hi_pfd) & (vco >= lo_vco) & (vco <= hi_vco)
    if not ok.any():
        raise ValueError(f"no EHXPLLL configuration makes {f_out_hz} Hz from {f_in_hz} Hz")
    err = np.abs(out - f_out)
    dist = np.abs(vco - f32(600))
    index = np.arange(err.size)
    best = np.lexsort((index[ok], dist[ok], err[ok]))[0]
    k = index[ok][best]
    i, fb, o = int(idiv[k]), int(fbdiv[k]), int(odiv[k])
    # ecppll: ns_phase = 1 / (fout * 1e6) * 0.5 (kept as a float), times fvco * 1e6 (double).
    ns_phase = f32(1.0 / (float(out[k]) * 1e6) * 0.5)
    cphase = int(float(ns_phase) * (float(vco[k]) * 1e6))
    exact_out = Fraction(f_in_hz) * fb / i
    return Ecp5Pll(i, fb, o, cphase, f_in_hz, exact_out, exact_out * o)


class Ice40Pll(NamedTuple):
    """SB_PLL40 configuration in SIMPLE feedback mode.

    ``f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)``.
    """

    divr: int
    divf: int
    divq: int
    filter_range: int
    f_in_hz: int
    f_out_hz: Fraction
    f_vco_hz: Fraction


def ice40_pll(f_in_hz: int, f_out_hz: int) -> Ice40Pll:
    """SB_PLL40 dividers for ``f_in_hz`` -> ``f_out_hz``, as ``icepll -i IN -o OUT`` picks them.

    ``icepll`` scans ``DIVR`` 0..15 (PFD 10-133 MHz), ``DIVF`` 0..127 (VCO 533-1066 MHz) and
    ``DIVQ`` 1..6, keeps the first configuration with the smallest output error, and sets
    ``FILTER_RANGE`` from the PFD frequency.

    Raises
    ------
    ValueError
        If the input is outside 10-133 MHz or no configuration exists.
    """
    f_in, f_out = f_in_hz / 1e6, f_out_hz / 1e6
    if not 10 <= f_in <= 133:
        raise ValueError(f"iCE40 PLL input {f_in} MHz is outside 10-133 MHz")
    best = None
    for divr in range(16):
        pfd = f_in / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                err = abs(vco / 2 ** divq - f_out)
                if best is None or err < best[0]:
                    best = (err, divr, divf, divq, pfd)
    if best is None:
        raise ValueError(f"no SB_PLL40 configuration makes {f_out_hz} Hz from {f_in_hz} Hz")
    _, divr, divf, divq, pfd = best
    filter_range = next(k for k, top in enumerate((17, 26, 44, 66, 101, float("inf")), 1)
                        if pfd < top)
    vco = Fraction(f_in_hz) * (divf + 1) / (divr + 1)
    return Ice40Pll(divr, divf, divq, filter_range, f_in_hz, vco / 2 ** divq, vco)


# --- boards ---------------------------------------------------------------------------------------

#: What an LED can show (:attr:`Led.source`): a bit of the last class, the 1 Hz heartbeat, a
#: request in progress, the stretched error pulse, or nothing (the pin is driven low).
LED_SOURCES = ("label", "heartbeat", "busy", "error", "off")
#: How :attr:`Board.leds` describes each source.
LED_MEANINGS = {"label": "last class (binary)", "heartbeat": "heartbeat", "busy": "busy",
                "error": f"error ({ERROR_LED_S * 1000:g} ms)"}
_COLOURS = {"r": "red", "g": "green", "b": "blue"}


@dataclass(frozen=True)
class Led:
    """One LED pin a board top drives.

    Attributes
    ----------
    resource : str
        The platform resource: ``"led"``, or ``"rgb_led"`` with :attr:`colour`.
    index : int
        The resource number.
    source : str
        What it shows, one of :data:`LED_SOURCES`.
    bit : int
        For ``"label"``: the bit of the class number (0 is the lowest).
    colour : str or None
        ``"r"``, ``"g"`` or ``"b"``: the subsignal of an RGB LED; ``None`` for a plain LED.
    """

    resource: str
    index: int
    source: str
    bit: int = 0
    colour: str | None = None

    def __post_init__(self):
        if self.source not in LED_SOURCES:
            raise ValueError(f"LED source {self.source!r} is not one of {LED_SOURCES}")

    @property
    def pin(self) -> str:
        """``led 4`` or ``rgb_led 1 blue``."""
        colour = f" {_COLOURS[self.colour]}" if self.colour else ""
        return f"{self.resource} {self.index}{colour}"


def led_table(resource: str, sources: Sequence[str], colour: str | None = None) -> tuple[Led, ...]:
    """LEDs ``resource`` 0, 1, ... showing ``sources``, in order; ``"label"`` entries take the
    class bits 0, 1, ... in order."""
    leds, bit = [], 0
    for index, source in enumerate(sources):
        leds.append(Led(resource, index, source, bit if source == "label" else 0, colour))
        bit += source == "label"
    return tuple(leds)


def describe_leds(leds: Sequence[Led]) -> str:
    """``led 0-3: last class (binary), led 4: heartbeat, ...``: what the lit LEDs show."""
    parts = []
    for source, meaning in LED_MEANINGS.items():
        shown = sorted((led for led in leds if led.source == source), key=lambda led: led.bit)
        if not shown:
            continue
        first, last = shown[0], shown[-1]
        run = (len(shown) > 1 and all(led.resource == first.resource
                                      and led.colour == first.colour
                                      and led.index == first.index + k
                                      for k, led in enumerate(shown)))
        if run:
            colour = f" {_COLOURS[first.colour]}" if first.colour else ""
            pins = f"{first.resource} {first.index}-{last.index}{colour}"
        else:
            pins = ", ".join(led.pin for led in shown)
        parts.append(f"{pins}: {meaning}")
    return ", ".join(parts)


@dataclass(frozen=True)
class TiedOutput:
    """A pin the top adds and holds at a constant: ``name`` 0 on ``pin`` with ``attrs``."""

    name: str
    pin: str
    attrs: tuple[tuple[str, str], ...]
    value: int


@dataclass(frozen=True)
class Board:
    """One supported board.

    Attributes
    ----------
    name : str
        The ``BOARD=`` name.
    platform : str
        ``module:Class`` of its amaranth-boards platform (imported when used).
    family : str
        ``"ecp5"`` or ``"ice40"``.
    device, package : str
        The FPGA, as nextpnr names it.
    osc_hz : int
        Board oscillator, Hz.
    clk_hz : int
        Target ``sync`` (core) clock, Hz; the PLL makes exactly this.
    baud : int
        UART rate: 3,000,000 where the USB-serial bridge supports it.
    lanes : int
        Default core lanes ``P`` for the board.
    luts, ffs, bram, dsp : int
        Resources: LUT4s, flip-flops, block RAMs (DP16KD of 18 kbit / SB_RAM40_4K of 4 kbit),
        multipliers (MULT18X18D / SB_MAC16).
    led_map : tuple of Led
        Every LED pin the top drives and what it shows (:attr:`leds` describes it).
    programmer : tuple of str
        openFPGALoader arguments before the bitstream.
    usb_ids : tuple of str
        ``vid:pid`` of the board's USB bridge (for a helpful "no board found").
    bitstream_ext : str
        ``"bit"`` (ECP5) or ``"bin"`` (iCE40).
    image : str
        The network image built for it by default.
    led_resources : str or None
        A platform attribute listing extra resources that hold some of the LEDs (the
        iCEBreaker's ``break_off_pmod``), added before they are requested.
    pll_at_pad : bool
        The PLL takes the oscillator's pad itself (``SB_PLL40_PAD``: the UP5K's PLL sits behind
        the oscillator's pin), instead of its buffered input.
    tied : tuple of TiedOutput
        Pins held at a constant (the ULX3S's ``wifi_gpio0``, see the module doc).
    """

    name: str
    platform: str
    family: str
    device: str
    package: str
    osc_hz: int
    clk_hz: int
    baud: int
    lanes: int
    luts: int
    ffs: int
    bram: int
    dsp: int
    led_map: tuple[Led, ...]
    programmer: tuple[str, ...]
    usb_ids: tuple[str, ...]
    bitstream_ext: str
    image: str = str(DIGITS_IMAGE)
    led_resources: str | None = None
    pll_at_pad: bool = False
    tied: tuple[TiedOutput, ...] = ()

    @property
    def led_count(self) -> int:
        """LED pins the top drives (an RGB LED counts as three)."""
        return len(self.led_map)

    @property
    def leds(self) -> str:
        """What the LEDs show, from :attr:`led_map`."""
        return describe_leds(self.led_map)

    def make_platform(self):
        """An instance of the board's amaranth-boards platform."""
        import importlib

        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)()


#: led 0-3: last class (binary), led 4: heartbeat, led 5 off, led 6: busy, led 7: error.
_EIGHT_LEDS = led_table("led", ("label",) * 4 + ("heartbeat", "off", "busy", "error"))
#: The ECPIX-5's four RGB LEDs: green shows the class, red 0 the error, blue 1 busy and blue 3
#: the heartbeat; the other colours are off.
_ECPIX5_LEDS = (led_table("rgb_led", ("error", "off", "off", "off"), "r")
                + led_table("rgb_led", ("label",) * 4, "g")
                + led_table("rgb_led", ("off", "busy", "off", "heartbeat"), "b"))
#: The iCEBreaker: red led 0 the error, green led 1 busy, the break-off PMOD's led 2-5 the
#: class and led 6 the heartbeat.
_ICEBREAKER_LEDS = led_table("led", ("error", "busy") + ("label",) * 4 + ("heartbeat",))
_ECP5_DIE = {  # LUT4 (= FF), DP16KD, MULT18X18D of each LFE5U die (the 12F is a 25F die).
    "12F": (24288, 56, 28), "25F": (24288, 56, 28), "45F": (43848, 108, 72),
    "85F": (83640, 208, 156)}
#: The ULX3S's ESP32 GPIO0, held high so that the ESP32 leaves the FPGA alone.
_ULX3S_WIFI_GPIO0 = TiedOutput("wifi_gpio0", "L2", (("IO_TYPE", "LVCMOS33"), ("DRIVE", "4")), 1)


def _ulx3s(size: str) -> Board:
    luts, bram, dsp = _ECP5_DIE[size]
    return Board(
        name="ulx3s" if size == "85F" else f"ulx3s-{size.lower()}",
        platform=f"amaranth_boards.ulx3s:ULX3S_{size}_Platform", family="ecp5",
        device=f"LFE5U-{size}", package="CABGA381", osc_hz=25_000_000, clk_hz=100_000_000,
        # The FT231X does 3 Mbaud.
        baud=3_000_000, lanes=16, luts=luts, ffs=luts, bram=bram, dsp=dsp,
        led_map=_EIGHT_LEDS, programmer=("-b", "ulx3s", "-m"), usb_ids=("0403:6015",),
        bitstream_ext="bit", tied=(_ULX3S_WIFI_GPIO0,))


def _ice40(name: str, platform: str, device: str, package: str, *, luts: int,
           **rest: Any) -> Board:
    """An iCE40 board with a 12 MHz oscillator and an FT2232H, whose channel B does up to
    12 Mbaud; one lane and the 64-neuron image by default."""
    return Board(name=name, platform=platform, family="ice40", device=device, package=package,
                 osc_hz=12_000_000, baud=3_000_000, lanes=1, luts=luts, ffs=luts,
                 usb_ids=("0403:6010",), bitstream_ext="bin", image=str(DIGITS_SMALL_IMAGE),
                 **rest)


#: Every supported board, by ``BOARD=`` name. ``ulx3s`` is the 85F.
BOARDS: dict[str, Board] = {b.name: b for b in (
    _ulx3s("85F"), _ulx3s("12F"), _ulx3s("25F"), _ulx3s("45F"),
    Board(
        name="ecpix5", platform="amaranth_boards.ecpix5:ECPIX585Platform", family="ecp5",
        device="LFE5UM5G-85F", package="CABGA554", osc_hz=100_000_000, clk_hz=100_000_000,
        # FT2232H channel B: up to 12 Mbaud.
        baud=3_000_000, lanes=16, luts=83640, ffs=83640, bram=208, dsp=156,
        led_map=_ECPIX5_LEDS, programmer=("-b", "ecpix5", "-m"), usb_ids=("0403:6010",),
        bitstream_ext="bit"),
    _ice40(
        "icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "iCE40UP5K", "SG48",
        # 24 MHz / 3 Mbaud = 8 cycles per bit, exact.
        clk_hz=24_000_000, luts=5280, bram=30, dsp=8, led_map=_ICEBREAKER_LEDS,
        programmer=("-b", "icebreaker"), led_resources="break_off_pmod", pll_at_pad=True),
    _ice40(
        "ice40-hx8k", "amaranth_boards.ice40_hx8k_b_evn:ICE40HX8KBEVNPlatform", "iCE40HX8K",
        # 48 MHz / 3 Mbaud = 16 cycles per bit.
        "CT256", clk_hz=48_000_000, luts=7680, bram=32, dsp=0, led_map=_EIGHT_LEDS,
        programmer=("-b", "ice40_generic")),
)}


def _buffer(m: Module, direction: str, port) -> Signal:
    """An I/O buffer on ``port``: its input (``"i"``) or the output to drive (``"o"``)."""
    buffer = io.Buffer(direction, port)
    m.submodules += buffer
    return buffer.i if direction == "i" else buffer.o


# --- the top --------------------------------------------------------------------------------------

def _system_class():
    from hw.system import LifpgaSystem

    return LifpgaSystem


class BoardTop(Elaboratable):
    """A board's top level: PLL, reset, :class:`hw.system.LifpgaSystem`, UART pins and LEDs.

    Parameters
    ----------
    board : Board
        The board (an entry of :data:`BOARDS`).
    net : golden.layers.LayeredNetwork or golden.model.Network
        The network image.
    manifest : dict
        Its manifest.
    lanes : int
        Core lanes ``P``.
    clk_hz : int, optional
        ``sync`` clock; defaults to the board's. The PLL must make it exactly.
    system : callable, optional
        Builds the system: ``system(net, manifest, lanes=, clk_hz=, baud=)``; defaults to
        :class:`hw.system.LifpgaSystem`. It must be a component in ``sync`` with the ports
        ``rx``, ``tx``, ``busy``, ``last_label`` and ``error``.

    Attributes
    ----------
    pll : Ecp5Pll or Ice40Pll
        The PLL configuration.
    clk_hz : int
        The ``sync`` frequency, Hz.
    """

    def __init__(self, board: Board, net, manifest: dict[str, Any], *, lanes: int,
                 clk_hz: int | None = None, system: Callable | None = None):
        self.board = board
        self.net, self.manifest, self.lanes = net, manifest, lanes
        self.clk_hz = int(clk_hz or board.clk_hz)
        solve = ecp5_pll if board.family == "ecp5" else ice40_pll
        self.pll = solve(board.osc_hz, self.clk_hz)
        if self.pll.f_out_hz != self.clk_hz:
            raise ValueError(
                f"{board.name}: the PLL cannot make exactly {self.clk_hz} Hz from "
                f"{board.osc_hz} Hz (nearest {float(self.pll.f_out_hz):.0f} Hz); "
                f"choose a clock it can make, e.g. {float(self.pll.f_out_hz) / 1e6:g} MHz")
        self.system = system or _system_class()

    def elaborate(self, platform) -> Module:
        m = Module()
        board = self.board
        self._clock_and_reset(m, platform)
        m.submodules.system = system = self.system(
            self.net, self.manifest, lanes=self.lanes, clk_hz=self.clk_hz, baud=board.baud)
        uart = platform.request("uart", 0, dir="-")
        m.d.comb += [system.rx.eq(_buffer(m, "i", uart.rx)),
                     _buffer(m, "o", uart.tx).eq(system.tx)]
        shown = {"busy": system.busy, "error": self._error_led(m, system.error),
                 "heartbeat": self._heartbeat(m), "off": Const(0)}
        if board.led_resources:
            platform.add_resources(getattr(platform, board.led_resources))
        ports = {}  # an RGB LED is one resource of three pins
        for led in board.led_map:
            key = (led.resource, led.index)
            if key not in ports:
                ports[key] = platform.request(led.resource, led.index, dir="-")
            port = ports[key]
            pin = _buffer(m, "o", getattr(port, led.colour) if led.colour else port)
            value = system.last_label[led.bit] if led.source == "label" else shown[led.source]
            m.d.comb += pin.eq(value)
        for tied in board.tied:
            platform.add_resources([Resource(tied.name, 0, Pins(tied.pin, dir="o"),
                                             Attrs(**dict(tied.attrs)))])
            m.d.comb += _buffer(m, "o", platform.request(tied.name, 0, dir="-")).eq(tied.value)
        return m

    def _clock_and_reset(self, m: Module, platform) -> None:
        """The ``sync`` domain: the PLL's output, held in reset until it locks."""
        m.domains.sync = cd_sync = ClockDomain("sync")
        locked = Signal()
        osc = platform.request(platform.default_clk, dir="-")
        if self.board.family == "ecp5":
            m.submodules.pll = self._ehxplll(_buffer(m, "i", osc), cd_sync.clk, locked)
        elif self.board.pll_at_pad:
            m.submodules.pll = self._sb_pll40(osc.io, cd_sync.clk, locked, pad=True)
        else:
            m.submodules.pll = self._sb_pll40(_buffer(m, "i", osc), cd_sync.clk, locked,
                                              pad=False)
        # No constraint is added for the PLL output: nextpnr derives it from the oscillator's
        # and the PLL's parameters, exactly clk_hz.
        reset_request = ~locked
        if platform.default_rst is not None:
            reset_request = reset_request | _buffer(
                m, "i", platform.request(platform.default_rst, dir="-"))
        m.submodules.reset_sync = ResetSynchronizer(reset_request, domain="sync")

    def _error_led(self, m: Module, error) -> Signal:
        """The one-cycle ``error`` pulse stretched to :data:`ERROR_LED_S`, so it is visible."""
        error_cycles = int(self.clk_hz * ERROR_LED_S)
        error_timer = Signal(range(error_cycles + 1))
        with m.If(error):
            m.d.sync += error_timer.eq(error_cycles)
        with m.Elif(error_timer != 0):
            m.d.sync += error_timer.eq(error_timer - 1)
        return error_timer != 0

    def _heartbeat(self, m: Module) -> Signal:
        """A 1 Hz square wave."""
        half_second = self.clk_hz // 2
        beat_timer = Signal(range(half_second))
        heartbeat = Signal()
        with m.If(beat_timer == half_second - 1):
            m.d.sync += [beat_timer.eq(0), heartbeat.eq(~heartbeat)]
        with m.Else():
            m.d.sync += beat_timer.eq(beat_timer + 1)
        return heartbeat

    def _ehxplll(self, clk_in, clk_out, locked) -> Instance:
        pll = self.pll
        return Instance(
            "EHXPLLL",
            # The attributes ecppll writes: the frequencies for nextpnr's timing analysis and
            # the loop filter settings Lattice's tools use.
            a_FREQUENCY_PIN_CLKI=f"{pll.f_in_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{float(pll.f_out_hz) / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=pll.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=pll.clkop_div,
            p_CLKOP_CPHASE=pll.clkop_cphase, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=pll.clkfb_div,
            i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk_in, o_CLKOP=clk_out, i_CLKFB=clk_out,
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
            i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0), o_LOCK=locked)

    def _sb_pll40(self, clk_in, clk_out, locked, *, pad: bool) -> Instance:
        pll = self.pll
        return Instance(
            "SB_PLL40_PAD" if pad else "SB_PLL40_CORE",
            p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
            p_DIVR=pll.divr, p_DIVF=pll.divf, p_DIVQ=pll.divq, p_FILTER_RANGE=pll.filter_range,
            **{"i_PACKAGEPIN" if pad else "i_REFERENCECLK": clk_in},
            o_PLLOUTGLOBAL=clk_out, o_LOCK=locked, i_RESETB=Const(1), i_BYPASS=Const(0))

