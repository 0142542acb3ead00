"""The serial-line simulator: a Verilated design whose UART pins are a pty that pyserial opens."""

import os
import stat

import numpy as np
import pytest
import serial

from hwseg.cosim.serial_link import SerialSim, build_serial_sim
from hwseg.errors import SimulationError

ECHO = """\
module echo(input clk, input rst, input rx, output tx);
  reg r = 1'b1;
  always @(posedge clk) r <= rst ? 1'b1 : rx;
  assign tx = r;
endmodule
"""


def _xor_uart(clocks_per_bit):
    """An RTL UART of its own (receiver, one byte held, transmitter) that answers each byte with byte ^ 0x5A."""
    return f"""\
module xor5a #(parameter CPB = {clocks_per_bit}) (input clk, input rst, input rx, output tx);
  localparam HALF = CPB / 2;
  reg receiving = 1'b0;
  reg [15:0] receive_wait = 16'd0;
  reg [3:0] receive_bit = 4'd0;
  reg [7:0] shift_in = 8'd0;
  reg full = 1'b0;
  reg [7:0] held = 8'd0;
  reg sending = 1'b0;
  reg [15:0] send_wait = 16'd0;
  reg [3:0] send_bit = 4'd0;
  reg [9:0] frame = 10'h3ff;
  assign tx = frame[0];
  always @(posedge clk) begin
    if (rst) begin
      receiving <= 1'b0;
      full <= 1'b0;
      sending <= 1'b0;
      frame <= 10'h3ff;
    end else begin
      // transmitter first: a byte received this very cycle (below) wins the holding register
      // (the next frame starts as the stop bit ends, so it keeps pace with back-to-back input)
      if (full && (!sending || (send_wait == 0 && send_bit == 4'd9))) begin
        frame <= {{1'b1, held ^ 8'h5A, 1'b0}};
        sending <= 1'b1;
        send_wait <= CPB - 1;
        send_bit <= 4'd0;
        full <= 1'b0;
      end else if (sending && send_wait != 0) begin
        send_wait <= send_wait - 1;
      end else if (sending) begin
        frame <= {{1'b1, frame[9:1]}};
        send_wait <= CPB - 1;
        send_bit <= send_bit + 1;
        if (send_bit == 4'd9) sending <= 1'b0;
      end
      // receiver: a low line starts a frame; each bit is sampled in its middle
      if (!receiving) begin
        if (!rx) begin
          receiving <= 1'b1;
          receive_wait <= HALF - 1;
          receive_bit <= 4'd0;
        end
      end else if (receive_wait != 0) begin
        receive_wait <= receive_wait - 1;
      end else begin
        receive_wait <= CPB - 1;
        receive_bit <= receive_bit + 1;
        if (receive_bit == 4'd0) begin
          if (rx) receiving <= 1'b0;
        end else if (receive_bit <= 4'd8) begin
          shift_in <= {{rx, shift_in[7:1]}};
        end else begin
          receiving <= 1'b0;
          if (rx) begin
            held <= shift_in;
            full <= 1'b1;
          end
        end
      end
    end
  end
endmodule
"""


def _frame(byte, stop):
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


def _framer(clocks_per_bit):
    """Once rx goes low, sends 0x55 with a bad (low) stop bit, then 0x1F properly framed, then stays idle."""
    bits = [1] * 4 + _frame(0x55, 0) + [1] * 3 + _frame(0x1F, 1) + [1] * 4
    pattern = "".join(str(b) for b in reversed(bits))   # the first bit to send is bit 0
    return f"""\
module framer(input clk, input rst, input rx, output tx);
  reg started = 1'b0;
  reg [15:0] wait_ = 16'd0;
  reg [{len(bits) - 1}:0] line = {len(bits)}'b{pattern};
  assign tx = line[0];
  always @(posedge clk) begin
    if (rst) begin
      started <= 1'b0;
      wait_ <= 16'd0;
      line <= {len(bits)}'b{pattern};
    end else if (!started) begin
      started <= !rx;
    end else if (wait_ != {clocks_per_bit - 1}) begin
      wait_ <= wait_ + 1;
    end else begin
      wait_ <= 16'd0;
      line <= {{1'b1, line[{len(bits) - 1}:1]}};
    end
  end
endmodule
"""


def _exchange(port, data, chunks):
    """Writes ``data`` in ``chunks`` pieces, reading each piece's answer before the next; what came back."""
    got = bytearray()
    with serial.Serial(port, 115200, timeout=10) as line:
        for piece in np.array_split(np.frombuffer(data, dtype=np.uint8), chunks):
            line.write(piece.tobytes())
            got += line.read(len(piece))
    return bytes(got)


@pytest.mark.parametrize("clocks_per_bit", [4, 13])
def test_echo_through_the_pty(clocks_per_bit):
    data = np.random.default_rng(clocks_per_bit).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    with SerialSim(ECHO, "echo", clocks_per_bit=clocks_per_bit) as sim:
        assert stat.S_ISCHR(os.stat(sim.port).st_mode)
        # a client closes the port and another opens it: the simulator holds the slave, the line survives
        got = _exchange(sim.port, data[:1000], 3) + _exchange(sim.port, data[1000:], 2)
    assert got == data
    assert sim.framing_errors == 0
    assert sim.cycles >= len(data) * 10 * clocks_per_bit   # every byte went over rx, one bit at a time


@pytest.mark.parametrize("clocks_per_bit", [4, 13])
def test_an_rtl_uart_answers_each_byte_xor_0x5a(clocks_per_bit):
    data = np.random.default_rng(100 + clocks_per_bit).integers(0, 256, 500, dtype=np.uint8)
    with SerialSim(_xor_uart(clocks_per_bit), "xor5a", clocks_per_bit=clocks_per_bit, reset_cycles=5) as sim:
        got = _exchange(sim.port, data.tobytes(), 4)
    assert got == (data ^ 0x5A).tobytes()
    assert sim.framing_errors == 0


def test_a_frame_with_a_bad_stop_bit_is_counted_and_dropped():
    with SerialSim(_framer(9), "framer", clocks_per_bit=9) as sim:
        with serial.Serial(sim.port, 115200, timeout=10) as line:
            line.write(b"\x00")        # any byte starts the design's sequence
            first = line.read(1)
            line.timeout = 0.2
            more = line.read(16)
    assert (first, more) == (b"\x1f", b"")   # not 0xF8: data bits are least significant first
    assert sim.framing_errors == 1


@pytest.mark.parametrize("arguments, message", [
    ({"clocks_per_bit": 2}, "clocks_per_bit must be an int >= 4, not 2"),
    ({"clocks_per_bit": 8.0}, "clocks_per_bit must be an int >= 4, not 8.0"),
    ({"clocks_per_bit": 8, "reset_cycles": -1}, "reset_cycles must be an int >= 0, not -1"),
])
def test_bad_arguments_are_refused_with_their_value(arguments, message):
    with pytest.raises(ValueError) as refused:
        SerialSim(ECHO, "echo", **arguments)
    assert str(refused.value) == message
    with pytest.raises(ValueError, match="top must be the name of a Verilog module, not 'no such'"):
        SerialSim(ECHO, "no such", clocks_per_bit=8)


def test_a_failed_build_names_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSEG_CACHE", str(tmp_path))
    with pytest.raises(SimulationError, match=r"build\.log") as failed:
        build_serial_sim(ECHO.replace("endmodule", ""), "echo")
    log = str(failed.value).rsplit("see ", 1)[1]
    assert "%Error" in open(log).read()
