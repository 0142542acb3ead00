"""The Vivado Tcl of ``deploy/``: a project for the board's part, the accelerator packaged as an IP, a block design
(the processing system, an AXI DMA into and out of the accelerator, its high-performance port, the address map,
the fabric clock at the board's clock), the bitstream, the timing summary, and the ``.bit`` and ``.hwh`` copied
next to the driver.

Names are explicit (no connection automation besides the processing system's board preset), so that the script
reads as the design it builds and ``tests/deploy`` can replay it in ``tclsh`` with recording stand-ins.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VIVADO_VERSION", "build_tcl", "Ps"]

#: the Vivado release the script is written for (the IP versions below are that release's)
VIVADO_VERSION = "2022.2"
#: the AXI DMA's register block in the processing system's address map (PYNQ finds it through the .hwh)
DMA_RANGE = "64K"
#: the control GPIO's (designs with a memory port)
GPIO_RANGE = "64K"
#: the control GPIO (designs with a memory port): channel 1 the base's low 32 bits, channel 2 its high bits and, in
#: this bit, the accelerator held in reset (set at power-up: it must not read its region before the driver has
#: placed it)
CONTROL_RESET_BIT = 31


@dataclass(frozen=True)
class Ps:
    """One processing system's names: its IP, the board-preset rule, its configuration, its ports."""
    vlnv: str
    rule: str
    preset: str
    config: tuple[tuple[str, str], ...]
    clock: str               # the fabric clock output
    resetn: str              # its reset (active low)
    master: str              # the general-purpose master port (to the DMA's registers)
    master_clock: str
    slave: str               # the high-performance slave port (the DMA's reads and writes)
    slave_clock: str
    ddr: str                 # the DDR segment behind the slave port
    dma_base: str            # where the DMA's registers go
    memory_port: str         # a second high-performance slave port (the accelerator's own memory port)
    memory_clock: str
    memory_ddr: str          # the DDR segment behind it
    memory_width_key: str    # its data width's CONFIG key (and, before it, the key that enables it)
    memory_enable_key: str
    gpio_base: str           # where the control GPIO's registers go


def processing_system(family: str, clock_mhz: float) -> Ps:
    """The processing system of a Zynq-7000 (``xc7``) or Zynq UltraScale+ (``xcup``) part, its fabric clock at
    ``clock_mhz``."""
    clock = f"{clock_mhz:g}"
    if family == "xc7":
        return Ps("xilinx.com:ip:processing_system7:5.5", "xilinx.com:bd_rule:processing_system7",
                  'make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"',
                  (("PCW_USE_M_AXI_GP0", "1"), ("PCW_USE_S_AXI_HP0", "1"), ("PCW_S_AXI_HP0_DATA_WIDTH", "64"),
                   ("PCW_EN_CLK0_PORT", "1"), ("PCW_FPGA0_PERIPHERAL_FREQMHZ", clock)),
                  "FCLK_CLK0", "FCLK_RESET0_N", "M_AXI_GP0", "M_AXI_GP0_ACLK", "S_AXI_HP0", "S_AXI_HP0_ACLK",
                  "S_AXI_HP0/HP0_DDR_LOWOCM", "0x40400000", "S_AXI_HP1", "S_AXI_HP1_ACLK",
                  "S_AXI_HP1/HP1_DDR_LOWOCM", "PCW_S_AXI_HP1_DATA_WIDTH", "PCW_USE_S_AXI_HP1", "0x41200000")
    if family == "xcup":
        return Ps("xilinx.com:ip:zynq_ultra_ps_e:3.4", "xilinx.com:bd_rule:zynq_ultra_ps_e", 'apply_board_preset "1"',
                  (("PSU__USE__M_AXI_GP0", "1"), ("PSU__USE__M_AXI_GP1", "0"), ("PSU__USE__M_AXI_GP2", "0"),
                   ("PSU__USE__S_AXI_GP2", "1"), ("PSU__SAXIGP2__DATA_WIDTH", "128"), ("PSU__FPGA_PL0_ENABLE", "1"),
                   ("PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ", clock)),
                  "pl_clk0", "pl_resetn0", "M_AXI_HPM0_FPD", "maxihpm0_fpd_aclk", "S_AXI_HP0_FPD",
                  "saxihp0_fpd_aclk", "SAXIGP2/HP0_DDR_LOW", "0xA0000000", "S_AXI_HP1_FPD", "saxihp1_fpd_aclk",
                  "SAXIGP3/HP1_DDR_LOW", "PSU__SAXIGP3__DATA_WIDTH", "PSU__USE__S_AXI_GP3", "0xA0010000")
    raise ValueError(f"--deploy builds for Zynq parts (xc7, xcup), not {family!r}")


