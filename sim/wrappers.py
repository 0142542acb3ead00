"""Verilog wrappers the simulation tests put around a design to break it on purpose."""


def never_valid(design) -> str:
    """The design's Verilog behind a wrapper with the same ports whose output never becomes valid."""
    inner = design.verilog.replace(f"module {design.name}(", f"module {design.name}_inner(")
    names = [p["name"] for p in design.ports]
    declarations = [f"  {'input' if p['direction'] == 'in' else 'output'} [{p['width'] - 1}:0] {p['name']};"
                    for p in design.ports]
    connections = ", ".join(f".{n}({n})" if n != "m_axis_tvalid" else ".m_axis_tvalid()" for n in names)
    wrapper = "\n".join([f"module {design.name}({', '.join(names)});", *declarations,
                         f"  {design.name}_inner inner({connections});", "  assign m_axis_tvalid = 1'b0;",
                         "endmodule", ""])
    return inner + "\n" + wrapper
