"""An asynchronous serial line (UART, 8N1) as byte streams: the host link of boards reached over USB-UART."""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ._checks import check_int

__all__ = ["UartTx", "UartRx"]

#: the fewest clock cycles a bit may last: the receiver samples a bit's middle and needs a cycle either side of it
MIN_DIVISOR = 4


def _check_divisor(divisor):
    check_int("divisor", divisor, MIN_DIVISOR)
    return divisor


class UartTx(wiring.Component):
    """Sends each byte of ``i_stream`` on ``tx``: a start bit (0), the 8 data bits least significant first, a stop
    bit (1), each held ``divisor`` clock cycles (the bit rate is the clock over ``divisor``). ``tx`` idles high.

    Throughput: a byte every ``10·divisor`` cycles; ``i_stream.ready`` is high while the line is idle (and the cycle
    the stop bit ends), so back-to-back bytes leave no gap. Latency: the start bit begins the cycle after the
    transfer."""

    def __init__(self, *, divisor):
        self.divisor = _check_divisor(divisor)
        super().__init__({"i_stream": In(stream.Signature(unsigned(8))), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        i = self.i_stream
        frame = Signal(10, init=0x3FF)     # the bits still to send, the next one lowest (stop bit 1 above)
        left = Signal(range(11))           # bits of the frame still to send (0: idle)
        tick = Signal(range(self.divisor))
        last_tick = tick == self.divisor - 1
        m.d.comb += [self.tx.eq(frame[0]), i.ready.eq((left == 0) | ((left == 1) & last_tick))]
        with m.If(left != 0):
            m.d.sync += tick.eq(tick + 1)
            with m.If(last_tick):
                m.d.sync += [tick.eq(0), left.eq(left - 1), frame.eq((frame >> 1) | (1 << 9))]
        with m.If(i.valid & i.ready):
            m.d.sync += [frame.eq((1 << 9) | (i.payload << 1)), left.eq(10), tick.eq(0)]
        return m


class UartRx(wiring.Component):
    """Receives bytes from ``rx`` (8N1, each bit ``divisor`` clock cycles) onto ``o_stream``.

    ``rx`` passes two flip-flops first (it comes from another clock). A start bit is a low level seen while idle,
    confirmed half a bit later; each bit is sampled in its middle. A byte whose stop bit is low is dropped and
    ``framing_error`` is high for a cycle.

    A line cannot be stalled: a byte is held on ``o_stream`` until taken; a byte that completes while the one before
    is still held is dropped, and ``overrun`` is high for a cycle (so give ``o_stream`` a FIFO and read it faster
    than the line brings bytes). Latency: the byte is valid the cycle after the middle of its stop bit."""

    def __init__(self, *, divisor):
        self.divisor = _check_divisor(divisor)
        super().__init__({"rx": In(1, init=1), "o_stream": Out(stream.Signature(unsigned(8))),
                          "overrun": Out(1), "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        o = self.o_stream
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)
        tick = Signal(range(self.divisor))
        bits = Signal(9)                   # data bits then the stop bit, shifted in from the top
        count = Signal(range(10))          # bits sampled so far
        m.d.sync += [self.overrun.eq(0), self.framing_error.eq(0)]
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.FSM():
            with m.State("idle"):
                with m.If(~line):
                    m.d.sync += tick.eq(0)
                    m.next = "start"
            with m.State("start"):              # confirm the start bit in its middle
                m.d.sync += tick.eq(tick + 1)
                with m.If(tick == (self.divisor - 1) // 2):
                    m.d.sync += [tick.eq(0), count.eq(0)]
                    with m.If(line):
                        m.next = "idle"         # a glitch, not a start bit
                    with m.Else():
                        m.next = "bits"
            with m.State("bits"):               # a whole bit later is the middle of the next bit
                m.d.sync += tick.eq(tick + 1)
                with m.If(tick == self.divisor - 1):
                    m.d.sync += [tick.eq(0), bits.eq((line << 8) | (bits >> 1)), count.eq(count + 1)]
                    with m.If(count == 8):      # this is the stop bit
                        m.next = "idle"
                        with m.If(~line):
                            m.d.sync += self.framing_error.eq(1)
                        with m.Elif(o.valid & ~o.ready):
                            m.d.sync += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [o.payload.eq(bits[1:9]), o.valid.eq(1)]
        return m
