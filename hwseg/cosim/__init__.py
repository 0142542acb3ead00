"""Co-simulation of emitted Verilog with cocotb (Verilator or Icarus), checked against golden."""

from .runner import CosimResult, available_simulators, run_cosim
from .check import compare_beats, pack_frames, unpack_beats
from .network import SimReport, random_frames, simulate_design

__all__ = ["CosimResult", "available_simulators", "run_cosim", "compare_beats", "pack_frames", "unpack_beats",
           "SimReport", "random_frames", "simulate_design"]
