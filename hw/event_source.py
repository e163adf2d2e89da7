"""The event source of the engine's synaptic stage: a run of passes over the layer's inputs.

For a layer of ``G`` target groups the synaptic stage (``hw/synapse.py``) makes ``G`` passes, and
every pass accumulates the weights of every *event*: an input that is nonzero (an entry of the
pixel list, written by the input encoder) or a neuron that spiked (a bit of an entry of a spike
list, written by ``hw/spike_lister.py``). A run of this core is those ``G`` passes::

    for g in 0 .. G-1:                                    the pass of target group g
        for e in spk[a_base .. a_base + a_count - 1]:     segment A, the layer's own spikes
            for p in set bits of e.word, lowest first:    (recurrent weights)
                event(group=g, j=e.group * P + p, x=1, rec=1)
        if b_pixels:                                      segment B, the layer's input
            for e in pix[0 .. b_count - 1]:
                event(group=g, j=e.j, x=e.x, rec=0)
        else:
            for e in spk[b_base .. b_base + b_count - 1]:
                for p in set bits of e.word, lowest first:
                    event(group=g, j=e.group * P + p, x=1, rec=0)
        if the pass had no event:
            event(group=g, j=0, x=0, rec=0)               the empty event: W * 0 adds nothing

``first`` is set on a pass's first event and ``last`` on its last (both on an empty event), so
the synaptic stage starts each sum from the bias and ends it without counting anything.

Spike-list words must be nonzero (the lister writes only groups that spiked). A zero word would
need the next entry's *contents* to decide whether the event before it is its pass's ``last``:
at :attr:`EventSource.START_LATENCY` 2 that entry is still on the memory's output, not in a
register, and a run of zero words costs a cycle each, so neither the timing below nor a short
path could hold. The core therefore does not skip one: a zero word gives one event with
``j = group * P`` and ``x = 0``, which adds nothing to any sum and keeps ``first``/``last``
right (documented and tested, but never produced by the engine).

Data flow
---------
::

    start, passes, a_*, b_* --> run parameters (latched; the ports themselves during start)
                                      |
        fetcher: the next entry ------+--> addr, en --> pix_mem / spk_mem (the engine's;
        (pass g, segment, address,                          |   data one cycle later)
         entries left, ends-segment)                        v
                       D: the fetched entry on the memory's output (held while en is low),
                          and its pass, segment, first/last of pass and run in registers
                            |                   |
                            |                   v
                            |      N: the next entry, a register copy of D
                            v                   |
                       C: the current entry (registers, loaded from N, else from D as read):
                          word --[ lowest set bit ]--> o (the event); word & (word - 1)

The fetcher walks the run's entries in order, wrapping to segment A's first entry (or B's) for
every target group, and issues a read whenever D and N are not both full: a decision from
registers alone, so the block RAMs' enables and addresses never wait for ``o.ready`` or for C's
word. A memory's read port holds its data while ``en`` is low, so its output *is* slot D. An
entry leaves D as soon as it can, for C when C is free and N empty, else for an empty N; C
takes N (or D) when it is empty or its entry's last event is being transferred. D, N and C hold
the memories' outputs exactly as read (no logic before the first register on the block RAM's
slow output, only a multiplexer whose select is the register ``n_valid``), and the next entry
is always in D or N when the current one ends: one event per cycle across entry, segment and
pass boundaries, whatever the mix of pixel entries, one-bit and many-bit words.

Pixel read-ahead
----------------
A pixel list in block RAM (784 entries of 19 bits for MNIST) has a slow output: 5.8 ns from
the clock on the ECP5, then the route to C's and N's registers, held the 784-512-256-10 engine
at 88.6 MHz. With ``pixel_ahead`` the pixel memory is read one fetch ahead and slot D's pixel
entry is a register next to it: the pixel fetches of a run read entries ``0 .. b_count - 1``
for every pass, so the entry after a fetch of ``a`` is known then (``a + 1``, or 0 after B's
last), and the memory reads it in the same cycle (``pix_addr``; a register ``pix_ahead``
keeps it, 0 between runs, and the memory reads it in every cycle without a pixel fetch). At a
fetch of ``a`` the memory's output is therefore entry ``a``, and D's register takes it: the
same entry in D in the same cycle as without read-ahead, so the events and the timing below
are unchanged. The list is read in every cycle, a cycle early: it must not be written in the
cycle before ``start`` or during the run (without read-ahead, from ``start`` on), and the
first ``start`` must not be in the first cycle after reset. The engine's
last write is at least two cycles before ``start`` (``hw/sequencer.py``: DRAW waits for
``drawn``, LAYER registers the start, SYN_START gives it).

Timing
------
``start`` in cycle ``n`` (the parameters valid in that cycle; not while ``busy``):

* cycle ``n``: the first entry's address goes to its memory straight from the ports;
* cycle ``n + 1``: it is on the memory's output (slot D), and the second entry is read;
* cycle ``n + 2`` = ``n + START_LATENCY``: it is in C, and the first event is on ``o``;
* with ``o.ready`` high, one event in every cycle after that, ``E = sum over passes of
  max(1, events of the pass)`` in all, the last in cycle ``n + 1 + E``;
* ``busy`` is high from cycle ``n + 1`` through the cycle of the last event's transfer, and
  low from cycle ``n + 2 + E``: a run takes ``START_LATENCY + E`` cycles, and the next
  ``start`` may come in the first cycle ``busy`` is low.

``o`` keeps the stream rules under any ``o.ready``: ``o.valid`` is the register "C holds an
entry" and never depends on ``o.ready``; the payload depends only on C's registers, which
do not move while an event is offered and not taken.

Combinational depth (the 100 MHz ECP5 path): the memories' outputs go only into registers;
the fetcher's address and enables are registers and a few gates (during ``start``, a
multiplexer from the ports, whose successor entry is computed straight from the ports:
``count - 2``, ``base + 1``, ``count == 2``, never two carry chains in a row). ``o``'s payload
is C's registers except ``j`` and ``last``: ``j`` is the lowest set bit of C's word
(``word & ~(word - 1)``, one P-bit carry chain, then an OR tree per bit of ``p``) joined to the
source group; ``last``, and C's next state, use ``word & (word - 1) == 0`` from the same carry
chain. For ``P`` a power of two, ``j = Cat(p, group)``: no logic. For ``P = 2**s * q`` with
``q > 1`` odd (``P = 12 = 4 * 3``), ``j = Cat(p[:s], group * q + (p >> s))``, ``group * q``
as shifts and adds of the constant's set bits (no multiplier; for 12, ``g + (g << 1)`` and the
add of ``p >> 2``, both ``group_bits + 2`` bits wide). A product registered ahead of C would
cost a cycle at ``start``: the first entry's group is in a register only from cycle
``n + 2``, the cycle its first event must be on ``o``. ``j`` is truncated to ``index_bits``;
the neurons of a padding group never spike, so a real event always fits.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .spike_lister import spike_entry

__all__ = ["EventSource", "event_layout", "pixel_entry", "spike_entry"]


def pixel_entry(index_bits: int, x_bits: int) -> data.StructLayout:
    """An entry of the pixel list: input ``j`` (low bits) and its nonzero value ``x``."""
    return data.StructLayout({"j": unsigned(index_bits), "x": unsigned(x_bits)})


def event_layout(group_bits: int, index_bits: int, x_bits: int) -> data.StructLayout:
    """An event of a pass: target ``group``, input ``j``, value ``x``, ``rec``, ``first``,
    ``last`` (``group`` in the low bits)."""
    return data.StructLayout({"group": unsigned(group_bits), "j": unsigned(index_bits),
                              "x": unsigned(x_bits), "rec": unsigned(1), "first": unsigned(1),
                              "last": unsigned(1)})


class EventSource(wiring.Component):
    """The events of a run's ``G`` passes, from the pixel list and the spike lists.

    See the module documentation for the order of events, the data flow and the timing.

    Parameters
    ----------
    lanes : int
        ``P``, neurons per group: bits of a spike-list word. Any ``P >= 1``.
    index_bits : int
        Width of an input index ``j`` (pixel entries and events).
    x_bits : int
        Width of a value ``x`` (pixel entries and events).
    group_bits : int
        Width of a group number, source (spike entries) and target (events): up to
        ``2**group_bits`` passes.
    pixel_depth, spike_depth : int
        Entries of the pixel memory and of the spike memory.
    pixel_ahead : bool
        Read the pixel memory a cycle ahead into a register (see *Pixel read-ahead* in the
        module documentation): for a pixel list in block RAM. Same events, same cycles.

    Attributes
    ----------
    lanes, index_bits, x_bits, group_bits, pixel_depth, spike_depth : int
        As given.
    pixel_ahead : bool
        As given.
    pixel_entry : data.StructLayout
        The pixel memory's entry (:func:`pixel_entry`): ``j``, ``x``.
    spike_entry : data.StructLayout
        The spike memory's entry (:func:`hw.spike_lister.spike_entry`): ``group``
        (``group_bits``), ``word`` (``P`` bits; bit ``p`` is neuron ``group * P + p``).
    event : data.StructLayout
        The payload of ``o`` (:func:`event_layout`).
    START_LATENCY : int
        Cycles from ``start`` to the first event on ``o``: 2.

    Members
    -------
    start : :py:`In(1)`
        A one-cycle pulse that starts a run; the parameters below are sampled in that cycle
        only. Not allowed while ``busy`` (the run in progress would be corrupted).
    passes : :py:`In(range(2**group_bits + 1))`
        ``G``, passes of the run, ``1 .. 2**group_bits`` (target groups ``0 .. G-1``; 0 is not
        allowed, and would run ``2**group_bits`` passes).
    a_base : :py:`In(range(spike_depth))`, a_count : :py:`In(range(spike_depth + 1))`
        Segment A: spike-list entries ``a_base .. a_base + a_count - 1`` (``rec = 1``); none if
        ``a_count`` is 0.
    b_pixels : :py:`In(1)`
        Segment B is the pixel list (1) or a spike list (0).
    b_base : :py:`In(range(spike_depth))`
        Segment B's first spike-list entry (ignored for the pixel list, which starts at 0).
    b_count : :py:`In(range(max(pixel_depth, spike_depth) + 1))`
        Entries of segment B (may be 0).
    busy : :py:`Out(1)`
        High from the cycle after ``start`` through the cycle in which the run's last event is
        transferred.
    pix_addr : :py:`Out(range(pixel_depth))`, pix_en : :py:`Out(1)`
        The pixel memory's synchronous read port: address and enable (data the cycle after;
        held while ``pix_en`` is low). With ``pixel_ahead``, ``pix_en`` is always high and
        ``pix_addr`` the next pixel entry the run will fetch.
    pix_data : :py:`In(pixel_entry)`
        That port's data.
    spk_addr : :py:`Out(range(spike_depth))`, spk_en : :py:`Out(1)`
        The spike memory's read port, the same way.
    spk_data : :py:`In(spike_entry)`
        That port's data.
    o : :py:`Out(stream.Signature(event))`
        The events, in run order. ``group`` is the pass's target group; ``j`` and ``x`` the
        input and its value (a spike: ``source group * P + p`` and 1); ``rec`` is 1 for segment
        A; ``first``/``last`` mark a pass's first and last event. ``o.valid`` is a register;
        with ``o.ready`` high there is one event per cycle from ``START_LATENCY`` cycles after
        ``start`` to the run's last.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is below 1.
    """

    START_LATENCY = 2

    def __init__(self, *, lanes: int, index_bits: int, x_bits: int, group_bits: int,
                 pixel_depth: int, spike_depth: int, pixel_ahead: bool = False):
        params = {"lanes": lanes, "index_bits": index_bits, "x_bits": x_bits,
                  "group_bits": group_bits, "pixel_depth": pixel_depth,
                  "spike_depth": spike_depth}
        for name, value in params.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if not isinstance(pixel_ahead, bool):
            raise TypeError(f"pixel_ahead must be a bool, not {pixel_ahead!r}")
        self.pixel_ahead = pixel_ahead
        self.lanes, self.index_bits, self.x_bits = lanes, index_bits, x_bits
        self.group_bits, self.pixel_depth, self.spike_depth = group_bits, pixel_depth, spike_depth
        self.pixel_entry = pixel_entry(index_bits, x_bits)
        self.spike_entry = spike_entry(group_bits, lanes)
        self.event = event_layout(group_bits, index_bits, x_bits)
        self._depth = max(pixel_depth, spike_depth)
        super().__init__({
            "start": In(1),
            "passes": In(range(2 ** group_bits + 1)),
            "a_base": In(range(max(2, spike_depth))),
            "a_count": In(range(spike_depth + 1)),
            "b_pixels": In(1),
            "b_base": In(range(max(2, spike_depth))),
            "b_count": In(range(self._depth + 1)),
            "busy": Out(1),
            "pix_addr": Out(range(max(2, pixel_depth))),
            "pix_en": Out(1),
            "pix_data": In(self.pixel_entry),
            "spk_addr": Out(range(max(2, spike_depth))),
            "spk_en": Out(1),
            "spk_data": In(self.spike_entry),
            "o": Out(stream.Signature(self.event)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        addr_shape = range(max(2, self._depth))  # an address, or entries left after one
        start = self.start

        # --- the run's parameters: latched at start; `now` is their value in this cycle, the
        # ports' own during start (the run's first read goes out in that cycle)
        def param(name, value, shape):
            reg = Signal(shape, name=f"run_{name}")
            now = Signal(shape, name=f"{name}_now")
            with m.If(start):
                m.d.sync += reg.eq(value)
            m.d.comb += now.eq(Mux(start, value, reg))
            return reg, now

        a_count, b_count = self.a_count, self.b_count
        last_g, _ = param("last_group", self.passes - 1, self.group_bits)
        _, a_nz = param("a_nonempty", a_count != 0, 1)
        _, a_base = param("a_base", self.a_base, addr_shape)
        _, a_left0 = param("a_left0", a_count - 1, addr_shape)
        _, a_last0 = param("a_single", a_count == 1, 1)
        _, b_nz = param("b_nonempty", b_count != 0, 1)
        _, b_pixels = param("b_pixels", self.b_pixels, 1)
        _, b_addr0 = param("b_addr0", Mux(self.b_pixels, 0, self.b_base), addr_shape)
        _, b_left0 = param("b_left0", b_count - 1, addr_shape)
        _, b_last0 = param("b_single", b_count == 1, 1)
        # a pass's first entry: A's first, else B's, else the empty event (in "segment B")
        ps_seg_b, ps_empty = ~a_nz, ~a_nz & ~b_nz
        ps_addr, ps_left = Mux(a_nz, a_base, b_addr0), Mux(a_nz, a_left0, b_left0)
        ps_last = Mux(a_nz, a_last0, ~b_nz | b_last0)

        d_valid, n_valid = Signal(name="d_valid"), Signal(name="n_valid")
        c_valid, c_done = Signal(name="c_valid"), Signal(name="c_done")

        # --- the fetcher: the next entry to read, its successor, and whether it ends its
        # segment, pass or run. During start it is the run's first entry, and its successor
        # comes straight from the ports (``count - 2``, ``base + 1``, ``count == 2``) so that
        # no port passes through two carry chains.
        f_more, f_g = Signal(name="f_more"), Signal(self.group_bits, name="f_group")
        f_seg_b, f_empty = Signal(name="f_seg_b"), Signal(name="f_empty")
        f_addr, f_left = Signal(addr_shape, name="f_addr"), Signal(addr_shape, name="f_left")
        f_seg_last, f_first = Signal(name="f_seg_last"), Signal(name="f_first")
        a_port = a_count != 0
        first_addr = Signal(addr_shape, name="first_addr")
        m.d.comb += first_addr.eq(Mux(a_port, self.a_base, Mux(self.b_pixels, 0, self.b_base)))
        s = {}
        for name, shape, at_start, running in (
                ("more", 1, 1, f_more),
                ("group", self.group_bits, 0, f_g),
                ("seg_b", 1, ps_seg_b, f_seg_b),
                ("empty", 1, ps_empty, f_empty),
                ("first", 1, 1, f_first),
                ("addr", addr_shape, first_addr, f_addr),
                ("seg_last", 1, ps_last, f_seg_last),
                ("last_pass", 1, self.passes == 1, f_g == last_g),
                ("addr_next", addr_shape,
                 Mux(a_port, self.a_base + 1, Mux(self.b_pixels, 1, self.b_base + 1)),
                 f_addr + 1),
                ("left_next", addr_shape, Mux(a_port, a_count - 2, b_count - 2), f_left - 1),
                ("last_next", 1, Mux(a_port, a_count == 2, b_count == 2), f_left == 1)):
            s[name] = Signal(shape, name=f"s_{name}")
            m.d.comb += s[name].eq(Mux(start, at_start, running))
        to_b = ~s["seg_b"] & b_nz  # an empty entry is in "segment B": never followed by B
        pass_final = Signal(name="s_pass_final")
        run_final = Signal(name="s_run_final")
        m.d.comb += [pass_final.eq(s["seg_last"] & ~to_b),
                     run_final.eq(pass_final & s["last_pass"])]
        s_pixel = ~s["empty"] & s["seg_b"] & b_pixels
        fetch = Signal(name="fetch")
        m.d.comb += [
            # registers only: a read whenever D and N are not both full (one of them may be
            # about to fill), so no slot can overflow and the block RAM enables stay short
            fetch.eq(s["more"] & ~(d_valid & n_valid)),
            self.spk_addr.eq(s["addr"]), self.spk_en.eq(fetch & ~s["empty"] & ~s_pixel),
        ]
        pix = self._pixel_read(m, fetch & s_pixel, s["addr"],
                               Mux(s["seg_last"], 0, s["addr_next"]))
        with m.If(fetch):
            with m.If(~s["seg_last"]):
                m.d.sync += [f_more.eq(1), f_g.eq(s["group"]), f_seg_b.eq(s["seg_b"]),
                             f_empty.eq(0), f_addr.eq(s["addr_next"]),
                             f_left.eq(s["left_next"]), f_seg_last.eq(s["last_next"]),
                             f_first.eq(0)]
            with m.Elif(to_b):
                m.d.sync += [f_more.eq(1), f_g.eq(s["group"]), f_seg_b.eq(1), f_empty.eq(0),
                             f_addr.eq(b_addr0), f_left.eq(b_left0), f_seg_last.eq(b_last0),
                             f_first.eq(0)]
            with m.Elif(~s["last_pass"]):
                m.d.sync += [f_more.eq(1), f_g.eq(s["group"] + 1), f_seg_b.eq(ps_seg_b),
                             f_empty.eq(ps_empty), f_addr.eq(ps_addr), f_left.eq(ps_left),
                             f_seg_last.eq(ps_last), f_first.eq(1)]
            with m.Else():
                m.d.sync += f_more.eq(0)

        # --- the slots: D (the fetched entry, on its memory's output; its place in the run in
        # registers), N (the next entry, a register copy of D) and C (the current entry). An
        # entry leaves D as soon as it can: for C if C is free and N empty, else for an empty N.
        c_free = Signal(name="c_free")
        m.d.comb += c_free.eq(~c_valid | c_done)
        n_to_c, d_to_c, d_to_n = Signal(name="n_to_c"), Signal(name="d_to_c"), Signal()
        m.d.comb += [n_to_c.eq(c_free & n_valid), d_to_c.eq(c_free & ~n_valid & d_valid),
                     d_to_n.eq(d_valid & ~d_to_c & ~n_valid)]
        meta = (("pixel", 1), ("empty", 1), ("rec", 1), ("group", self.group_bits),
                ("first", 1), ("pass_final", 1), ("run_final", 1))
        # an entry's contents: both memories' outputs, as read (its kind says which is real)
        contents = (("word", self.lanes), ("src", self.group_bits), ("j", self.index_bits),
                    ("x", self.x_bits))
        d = {name: Signal(shape, name=f"d_{name}") for name, shape in meta}
        d.update(word=self.spk_data.word, src=self.spk_data.group, j=pix.j, x=pix.x)
        n = {name: Signal(shape, name=f"n_{name}") for name, shape in meta + contents}
        c = {name: Signal(shape, name=f"c_{name}") for name, shape in meta + contents}
        with m.If(fetch):
            m.d.sync += [d_valid.eq(1), d["pixel"].eq(s_pixel), d["empty"].eq(s["empty"]),
                         d["rec"].eq(~s["empty"] & ~s["seg_b"]), d["group"].eq(s["group"]),
                         d["first"].eq(s["first"]), d["pass_final"].eq(pass_final),
                         d["run_final"].eq(run_final)]
        with m.Elif(d_to_c | d_to_n):
            m.d.sync += d_valid.eq(0)
        with m.If(d_to_n):
            m.d.sync += [n_valid.eq(1), *(n[name].eq(d[name]) for name in n)]
        with m.Elif(n_to_c):
            m.d.sync += n_valid.eq(0)

        # C's word loses its lowest set bit at every event
        below = Signal(self.lanes, name="c_word_minus_1")
        m.d.comb += below.eq(c["word"] - 1)
        lowest = Signal(self.lanes, name="lowest_bit")  # one-hot; 0 for a zero word
        rest = Signal(self.lanes, name="rest")
        m.d.comb += [lowest.eq(c["word"] & ~below), rest.eq(c["word"] & below)]
        entry_last = Signal(name="entry_last")  # the entry's last event is on o
        m.d.comb += entry_last.eq(c["pixel"] | c["empty"] | (rest == 0))
        transfer = self.o.valid & self.o.ready
        m.d.comb += c_done.eq(transfer & entry_last)
        with m.If(n_to_c | d_to_c):
            # the select is a register: N if it holds the next entry, else D as read
            m.d.sync += [c_valid.eq(1), *(c[name].eq(Mux(n_valid, n[name], d[name]))
                                          for name in c)]
        with m.Elif(transfer):
            m.d.sync += [c["word"].eq(rest), c["first"].eq(0)]
            with m.If(entry_last):
                m.d.sync += c_valid.eq(0)

        with m.If(self.start):
            m.d.sync += self.busy.eq(1)
        with m.Elif(c_done & c["run_final"]):
            m.d.sync += self.busy.eq(0)

        spike_j = self._spike_index(m, c["src"], self._encode(m, lowest))
        m.d.comb += [
            self.o.valid.eq(c_valid),
            self.o.p.group.eq(c["group"]),
            self.o.p.j.eq(Mux(c["pixel"], c["j"], Mux(c["empty"], 0, spike_j))),
            self.o.p.x.eq(Mux(c["pixel"], c["x"], ~c["empty"] & (c["word"] != 0))),
            self.o.p.rec.eq(c["rec"]),
            self.o.p.first.eq(c["first"]),
            self.o.p.last.eq(c["pass_final"] & entry_last),
        ]
        return m

    def _pixel_read(self, m: Module, fetch, addr, addr_after):
        """Drive the pixel memory's read port for a fetch of entry ``addr`` (``fetch`` high);
        return the pixel entry of slot D (see *Pixel read-ahead*).

        ``addr_after`` is the entry the run's next pixel fetch will read: ``addr + 1``, or 0
        after its segment's last entry (every pass reads B from entry 0).
        """
        if not self.pixel_ahead:
            m.d.comb += [self.pix_addr.eq(addr), self.pix_en.eq(fetch)]
            return self.pix_data
        ahead = Signal(range(max(2, self.pixel_depth)), name="pix_ahead")  # 0 between runs
        with m.If(fetch):
            m.d.sync += ahead.eq(addr_after)
        m.d.comb += [self.pix_addr.eq(Mux(fetch, addr_after, ahead)), self.pix_en.eq(1)]
        entry = Signal(self.pixel_entry, name="d_pixel")
        with m.If(fetch):
            m.d.sync += entry.eq(self.pix_data)
        return entry

    def _encode(self, m: Module, one_hot: Signal) -> Signal:
        """The index of the set bit of ``one_hot`` (0 if none): an OR tree per index bit."""
        p = Signal(max(1, (self.lanes - 1).bit_length()), name="lane")
        for b in range(len(p)):
            bits = [one_hot[i] for i in range(self.lanes) if i >> b & 1]
            m.d.comb += p[b].eq(Cat(*bits).any() if bits else 0)
        return p

    def _spike_index(self, m: Module, group: Signal, p: Signal) -> Signal:
        """``group * P + p`` without a multiplier (see the module documentation)."""
        shift = (self.lanes & -self.lanes).bit_length() - 1  # P = 2**shift * odd
        odd = self.lanes >> shift
        j = Signal(self.index_bits, name="spike_j")
        low = p[:shift] if shift else Const(0, 0)
        if odd == 1:
            m.d.comb += j.eq(Cat(low, group))
        else:
            times_odd = sum(group << k for k in range(odd.bit_length()) if odd >> k & 1)
            m.d.comb += j.eq(Cat(low, times_odd + (p >> shift)))
        return j
