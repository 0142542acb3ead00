"""Simulation of emitted Verilog against golden: a generated harness under Verilator or Icarus (no Python
in the cycle loop, the default), or cocotb driving the design from Python each cycle."""

from .runner import CosimResult, available_simulators, run_cosim
from .check import compare_beats, pack_frames, unpack_beats
from .axi_memory import AxiMemory
from .harness import Harness, HarnessModel, StreamSink, StreamSource
from .native import build_harness, run_harness, run_program
from .network import HARNESSES, SimReport, random_frames, simulate_design, watchdog_limit

__all__ = ["CosimResult", "available_simulators", "run_cosim", "compare_beats", "pack_frames", "unpack_beats",
           "AxiMemory", "Harness", "HarnessModel", "StreamSink", "StreamSource", "build_harness", "run_harness",
           "run_program",
           "HARNESSES", "SimReport", "random_frames", "simulate_design", "watchdog_limit"]
