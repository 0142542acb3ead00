"""Verilog emission (deterministic: no source locations) and the port list."""

from __future__ import annotations

from amaranth import Shape
from amaranth.back import verilog
from amaranth.lib import wiring

__all__ = ["emit_verilog", "port_list"]


def emit_verilog(top: wiring.Component, name: str) -> str:
    """The Verilog of ``top`` as module ``name``; byte-identical for identical inputs."""
    return verilog.convert(top, name=name, emit_src=False)


def port_list(top: wiring.Component) -> list[dict]:
    """Every top-level port: name, direction and width, clock and reset first."""
    ports = [
        {"name": "clk", "direction": "in", "width": 1, "role": "clock (rising edge)"},
        {"name": "rst", "direction": "in", "width": 1, "role": "synchronous reset, active high"},
    ]
    for path, member, _ in top.signature.flatten(top):
        ports.append({"name": "__".join(str(p) for p in path), "direction": member.flow.value.lower(),
                      "width": Shape.cast(member.shape).width})
    return ports