def build_tcl(*, name: str, board, in_width: int, out_width: int, version: str, memory_bits: int = 0) -> str:
    """``build.tcl`` for the accelerator module ``name`` (its DMA wrapper ``{name}_dma``: ``in_width``-bit input
    and ``out_width``-bit output streams) on ``board``; ``memory_bits``: the width of its memory port (0: none),
    which then goes to a second high-performance port, with the control GPIO for its base and reset."""
    ps = processing_system(board.family, board.clock_mhz)
    settings = ps.config + (((ps.memory_enable_key, "1"), (ps.memory_width_key, str(memory_bits)))
                            if memory_bits else ())
    config = " ".join(f"CONFIG.{key} {{{value}}}" for key, value in settings)
    memory = _memory_tcl(ps, memory_bits) if memory_bits else {key: "" for key in _MEMORY_PARTS}
    return f"""# Builds the bitstream of {name} for {board.name} ({board.description}).
# Written by hwseg {version} for Vivado {VIVADO_VERSION}; run it from anywhere:
#     vivado -mode batch -source build.tcl
# It needs the board files of {board.board_files} (they set the processing system's DDR and MIO).
# The bitstream and its hardware handoff (.bit, .hwh) go into hwseg_driver/, next to the PYNQ driver;
# the timing summary into timing_summary.txt.

set deploy [file dirname [file normalize [info script]]]
set name {name}
set project_dir [file join $deploy vivado]
set driver_dir [file join $deploy hwseg_driver]

if {{[version -short] ne "{VIVADO_VERSION}"}} {{
    puts "WARNING: written for Vivado {VIVADO_VERSION}, running [version -short]: IP versions may differ"
}}
create_project -force ${{name}}_vivado $project_dir -part {board.part}
set board_part [lindex [get_board_parts -quiet -latest_file_version {{{board.board_files}:*}}] 0]
if {{$board_part eq ""}} {{
    error "the Vivado board files of {board.board_files} are not installed; install them (see deploy/README.md) and run again"
}}
set_property board_part $board_part [current_project]

# the accelerator, packaged as an IP; its AXI4-Stream ports (s_axis_*, m_axis_*) are inferred from their names
add_files -norecurse [list [file join $deploy .. $name.v] [file join $deploy ${{name}}_dma.v]]
set_property top ${{name}}_dma [current_fileset]
update_compile_order -fileset sources_1
ipx::package_project -root_dir [file join $project_dir ip] -vendor hwseg.org -library hwseg -taxonomy /UserIP -import_files -set_current false
ipx::open_core [file join $project_dir ip component.xml]
set core [ipx::current_core]
ipx::infer_bus_interfaces xilinx.com:interface:axis_rtl:1.0 $core
{memory['infer']}ipx::infer_bus_interfaces xilinx.com:signal:clock_rtl:1.0 $core
ipx::infer_bus_interfaces xilinx.com:signal:reset_rtl:1.0 $core
set_property value ACTIVE_HIGH [ipx::get_bus_parameters POLARITY -of_objects [ipx::get_bus_interfaces rst -of_objects $core]]
ipx::add_bus_parameter ASSOCIATED_BUSIF [ipx::get_bus_interfaces clk -of_objects $core]
set_property value s_axis:m_axis{memory['busif']} [ipx::get_bus_parameters ASSOCIATED_BUSIF -of_objects [ipx::get_bus_interfaces clk -of_objects $core]]
ipx::add_bus_parameter ASSOCIATED_RESET [ipx::get_bus_interfaces clk -of_objects $core]
set_property value rst [ipx::get_bus_parameters ASSOCIATED_RESET -of_objects [ipx::get_bus_interfaces clk -of_objects $core]]
ipx::create_xgui_files $core
ipx::update_checksums $core
ipx::save_core $core
ipx::unload_core $core
set_property ip_repo_paths [list [file join $project_dir ip]] [current_project]
update_ip_catalog

# the block design
create_bd_design design_1
create_bd_cell -type ip -vlnv {ps.vlnv} ps
apply_bd_automation -rule {ps.rule} -config {{{ps.preset}}} [get_bd_cells ps]
set_property -dict [list {config}] [get_bd_cells ps]
create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma:7.1 axi_dma_0
set_property -dict [list CONFIG.c_include_sg {{0}} CONFIG.c_sg_length_width {{26}} CONFIG.c_m_axis_mm2s_tdata_width {{{in_width}}} CONFIG.c_s_axis_s2mm_tdata_width {{{out_width}}} CONFIG.c_mm2s_burst_size {{16}} CONFIG.c_s2mm_burst_size {{16}}] [get_bd_cells axi_dma_0]
create_bd_cell -type ip -vlnv hwseg.org:hwseg:${{name}}_dma:1.0 accelerator
create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect:1.0 control
set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{{2 if memory_bits else 1}}}] [get_bd_cells control]
create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect:1.0 memory
set_property -dict [list CONFIG.NUM_SI {{2}} CONFIG.NUM_MI {{1}}] [get_bd_cells memory]
create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset:5.0 reset
{memory['cells']}
# streams: DMA MM2S into the accelerator, the accelerator into DMA S2MM
connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXIS_MM2S] [get_bd_intf_pins accelerator/s_axis]
connect_bd_intf_net [get_bd_intf_pins accelerator/m_axis] [get_bd_intf_pins axi_dma_0/S_AXIS_S2MM]
# the DMA's registers behind the processing system's master port; its reads and writes into DDR
connect_bd_intf_net [get_bd_intf_pins ps/{ps.master}] [get_bd_intf_pins control/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins control/M00_AXI] [get_bd_intf_pins axi_dma_0/S_AXI_LITE]
connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXI_MM2S] [get_bd_intf_pins memory/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXI_S2MM] [get_bd_intf_pins memory/S01_AXI]
connect_bd_intf_net [get_bd_intf_pins memory/M00_AXI] [get_bd_intf_pins ps/{ps.slave}]
{memory['links']}
# one clock, the board's {board.clock_mhz:g} MHz, and its reset
connect_bd_net [get_bd_pins ps/{ps.clock}] [get_bd_pins ps/{ps.master_clock}] [get_bd_pins ps/{ps.slave_clock}] [get_bd_pins axi_dma_0/s_axi_lite_aclk] [get_bd_pins axi_dma_0/m_axi_mm2s_aclk] [get_bd_pins axi_dma_0/m_axi_s2mm_aclk] [get_bd_pins accelerator/clk] [get_bd_pins control/aclk] [get_bd_pins memory/aclk] [get_bd_pins reset/slowest_sync_clk]{memory['clocks']}
connect_bd_net [get_bd_pins ps/{ps.resetn}] [get_bd_pins reset/ext_reset_in]
connect_bd_net [get_bd_pins reset/peripheral_aresetn] [get_bd_pins axi_dma_0/axi_resetn] [get_bd_pins control/aresetn] [get_bd_pins memory/aresetn]{memory['resets']}
connect_bd_net [get_bd_pins reset/peripheral_reset] [get_bd_pins accelerator/rst]

# the address map
assign_bd_address -offset {ps.dma_base} -range {DMA_RANGE} -target_address_space [get_bd_addr_spaces ps/Data] [get_bd_addr_segs axi_dma_0/S_AXI_LITE/Reg]
assign_bd_address -target_address_space [get_bd_addr_spaces axi_dma_0/Data_MM2S] [get_bd_addr_segs ps/{ps.ddr}]
assign_bd_address -target_address_space [get_bd_addr_spaces axi_dma_0/Data_S2MM] [get_bd_addr_segs ps/{ps.ddr}]
{memory['addresses']}
validate_bd_design
save_bd_design
add_files -norecurse [make_wrapper -files [get_files design_1.bd] -top]
set_property top design_1_wrapper [current_fileset]
update_compile_order -fileset sources_1

# synthesis, implementation, the bitstream
launch_runs impl_1 -to_step write_bitstream -jobs 4
wait_on_run impl_1
if {{[get_property PROGRESS [get_runs impl_1]] ne "100%"}} {{
    error "implementation of $name did not finish; see [file join $project_dir ${{name}}_vivado.runs impl_1 runme.log]"
}}
open_run impl_1
report_timing_summary -file [file join $deploy timing_summary.txt]
file mkdir $driver_dir
file copy -force [file join $project_dir ${{name}}_vivado.runs impl_1 design_1_wrapper.bit] [file join $driver_dir $name.bit]
file copy -force [file join $project_dir ${{name}}_vivado.gen sources_1 bd design_1 hw_handoff design_1.hwh] [file join $driver_dir $name.hwh]
puts "hwseg: wrote [file join $driver_dir $name.bit] and $name.hwh; timing in [file join $deploy timing_summary.txt]"
"""


