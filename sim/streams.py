"""Stream driver, receiver and rule checker for Amaranth 0.5 simulator testbenches.

Every hardware unit test that drives or watches an :class:`amaranth.lib.stream.Interface`
(``payload``/``valid``/``ready``) uses these three instead of its own loop:

* :func:`send` offers payloads one after another, with optional seeded random idle cycles
  between them, holding ``valid`` and ``payload`` until each transfer;
* :func:`receive` takes a number of payloads (or until a predicate holds), with optional seeded
  random ``ready``-low stalls, and fails with :class:`StreamTimeout` after a cycle deadline
  instead of hanging the simulation; :func:`sink` does the same forever, as a background
  testbench;
* :func:`simulate` runs a design with a clock, a :class:`StreamMonitor` on every stream port
  (:func:`stream_ports`) and on any internal stream named, and the given testbenches;
* :class:`StreamMonitor` watches any stream (a port, or an internal stream between two
  stages), fails the test with :class:`StreamRuleError` when the data transfer rules of
  Amaranth's ``docs/stdlib/stream.rst`` are broken, and records every transfer with the clock
  edge at which it happened, for scoreboarding.

The rules checked (numbers as in ``stream.rst``):

1. a transfer happens at each clock edge where ``valid`` and ``ready`` are both high;
2. once ``valid`` is high, it stays high and ``payload`` stays unchanged until a transfer
   (checked by :class:`StreamMonitor` at every edge);
3. ``valid`` must not wait for ``ready``: :func:`receive` and :func:`sink` set ``ready`` low
   and high before every edge and fail when ``valid`` follows it.

Timing. Values are sampled *at* the clock edge with ``ctx.tick().sample(...)`` (after
``await ctx.tick()`` the registers have already moved on). Clock edges are numbered from 0, the
first edge of the simulation: :attr:`Transfer.cycle` is that number, the same in every monitor
of one simulation, so latencies between streams are differences of cycles.

Payloads are given and returned as plain Python values (:func:`plain`): an ``int`` for a plain
shape, a ``dict`` of field name to value for a :class:`~amaranth.lib.data.StructLayout`, a
``list`` for an :class:`~amaranth.lib.data.ArrayLayout`, nested as the layout is.

Example
-------
A FIFO checked end to end, with idle cycles on the way in and stalls on the way out::

    from amaranth.lib.fifo import SyncFIFOBuffered
    from sim.streams import receive, send, simulate

    dut = SyncFIFOBuffered(width=8, depth=4)
    data = list(range(50))
    got = []

    async def producer(ctx):
        await send(ctx, dut.w_stream, data, idle=0.3, seed=1)

    async def consumer(ctx):
        got.extend(await receive(ctx, dut.r_stream, len(data), stall=0.5, seed=2,
                                 deadline=1000))

    seen = simulate(dut, producer, consumer)  # monitors on w_stream and r_stream
    assert got == data == seen["w_stream"].payloads == seen["r_stream"].payloads

The same without :func:`simulate`: ``StreamMonitor(dut.w_stream, "w").attach(sim)`` on an
:class:`amaranth.sim.Simulator` of one's own, then ``sim.add_testbench(producer)`` and so on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from amaranth.hdl import Const, Shape
from amaranth.lib import data, wiring
from amaranth.lib.stream import Interface as StreamInterface
from amaranth.lib.stream import Signature as StreamSignature
from amaranth.sim import Simulator

__all__ = [
    "DEFAULT_DEADLINE", "StreamMonitor", "StreamRuleError", "StreamTimeout", "Transfer",
    "plain", "receive", "send", "simulate", "sink", "stream_ports",
]

#: Clock period :func:`simulate` uses, s (1 MHz: the tests count cycles, not seconds).
CLOCK_PERIOD = 1e-6

#: Clock cycles :func:`send` and :func:`receive` wait at most, unless told otherwise.
DEFAULT_DEADLINE = 100_000

#: ``stall`` argument: a probability per cycle, or ``stall(cycle) -> bool`` with ``cycle``
#: counted from the start of the call (``True`` holds ``ready`` low in that cycle).
Stall = float | Callable[[int], bool]


class StreamRuleError(AssertionError):
    """A stream broke a data transfer rule of ``stream.rst``."""


class StreamTimeout(AssertionError):
    """A :func:`send` or :func:`receive` did not finish within its cycle deadline."""


@dataclass(frozen=True)
class Transfer:
    """One transfer: the clock edge it happened at (from 0) and its payload (see :func:`plain`)."""

    cycle: int
    payload: Any


def plain(value: Any) -> Any:
    """A sampled payload as plain Python: ``int``, ``dict`` per struct, ``list`` per array.

    Enum members and other values that are not :class:`amaranth.lib.data.Const` are returned
    as they are.
    """
    if not isinstance(value, data.Const):
        return value
    layout = value.shape()
    if isinstance(layout, data.ArrayLayout):
        return [plain(value[n]) for n in range(layout.length)]
    return {name: plain(value[name]) for name, _ in layout}


def _is_const(signal) -> bool:
    return isinstance(signal, Const)


def _random_payload(stream, rng: np.random.Generator) -> int:
    """Random bits as wide as ``stream.payload``: the junk a producer shows while idle."""
    width = Shape.cast(stream.payload.shape()).width
    return int(rng.integers(0, 1 << width)) if width else 0


def _set_payload(ctx, stream, payload) -> None:
    if isinstance(payload, int) and isinstance(stream.payload, data.View):
        # Raw bits for a struct payload (junk while idle): bypass the layout.
        ctx.set(stream.payload.as_value(), payload)
    else:
        ctx.set(stream.payload, payload)


def _idle_cycles(idle: float | Sequence[int], index: int, rng: np.random.Generator) -> int:
    """Idle cycles before payload ``index``: drawn (each one with probability ``idle``) or given."""
    if isinstance(idle, (int, float)):
        if not 0 <= idle < 1:
            raise ValueError(f"idle is a probability in [0, 1), not {idle!r} (exact counts: a "
                             f"sequence)")
        count = 0
        while rng.random() < idle:
            count += 1
        return count
    return idle[index]


async def send(ctx, stream, payloads: Iterable[Any], *, idle: float | Sequence[int] = 0.0,
               seed: int | Sequence[int] = 0,
               junk: bool = False, on_cycle: Callable | None = None,
               deadline: int | None = DEFAULT_DEADLINE) -> None:
    """Offer ``payloads`` on ``stream``, one transfer each, as a producer that keeps the rules.

    Parameters
    ----------
    ctx : TestbenchContext
        The testbench's simulator context.
    stream : amaranth.lib.stream.Interface
        The stream to drive: this sets ``valid`` and ``payload`` and reads ``ready``.
    payloads : iterable
        An ``int`` (raw bits) or, for a struct payload, a ``dict`` of field values, per transfer.
    idle : float or sequence of int
        Probability, before each payload, of one more idle cycle (``valid`` low) first; or
        exactly ``idle[k]`` idle cycles before payload ``k``.
    seed : int or sequence of int
        Seed (:func:`numpy.random.default_rng`) of the random source for ``idle``, ``junk``
        and ``on_cycle``.
    junk : bool
        Put random bits on ``payload`` while idle (the consumer must ignore them).
    on_cycle : callable, optional
        ``on_cycle(ctx, index, rng)``, called before every clock edge with the index of the
        payload on offer, or ``None`` while idle: drives sideband signals that go with a payload.
    deadline : int or None
        Fail with :class:`StreamTimeout` after this many cycles in all (``None``: no limit).

    Returns once the last payload is transferred, with ``valid`` low again.
    """
    rng = np.random.default_rng(seed)
    cycles = 0

    async def tick(index):
        nonlocal cycles
        if deadline is not None and cycles >= deadline:
            raise StreamTimeout(f"send: payload {index} not taken within {deadline} cycles")
        if on_cycle is not None:
            on_cycle(ctx, index, rng)
        cycles += 1
        _, _, ready = await ctx.tick().sample(stream.ready)
        return ready

    for index, payload in enumerate(payloads):
        for _ in range(_idle_cycles(idle, index, rng)):
            ctx.set(stream.valid, 0)
            if junk:
                _set_payload(ctx, stream, _random_payload(stream, rng))
            await tick(None)
        ctx.set(stream.valid, 1)
        _set_payload(ctx, stream, payload)
        while not await tick(index):
            pass
    ctx.set(stream.valid, 0)


@dataclass
class _Ready:
    """``ready`` policy of :func:`receive` and :func:`sink`; checks rule 3 on every cycle."""

    stream: Any
    stall: Stall
    max_stall: int | None
    seed: int | Sequence[int]
    cycle: int = 0
    stalled_for: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def _wants_stall(self) -> bool:
        if callable(self.stall):
            return bool(self.stall(self.cycle))
        return bool(self.rng.random() < self.stall)

    def drive(self, ctx) -> int:
        """Set ``ready`` for the coming edge and return it; fail if ``valid`` follows it."""
        stream = self.stream
        stall = self._wants_stall()
        if self.max_stall is not None and self.stalled_for >= self.max_stall:
            stall = False
        self.stalled_for = self.stalled_for + 1 if stall else 0
        self.cycle += 1
        if _is_const(stream.ready):
            return 1
        if not _is_const(stream.valid):
            ctx.set(stream.ready, 0)
            valid_if_not_ready = ctx.get(stream.valid)
            ctx.set(stream.ready, 1)
            if ctx.get(stream.valid) != valid_if_not_ready:
                raise StreamRuleError(f"{stream!r}: valid follows ready (rule 3)")
        ctx.set(stream.ready, int(not stall))
        return int(not stall)


async def receive(ctx, stream, count: int | None = None, *, until: Callable | None = None,
                  stall: Stall = 0.0, max_stall: int | None = None,
                  seed: int | Sequence[int] = 0,
                  deadline: int | None = DEFAULT_DEADLINE) -> list:
    """Take payloads from ``stream`` as a consumer, with optional stalls; returns them.

    ``ctx`` is the testbench's simulator context, as for :func:`send`.

    Parameters
    ----------
    stream : amaranth.lib.stream.Interface
        The stream to consume: this sets ``ready`` and reads ``valid`` and ``payload``.
    count : int, optional
        Stop after this many payloads.
    until : callable, optional
        ``until(payload) -> bool``: stop after the first payload for which it is true.
    stall : float or callable
        Probability per cycle that ``ready`` is low, or ``stall(cycle) -> bool`` with ``cycle``
        counted from the start of this call.
    max_stall : int, optional
        At most this many ``ready``-low cycles in a row.
    seed : int or sequence of int
        Seed (:func:`numpy.random.default_rng`) of the random source for ``stall``.
    deadline : int or None
        Fail with :class:`StreamTimeout` after this many cycles (``None``: no limit).

    Returns
    -------
    list
        The payloads, as :func:`plain` values, in order. ``ready`` is low again on return.
    """
    if count is None and until is None:
        raise ValueError("receive needs count or until (a consumer forever is sink())")
    policy = _Ready(stream, stall, max_stall, seed)
    got = []
    while count is None or len(got) < count:
        if deadline is not None and policy.cycle >= deadline:
            raise StreamTimeout(f"receive: {len(got)} payloads in {deadline} cycles, "
                                f"expected {count if count is not None else 'until(...)'}")
        ready = policy.drive(ctx)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if valid and ready:
            got.append(plain(payload))
            if until is not None and until(got[-1]):
                break
    if not _is_const(stream.ready):
        ctx.set(stream.ready, 0)
    return got


async def sink(ctx, stream, *, stall: Stall = 0.0, max_stall: int | None = None,
               seed: int | Sequence[int] = 0) -> None:
    """Consume ``stream`` forever, as :func:`receive` does; add with ``background=True``.

    Watch what it takes with a :class:`StreamMonitor` on the same stream.
    """
    policy = _Ready(stream, stall, max_stall, seed)
    while True:
        policy.drive(ctx)
        await ctx.tick()


class StreamMonitor:
    """Checks the stream rules on one stream at every clock edge and records its transfers.

    It only reads the stream, so it can watch any stream, including one between two stages
    inside a design. Add it to a simulator with :meth:`attach` (a background testbench that
    runs from the first edge, so :attr:`Transfer.cycle` numbers edges from 0).

    Parameters
    ----------
    stream : amaranth.lib.stream.Interface
        The stream to watch.
    name : str
        Its name in failure messages.

    Attributes
    ----------
    transfers : list of Transfer
        Every transfer seen, in order.
    """

    def __init__(self, stream, name: str = "stream"):
        self.stream = stream
        self.name = name
        self.transfers: list[Transfer] = []

    @property
    def payloads(self) -> list:
        """The payloads of :attr:`transfers`, in order."""
        return [t.payload for t in self.transfers]

    @property
    def cycles(self) -> list[int]:
        """The clock edges of :attr:`transfers`, in order."""
        return [t.cycle for t in self.transfers]

    def attach(self, sim) -> StreamMonitor:
        """Add :meth:`run` to ``sim`` as a background testbench; returns ``self``."""
        sim.add_testbench(self.run, background=True)
        return self

    async def run(self, ctx) -> None:
        """The testbench: watch forever (rule 2), recording transfers (rule 1)."""
        stream = self.stream
        waiting = None  # payload offered and not taken at the previous edge
        cycle = 0
        while True:
            _, _, valid, ready, payload = await ctx.tick().sample(
                stream.valid, stream.ready, stream.payload)
            payload = plain(payload)
            if waiting is not None:
                if not valid:
                    raise StreamRuleError(
                        f"{self.name}: valid dropped at edge {cycle} before a transfer "
                        f"(rule 2); payload was {waiting!r}")
                if payload != waiting:
                    raise StreamRuleError(
                        f"{self.name}: payload changed at edge {cycle} before a transfer "
                        f"(rule 2): {waiting!r} -> {payload!r}")
            if valid and ready:
                self.transfers.append(Transfer(cycle, payload))
            waiting = payload if valid and not ready else None
            cycle += 1


def stream_ports(dut) -> dict[str, Any]:
    """Every stream port of ``dut``, by name.

    For a :class:`~amaranth.lib.wiring.Component`, the members of its signature that are
    streams, of both directions; for another elaboratable (e.g. an
    :mod:`amaranth.lib.fifo` FIFO, whose ``w_stream``/``r_stream`` are properties), its public
    attributes that are stream interfaces.
    """
    if isinstance(dut, wiring.Component):
        return {name: getattr(dut, name)
                for name, member in dut.signature.members.items()
                if member.is_signature and isinstance(member.signature, StreamSignature)}
    found = {}
    for name in dir(dut):
        if not name.startswith("_"):
            value = getattr(dut, name)
            if isinstance(value, (StreamInterface, wiring.FlippedInterface)) and isinstance(
                    wiring.flipped(value).signature, StreamSignature):
                found[name] = value
    return found


def simulate(dut, *testbenches: Callable, watch: dict[str, Any] | None = None,
             background: Iterable[Callable] = (), period: float = CLOCK_PERIOD,
             vcd: str | None = None) -> dict[str, StreamMonitor]:
    """Run ``dut`` with a ``sync`` clock and the stream rules checked; returns the monitors.

    Parameters
    ----------
    dut : Elaboratable
        The design under test.
    *testbenches : async callables
        ``async def tb(ctx)``, added as (critical) testbenches: the simulation ends when all
        have returned.
    watch : dict, optional
        Streams to monitor, by name; default :func:`stream_ports` of ``dut`` (every stream
        port). To add an internal stream: ``watch={**stream_ports(dut), "mid": dut.a.o}``.
    background : iterable of async callables
        Testbenches added with ``background=True`` (e.g. a :func:`sink`).
    period : float
        Clock period, s.
    vcd : str, optional
        Write the waveforms to this file.

    Returns
    -------
    dict of str to StreamMonitor
        One monitor per watched stream, with its :attr:`~StreamMonitor.transfers`.
    """
    if watch is None:
        watch = stream_ports(dut)
    sim = Simulator(dut)
    sim.add_clock(period)
    monitors = {name: StreamMonitor(s, name).attach(sim) for name, s in watch.items()}
    for tb in testbenches:
        sim.add_testbench(tb)
    for tb in background:
        sim.add_testbench(tb, background=True)
    if vcd is None:
        sim.run()
    else:
        with sim.write_vcd(vcd):
            sim.run()
    return monitors
