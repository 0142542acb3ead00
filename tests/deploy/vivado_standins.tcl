# Recording stand-ins for the Vivado commands deploy/build.tcl calls (tests/deploy/test_tcl.py), for tclsh.
#
# Each command appends one line to $::standin_log: its name and arguments, tab-separated, so the test can rebuild
# the block design the script asks for. Getters return the names they are given (a block-design object is its
# path); launch_runs writes a stand-in .bit and .hwh where Vivado writes them, so the script's copies are checked
# too. ::standin_board_files lists the board parts "installed" (vendor:board:part0:version).
# What only Vivado can show — that the IP versions, parameter names and pin names exist as written, and that the
# design implements and meets timing — stays for a real run.

proc record {args} {
    set chan [open $::standin_log a]
    puts $chan [join $args "\t"]
    close $chan
}

proc version {args} { record version {*}$args; return "2022.2" }
proc create_project {args} {
    record create_project {*}$args
    set positional {}
    foreach arg $args { if {![string match -* $arg]} { lappend positional $arg } }
    set ::standin_project [lindex $positional 0]
    set ::standin_project_dir [lindex $positional 1]
    file mkdir $::standin_project_dir
    return $::standin_project
}
proc get_board_parts {args} {
    record get_board_parts {*}$args
    set pattern [lindex $args end]
    set found {}
    foreach part $::standin_board_files { if {[string match $pattern $part]} { lappend found $part } }
    return $found
}
proc current_project {args} { return project }
proc current_fileset {args} { return sources_1 }
proc set_property {args} { record set_property {*}$args }
proc get_property {args} { record get_property {*}$args; return "100%" }
proc add_files {args} {
    record add_files {*}$args
    foreach file [lindex $args end] { if {![file exists $file]} { error "add_files: $file does not exist" } }
}
proc update_compile_order {args} { record update_compile_order {*}$args }
proc update_ip_catalog {args} { record update_ip_catalog {*}$args }
namespace eval ipx {
    proc package_project {args} { ::record ipx::package_project {*}$args }
    proc open_core {args} { ::record ipx::open_core {*}$args }
    proc current_core {args} { return core }
    proc infer_bus_interfaces {args} { ::record ipx::infer_bus_interfaces {*}$args }
    proc get_bus_interfaces {args} { return "bus:[lindex $args 0]" }
    proc get_bus_parameters {args} { return "parameter:[lindex $args 0]:[lindex $args end]" }
    proc add_bus_parameter {args} { ::record ipx::add_bus_parameter {*}$args }
    proc create_xgui_files {args} { ::record ipx::create_xgui_files {*}$args }
    proc update_checksums {args} { ::record ipx::update_checksums {*}$args }
    proc save_core {args} { ::record ipx::save_core {*}$args }
    proc unload_core {args} { ::record ipx::unload_core {*}$args }
}
proc create_bd_design {args} { record create_bd_design {*}$args }
proc create_bd_cell {args} { record create_bd_cell {*}$args; return [lindex $args end] }
proc apply_bd_automation {args} { record apply_bd_automation {*}$args }
proc get_bd_cells {args} { return [lindex $args end] }
proc get_bd_pins {args} { return [lindex $args end] }
proc get_bd_intf_pins {args} { return [lindex $args end] }
proc get_bd_addr_spaces {args} { return [lindex $args end] }
proc get_bd_addr_segs {args} { return [lindex $args end] }
proc connect_bd_intf_net {args} { record connect_bd_intf_net {*}$args }
proc connect_bd_net {args} { record connect_bd_net {*}$args }
proc assign_bd_address {args} { record assign_bd_address {*}$args }
proc validate_bd_design {args} { record validate_bd_design {*}$args }
proc save_bd_design {args} { record save_bd_design {*}$args }
proc get_files {args} { return [lindex $args end] }
proc make_wrapper {args} {
    record make_wrapper {*}$args
    set wrapper [file join $::standin_project_dir design_1_wrapper.v]
    set chan [open $wrapper w]; close $chan
    return $wrapper
}
proc get_runs {args} { return [lindex $args end] }
proc launch_runs {args} {
    record launch_runs {*}$args
    set impl [file join $::standin_project_dir $::standin_project.runs impl_1]
    set handoff [file join $::standin_project_dir $::standin_project.gen sources_1 bd design_1 hw_handoff]
    file mkdir $impl $handoff
    set chan [open [file join $impl design_1_wrapper.bit] w]; puts $chan "stand-in bitstream"; close $chan
    set chan [open [file join $handoff design_1.hwh] w]; puts $chan "stand-in handoff"; close $chan
}
proc wait_on_run {args} { record wait_on_run {*}$args }
proc open_run {args} { record open_run {*}$args }
proc report_timing_summary {args} {
    record report_timing_summary {*}$args
    set chan [open [lindex $args end] w]; puts $chan "stand-in timing summary"; close $chan
}