_MEMORY_PARTS = ("infer", "busif", "cells", "links", "clocks", "resets", "addresses")


def _memory_tcl(ps: Ps, memory_bits: int) -> dict:
    """The pieces of ``build.tcl`` a design with a memory port adds: its AXI4 master inferred, the control GPIO
    (its region's base, and reset held at power-up) and a SmartConnect to the second high-performance port (which
    also converts AXI4 to the Zynq-7000's AXI3), their clocks, resets and addresses."""
    return {
        "infer": "ipx::infer_bus_interfaces xilinx.com:interface:aximm_rtl:1.0 $core\n",
        "busif": ":m_axi",
        "cells": ("create_bd_cell -type ip -vlnv xilinx.com:ip:axi_gpio:2.0 control_gpio\n"
                  "set_property -dict [list CONFIG.C_IS_DUAL {1} CONFIG.C_ALL_OUTPUTS {1} CONFIG.C_ALL_OUTPUTS_2 {1} "
                  "CONFIG.C_GPIO_WIDTH {32} CONFIG.C_GPIO2_WIDTH {32} "
                  f"CONFIG.C_DOUT_DEFAULT_2 {{0x{1 << CONTROL_RESET_BIT:08X}}}] [get_bd_cells control_gpio]\n"
                  "create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect:1.0 dram\n"
                  "set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] [get_bd_cells dram]\n"),
        "links": ("# the accelerator's own memory port into DDR; its base and reset from the control GPIO\n"
                  "connect_bd_intf_net [get_bd_intf_pins control/M01_AXI] [get_bd_intf_pins control_gpio/S_AXI]\n"
                  "connect_bd_intf_net [get_bd_intf_pins accelerator/m_axi] [get_bd_intf_pins dram/S00_AXI]\n"
                  f"connect_bd_intf_net [get_bd_intf_pins dram/M00_AXI] [get_bd_intf_pins ps/{ps.memory_port}]\n"
                  "connect_bd_net [get_bd_pins control_gpio/gpio_io_o] [get_bd_pins accelerator/ctrl_base_low]\n"
                  "connect_bd_net [get_bd_pins control_gpio/gpio2_io_o] [get_bd_pins accelerator/ctrl_base_high]\n"),
        "clocks": (f" [get_bd_pins ps/{ps.memory_clock}] [get_bd_pins control_gpio/s_axi_aclk]"
                   " [get_bd_pins dram/aclk]"),
        "resets": " [get_bd_pins control_gpio/s_axi_aresetn] [get_bd_pins dram/aresetn]",
        "addresses": (f"assign_bd_address -offset {ps.gpio_base} -range {GPIO_RANGE} -target_address_space "
                      "[get_bd_addr_spaces ps/Data] [get_bd_addr_segs control_gpio/S_AXI/Reg]\n"
                      "assign_bd_address -target_address_space [get_bd_addr_spaces accelerator/m_axi] "
                      f"[get_bd_addr_segs ps/{ps.memory_ddr}]\n"),
    }
