"""deploy/build.tcl replayed in tclsh with recording stand-ins for the Vivado commands
(tests/deploy/vivado_standins.tcl): the block design it builds — its cells, their interface connections, the clock
and reset nets, the address map, the processing system's clock — the part, the packaged IP, the bitstream run and
the files it copies next to the driver. A real Vivado run is the final check (README: Run it on a board)."""

import subprocess
from pathlib import Path

import pytest

from hwseg.boards import load_board
from hwseg.deploy import VIVADO_VERSION
from hwseg.flow import build
from tests.deploy.designs import DESIGNS, DRAM_DESIGNS, ROOT, deployed, write_deploy

STANDINS = Path(__file__).with_name("vivado_standins.tcl")


def _replay(design, folder: Path, installed: list[str]) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    (folder / f"{design.name}.v").write_text(design.verilog)
    write_deploy(design, folder)
    log = folder / "vivado_calls.log"
    script = folder / "replay.tcl"
    script.write_text(f"set ::standin_log {{{log}}}\nset ::standin_board_files {{{' '.join(installed)}}}\n"
                      f"source {{{STANDINS}}}\nsource {{{folder / 'deploy' / 'build.tcl'}}}\n")
    run = subprocess.run(["tclsh", str(script)], capture_output=True, text=True, timeout=60)
    calls = [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []
    return run, calls


def _config(calls, cell) -> dict:
    """The CONFIG.* values set on ``cell``."""
    values = {}
    for call in calls:
        if call[0] == "set_property" and call[1] == "-dict" and call[-1] == cell:
            words = call[2].split()
            values.update({key.removeprefix("CONFIG."): value for key, value in zip(words[::2], words[1::2])})
    return values


@pytest.mark.parametrize("net,board_name", DESIGNS)
def test_the_block_design(net, board_name, tmp_path):
    design = deployed(net, board_name)
    board, name = load_board(board_name), design.name
    run, calls = _replay(design, tmp_path, [f"{board.board_files}:part0:1.0"])
    assert run.returncode == 0, run.stderr
    assert f"Vivado {VIVADO_VERSION}" in design.deploy["deploy/build.tcl"].splitlines()[1]
    create = next(call for call in calls if call[0] == "create_project")
    assert create[create.index("-part") + 1] == board.part
    assert ["set_property", "board_part", f"{board.board_files}:part0:1.0", "project"] in calls
    # the IP: the accelerator with DMA-wide streams, its AXI4-Stream interfaces inferred
    assert any(call[0] == "ipx::package_project" and "hwseg.org" in call for call in calls)
    assert ["ipx::infer_bus_interfaces", "xilinx.com:interface:axis_rtl:1.0", "core"] in calls
    cells = {call[-1]: call[call.index("-vlnv") + 1] for call in calls if call[0] == "create_bd_cell"}
    ps = "xilinx.com:ip:processing_system7:5.5" if board.family == "xc7" else "xilinx.com:ip:zynq_ultra_ps_e:3.4"
    assert cells == {"ps": ps, "axi_dma_0": "xilinx.com:ip:axi_dma:7.1",
                     "accelerator": f"hwseg.org:hwseg:{name}_dma:1.0", "control": "xilinx.com:ip:smartconnect:1.0",
                     "memory": "xilinx.com:ip:smartconnect:1.0", "reset": "xilinx.com:ip:proc_sys_reset:5.0"}
    assert any(call[0] == "apply_bd_automation" and "apply_board_preset" in call[call.index("-config") + 1]
               for call in calls)
    # the fabric clock at the board's clock; the DMA's streams as wide as the wrapper's
    names = {"xc7": ("FCLK_CLK0", "FCLK_RESET0_N", "M_AXI_GP0", "S_AXI_HP0", "PCW_FPGA0_PERIPHERAL_FREQMHZ",
                     "S_AXI_HP0/HP0_DDR_LOWOCM", "0x40400000"),
             "xcup": ("pl_clk0", "pl_resetn0", "M_AXI_HPM0_FPD", "S_AXI_HP0_FPD",
                      "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ", "SAXIGP2/HP0_DDR_LOW", "0xA0000000")}[board.family]
    clock, resetn, master, slave, frequency, ddr, dma_base = names
    assert float(_config(calls, "ps")[frequency]) == board.clock_mhz
    spec_in = design.manifest["input"]["tdata_bits"]
    dma = _config(calls, "axi_dma_0")
    assert int(dma["c_m_axis_mm2s_tdata_width"]) >= spec_in and int(dma["c_m_axis_mm2s_tdata_width"]) % 8 == 0
    assert dma["c_include_sg"] == "0"
    wrapper = design.deploy[f"deploy/{name}_dma.v"]
    assert f"input  wire [{int(dma['c_m_axis_mm2s_tdata_width']) - 1}:0] s_axis_tdata" in wrapper
    assert f"output wire [{int(dma['c_s_axis_s2mm_tdata_width']) - 1}:0] m_axis_tdata" in wrapper
    # the streams and the memory-mapped paths
    links = {(call[1], call[2]) for call in calls if call[0] == "connect_bd_intf_net"}
    assert links == {("axi_dma_0/M_AXIS_MM2S", "accelerator/s_axis"), ("accelerator/m_axis", "axi_dma_0/S_AXIS_S2MM"),
                     (f"ps/{master}", "control/S00_AXI"), ("control/M00_AXI", "axi_dma_0/S_AXI_LITE"),
                     ("axi_dma_0/M_AXI_MM2S", "memory/S00_AXI"), ("axi_dma_0/M_AXI_S2MM", "memory/S01_AXI"),
                     ("memory/M00_AXI", f"ps/{slave}")}
    nets = [set(call[1:]) for call in calls if call[0] == "connect_bd_net"]
    clock_net = next(net for net in nets if f"ps/{clock}" in net)
    assert {"accelerator/clk", "axi_dma_0/m_axi_mm2s_aclk", "axi_dma_0/m_axi_s2mm_aclk", "axi_dma_0/s_axi_lite_aclk",
            "control/aclk", "memory/aclk", "reset/slowest_sync_clk"} <= clock_net and len(clock_net) == 10
    assert {f"ps/{resetn}", "reset/ext_reset_in"} in nets
    assert {"reset/peripheral_reset", "accelerator/rst"} in nets
    assert {"reset/peripheral_aresetn", "axi_dma_0/axi_resetn", "control/aresetn", "memory/aresetn"} in nets
    # the address map: the DMA's registers for the processor, DDR for the DMA's reads and writes
    addresses = [call for call in calls if call[0] == "assign_bd_address"]
    assert ["assign_bd_address", "-offset", dma_base, "-range", "64K", "-target_address_space", "ps/Data",
            "axi_dma_0/S_AXI_LITE/Reg"] in addresses
    for space in ("axi_dma_0/Data_MM2S", "axi_dma_0/Data_S2MM"):
        assert ["assign_bd_address", "-target_address_space", space, f"ps/{ddr}"] in addresses
    # the bitstream, the timing summary, and the files next to the driver
    assert ["launch_runs", "impl_1", "-to_step", "write_bitstream", "-jobs", "4"] in calls
    assert (tmp_path / "deploy" / "timing_summary.txt").exists()
    assert (tmp_path / "deploy" / "hwseg_driver" / f"{name}.bit").exists()
    assert (tmp_path / "deploy" / "hwseg_driver" / f"{name}.hwh").exists()
    order = [call[0] for call in calls]
    assert order.index("validate_bd_design") < order.index("launch_runs") < order.index("report_timing_summary")


@pytest.mark.parametrize("net,board_name", DRAM_DESIGNS)
def test_the_block_design_of_a_design_with_buffers_in_dram(net, board_name, tmp_path):
    """Its memory port on a second high-performance port (through a SmartConnect), the control GPIO (base and
    reset, reset held at power-up) on the processor's port, both clocked and reset, and in the address map."""
    design = deployed(net, board_name, "all")
    board = load_board(board_name)
    run, calls = _replay(design, tmp_path, [f"{board.board_files}:part0:1.0"])
    assert run.returncode == 0, run.stderr
    assert ["ipx::infer_bus_interfaces", "xilinx.com:interface:aximm_rtl:1.0", "core"] in calls
    assert any(call[:3] == ["set_property", "value", "s_axis:m_axis:m_axi"] for call in calls)
    cells = {call[-1]: call[call.index("-vlnv") + 1] for call in calls if call[0] == "create_bd_cell"}
    assert cells["control_gpio"] == "xilinx.com:ip:axi_gpio:2.0" and cells["dram"] == "xilinx.com:ip:smartconnect:1.0"
    gpio = _config(calls, "control_gpio")
    assert (gpio["C_IS_DUAL"], gpio["C_ALL_OUTPUTS"], gpio["C_ALL_OUTPUTS_2"]) == ("1", "1", "1")
    assert int(gpio["C_DOUT_DEFAULT_2"], 16) == 1 << 31 and _config(calls, "control")["NUM_MI"] == "2"
    port, port_clock, segment, width_key, enable_key, gpio_base = {
        "xc7": ("S_AXI_HP1", "S_AXI_HP1_ACLK", "S_AXI_HP1/HP1_DDR_LOWOCM", "PCW_S_AXI_HP1_DATA_WIDTH",
                "PCW_USE_S_AXI_HP1", "0x41200000"),
        "xcup": ("S_AXI_HP1_FPD", "saxihp1_fpd_aclk", "SAXIGP3/HP1_DDR_LOW", "PSU__SAXIGP3__DATA_WIDTH",
                 "PSU__USE__S_AXI_GP3", "0xA0010000")}[board.family]
    ps = _config(calls, "ps")
    assert ps[enable_key] == "1" and int(ps[width_key]) == design.manifest["dram"]["data_bits"]
    links = {(call[1], call[2]) for call in calls if call[0] == "connect_bd_intf_net"}
    assert {("accelerator/m_axi", "dram/S00_AXI"), ("dram/M00_AXI", f"ps/{port}"),
            ("control/M01_AXI", "control_gpio/S_AXI")} <= links
    nets = [set(call[1:]) for call in calls if call[0] == "connect_bd_net"]
    assert {"control_gpio/gpio_io_o", "accelerator/ctrl_base_low"} in nets
    assert {"control_gpio/gpio2_io_o", "accelerator/ctrl_base_high"} in nets
    clock_net = next(net for net in nets if "accelerator/clk" in net)
    assert {f"ps/{port_clock}", "control_gpio/s_axi_aclk", "dram/aclk"} <= clock_net
    assert any({"control_gpio/s_axi_aresetn", "dram/aresetn"} <= net for net in nets)
    addresses = [call for call in calls if call[0] == "assign_bd_address"]
    assert ["assign_bd_address", "-offset", gpio_base, "-range", "64K", "-target_address_space", "ps/Data",
            "control_gpio/S_AXI/Reg"] in addresses
    assert ["assign_bd_address", "-target_address_space", "accelerator/m_axi", f"ps/{segment}"] in addresses
    # the wrapper: the memory port through, the base and the reset from the GPIO's channels
    wrapper = design.deploy[f"deploy/{design.name}_dma.v"]
    bits = design.manifest["dram"]["address_bits"]
    base = "{ctrl_base_high[7:0], ctrl_base_low}" if bits == 40 else f"ctrl_base_low[{bits - 1}:0]"
    assert f".dram_base({base})" in wrapper and ".rst(rst | ctrl_base_high[31])" in wrapper
    assert ".m_axi_araddr(m_axi_araddr)" in wrapper
    image = tmp_path / "deploy" / "hwseg_driver" / "weights.bin"      # (a design whose weights load from DRAM)
    assert image.read_bytes() == design.weight_image if design.weight_image else not image.exists()


def test_missing_board_files_stop_the_build_with_one_line(tmp_path):
    run, calls = _replay(deployed("int8_tiny", "pynq-z2"), tmp_path, [])
    assert run.returncode != 0
    assert run.stderr.splitlines()[0] == ("the Vivado board files of tul.com.tw:pynq-z2 are not installed; install "
                                          "them (see deploy/README.md) and run again")
    assert not any(call[0] == "create_bd_design" for call in calls)


# (the other examples: bench/rebuild.py, about a minute each)
@pytest.mark.parametrize("net,board_name,offchip", [("int8_tiny", "pynq-z2", None), ("int8_tiny", "zcu104", "all")])
def test_deploy_is_byte_identical_when_rebuilt(net, board_name, offchip, tmp_path):
    first = deployed(net, board_name, offchip)
    second = build(ROOT / "examples" / f"{net}.pt", board_name, offchip=offchip,
                   multipliers="dsp").with_deploy()   # again, from scratch
    assert sorted(first.deploy) == sorted(f"deploy/{name}" for name in (
        "Makefile", "README.md", f"{first.name}_dma.v", "build.tcl", "example.py", "hwseg_driver/__init__.py",
        "hwseg_driver/spec.json", *(["hwseg_driver/weights.bin"] if offchip else [])))
    first.write(tmp_path / "a")
    second.write(tmp_path / "b")
    for name in first.deploy:
        assert (tmp_path / "a" / first.name / name).read_bytes() == (tmp_path / "b" / first.name / name).read_bytes()
