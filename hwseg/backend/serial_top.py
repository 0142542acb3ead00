"""Board wrappers for an accelerator reached over a serial line: :class:`SerialBridge` (UART, receive FIFO,
:class:`~hwseg.hw.host_link.HostLink`, the emitted accelerator as an instance) and :class:`Ulx3sTop` (the bridge on
the ULX3S's FT231X pins, its clock from the 25 MHz oscillator through an ECP5 PLL)."""

from __future__ import annotations

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from ..hw._checks import check_int
from ..hw.fifo import StreamFIFO
from ..hw.host_link import HostLink
from ..hw.uart import MIN_DIVISOR, UartRx, UartTx

__all__ = ["SerialBridge", "Ulx3sTop", "pll_dividers", "uart_divisor", "RX_FIFO_DEPTH"]

#: bytes the board holds between the line and the accelerator (an 18 Kb block RAM): the accelerator may pause
#: this long — 10 ms at 2 Mbaud — without losing a byte
RX_FIFO_DEPTH = 2048
#: the clock may differ from the bit rate's multiple by at most this much (a receiver samples mid-bit)
MAX_BAUD_ERROR = 0.02


def uart_divisor(clock_hz: float, baud: int) -> int:
    """Clock cycles a bit at ``baud`` takes; ``ValueError`` (showing the bit rates that would work) when the clock
    cannot make it within :data:`MAX_BAUD_ERROR` or it is shorter than the receiver needs."""
    check_int("baud", baud)
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR or abs(clock_hz / divisor - baud) > MAX_BAUD_ERROR * baud:
        best = int(clock_hz // MIN_DIVISOR)
        raise ValueError(f"a {clock_hz / 1e6:g} MHz clock cannot make {baud:,} baud (at most {best:,}, and within "
                         f"2 % of the clock over a whole number of cycles, e.g. {int(clock_hz // 25):,})")
    return divisor


class SerialBridge(wiring.Component):
    """The accelerator ``module`` (the emitted Verilog, instantiated) behind a host link on the serial pins ``rx``
    and ``tx``.

    ``rx`` → :class:`UartRx` → a :data:`RX_FIFO_DEPTH`-byte FIFO → :class:`HostLink` ⇄ the accelerator's streams;
    :class:`HostLink` → :class:`UartTx` → ``tx``. The accelerator is reset with the bridge and when the link
    abandons a frame."""

    def __init__(self, *, module: str, in_tdata_bits: int, out_tdata_bits: int, in_beats: int, out_beats: int,
                 descriptor: bytes, divisor: int, idle_timeout: int):
        if not isinstance(module, str) or not module.isidentifier():
            raise ValueError(f"module must be a Verilog module name, not {module!r}")
        check_int("in_tdata_bits", in_tdata_bits)
        check_int("out_tdata_bits", out_tdata_bits)
        self.module, self.in_tdata_bits, self.out_tdata_bits = module, in_tdata_bits, out_tdata_bits
        self.link = HostLink(in_beat_bytes=-(-in_tdata_bits // 8), in_beats=in_beats,
                             out_beat_bytes=-(-out_tdata_bits // 8), out_beats=out_beats, descriptor=descriptor,
                             idle_timeout=idle_timeout)
        self.uart_rx, self.uart_tx = UartRx(divisor=divisor), UartTx(divisor=divisor)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        link = m.submodules.link = self.link
        m.submodules.uart_rx, m.submodules.uart_tx = self.uart_rx, self.uart_tx
        m.submodules.rx_fifo = rx_fifo = StreamFIFO(payload_shape=8, depth=RX_FIFO_DEPTH)
        m.d.comb += [self.uart_rx.rx.eq(self.rx), self.tx.eq(self.uart_tx.tx),
                     link.line_errors.eq(Cat(self.uart_rx.overrun, self.uart_rx.framing_error))]
        wiring.connect(m, self.uart_rx.o_stream, rx_fifo.i_stream)
        wiring.connect(m, rx_fifo.o_stream, link.rx)
        wiring.connect(m, link.tx, self.uart_tx.i_stream)
        frame_in, frame_out = link.frame_in, link.frame_out
        out_data = Signal(self.out_tdata_bits)
        m.d.comb += frame_out.payload.data.eq(out_data)
        m.submodules.accelerator = Instance(
            self.module,
            i_clk=ClockSignal(), i_rst=ResetSignal() | link.accel_rst,
            i_s_axis_tdata=frame_in.payload.data[:self.in_tdata_bits], i_s_axis_tvalid=frame_in.valid,
            o_s_axis_tready=frame_in.ready, i_s_axis_tlast=frame_in.payload.last,
            o_m_axis_tdata=out_data, o_m_axis_tvalid=frame_out.valid, i_m_axis_tready=frame_out.ready,
            o_m_axis_tlast=frame_out.payload.last)
        return m


#: the ECP5 EHXPLLL's limits (MHz): phase detector input, VCO (Lattice TN1263, as prjtrellis's ecppll uses them)
_PFD_MHZ, _VCO_MHZ = (3.125, 400.0), (400.0, 800.0)


def pll_dividers(input_mhz: float, output_mhz: float) -> dict:
    """EHXPLLL dividers for ``output_mhz`` from ``input_mhz`` (feedback from CLKOP), found as prjtrellis's
    ``ecppll`` finds them: the output closest to the request, then the VCO closest to 600 MHz. Returns
    ``{"CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV", "CLKOP_CPHASE", "output_mhz", "vco_mhz"}``."""
    best = None
    for clki in range(1, 129):
        pfd = input_mhz / clki
        if not _PFD_MHZ[0] <= pfd <= _PFD_MHZ[1]:
            continue
        for clkfb in range(1, 81):
            for clkop in range(1, 129):
                vco = pfd * clkfb * clkop
                if not _VCO_MHZ[0] <= vco <= _VCO_MHZ[1]:
                    continue
                key = (abs(vco / clkop - output_mhz), abs(vco - 600))
                if best is None or key < best[0]:
                    best = (key, clki, clkfb, clkop, vco)
    if best is None:
        raise ValueError(f"no ECP5 PLL setting makes {output_mhz:g} MHz from {input_mhz:g} MHz")
    _, clki, clkfb, clkop, vco = best
    return {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop, "CLKOP_CPHASE": clkop // 2 - 1,
            "output_mhz": vco / clkop, "vco_mhz": vco}


class Ulx3sTop(Elaboratable):
    """The ULX3S's top level for an ``amaranth_boards`` ULX3S platform: the ``sync`` clock from the 25 MHz
    oscillator through an EHXPLLL at ``clock_mhz``, held in reset until the PLL locks; ``bridge`` on the FT231X's
    ``uart`` pins."""

    def __init__(self, bridge: SerialBridge, clock_mhz: float):
        self.bridge, self.pll = bridge, pll_dividers(25.0, clock_mhz)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        oscillator = m.submodules.oscillator = io.Buffer("i", platform.request("clk25", dir="-"))
        locked = Signal()
        pll = self.pll
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI="25", a_FREQUENCY_PIN_CLKOP=f"{pll['output_mhz']:g}", a_ICP_CURRENT="12",
            a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED", p_FEEDBK_PATH="CLKOP",
            p_CLKI_DIV=pll["CLKI_DIV"], p_CLKFB_DIV=pll["CLKFB_DIV"], p_CLKOP_DIV=pll["CLKOP_DIV"],
            p_CLKOP_CPHASE=pll["CLKOP_CPHASE"], p_CLKOP_FPHASE=0,
            i_RST=0, i_STDBY=0, i_CLKI=oscillator.i, o_CLKOP=sync.clk, i_CLKFB=sync.clk, i_PHASESEL0=0,
            i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_LOCK=locked)
        m.submodules.reset = ResetSynchronizer(~locked, domain="sync")
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.submodules.bridge = self.bridge
        m.d.comb += [self.bridge.rx.eq(rx.i), tx.o.eq(self.bridge.tx)]
        return m
