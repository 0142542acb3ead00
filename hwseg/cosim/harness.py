"""A generated simulation harness with no Python in the cycle loop.

The harness is a plain Verilog-2005 module, ``hwseg_harness``, that instantiates the emitted
accelerator and the models on its ports. It runs unchanged under Verilator (a small generated
C++ ``main`` toggles the clock) and under Icarus (a generated clock module); the caller packs
the stimulus into files beforehand and reads the results afterwards.

Each model on the accelerator's ports is a :class:`HarnessModel`: it adds its declarations and
clocked logic to the harness, connects the design's ports it owns, and reports two things to
the harness each cycle — ``progress`` (a transfer happened) for the silence watchdog, and
``done`` (it has all it waits for) to end the run. The run ends when every model is done, or
when no model made progress for ``+silence_limit`` cycles. Today there are two models:

* :class:`StreamSource` drives a slave AXI4-Stream from ``stimulus.bin`` (each beat as its bytes,
  most significant first; ``$fread`` takes them faster than ``$fscanf`` parses text), raising
  ``tvalid`` at random with a seeded xorshift64 generator (``tvalid`` never waits for ``tready``; the beat is held until taken) and ``tlast`` on each frame's last beat;
* :class:`StreamSink` takes a master AXI4-Stream with a seeded random ``tready`` and writes
  each beat as ``cycle tlast tdata`` (decimal, decimal, hexadecimal) to ``beats.txt``.

The harness writes ``status.txt`` last: ``ok`` or ``stalled``, then the cycles simulated and each
model's counters. Files are named relative to the simulator's working directory. Run-time
parameters (beat counts, probabilities as 32-bit thresholds, seeds, the watchdog limit) are
plusargs, so one build serves every run of the same design.

A memory-mapped model plugs in the same way: :class:`~.axi_memory.AxiMemory`, an AXI4 slave memory
with random latency and ready, claims the design's ``m_axi`` port, holds its clocked logic and its
contents (loaded from and written to files of its own, the latter in its ``finish``), and joins
the watchdog and the end condition with its ``progress`` and ``done``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["HarnessModel", "StreamSource", "StreamSink", "Harness", "threshold", "seed_state", "TOP", "RESET_CYCLES"]

TOP = "hwseg_harness"
#: cycles the harness holds the design in reset before the first cycle it counts
RESET_CYCLES = 4


def threshold(probability: float) -> int:
    """A probability as the 33-bit threshold the harness compares a 32-bit random draw with."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"a probability lies in [0, 1], not {probability!r}")
    return round(probability * (1 << 32))


def seed_state(seed: int, stream: int) -> int:
    """A non-zero xorshift64 state for one generator of a run (splitmix64 of seed and stream)."""
    z = (seed * 0x9E3779B97F4A7C15 + (stream + 1) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    z ^= z >> 31
    return z or 1


class HarnessModel(ABC):
    """A model attached to some of the accelerator's ports (see the module docstring)."""

    #: the identifier its harness signals are prefixed with
    name: str

    @abstractmethod
    def connections(self) -> dict[str, str]:
        """Design port → the harness expression connected to it."""

    @abstractmethod
    def body(self) -> str:
        """Declarations and clocked logic (``clk``, ``rst``, ``cycle`` are in scope)."""

    @property
    @abstractmethod
    def progress(self) -> str:
        """An expression, true in a cycle in which the model transferred something."""

    @property
    @abstractmethod
    def done(self) -> str:
        """An expression, true once the model has all it waits for."""

    def counters(self) -> list[str]:
        """Signals written (in order, decimal) to ``status.txt`` after the cycle count."""
        return []

    def finish(self) -> str:
        """Statements run as the run ends (a memory model writes its contents out)."""
        return ""


_XORSHIFT = """\
  function [63:0] xorshift64;
    input [63:0] x;
    reg [63:0] y;
    begin
      y = x ^ (x << 13);
      y = y ^ (y >> 7);
      xorshift64 = y ^ (y << 17);
    end
  endfunction
"""


@dataclass(frozen=True)
class ConstantInputs(HarnessModel):
    """Holds input ports at constant values, ``(port, width, value)`` each: registers a board's host sets before
    the design runs (the control GPIO of a deployed design)."""
    values: tuple[tuple[str, int, int], ...]
    name: str = "constants"

    def connections(self) -> dict[str, str]:
        return {port: f"{width}'d{value}" for port, width, value in self.values}

    def body(self) -> str:
        return ""

    @property
    def progress(self) -> str:
        return "1'b0"

    @property
    def done(self) -> str:
        return "1'b1"


@dataclass(frozen=True)
class _StreamModel(HarnessModel):
    """What both stream models share: the four AXI4-Stream signals of ``port`` and a transfer as progress."""
    port: str
    width: int
    name: str

    def connections(self) -> dict[str, str]:
        return {f"{self.port}_{signal}": f"{self.name}_{signal}" for signal in ("tdata", "tvalid", "tready", "tlast")}

    @property
    def progress(self) -> str:
        return f"({self.name}_tvalid && {self.name}_tready)"


@dataclass(frozen=True)
class StreamSource(_StreamModel):
    """Drives the design's slave AXI4-Stream ``port`` (``tdata`` of ``width`` bits) from ``stimulus.bin``.

    Plusargs: ``in_beats`` (total), ``in_frame`` (beats per frame, for ``tlast``), ``in_free`` (leading
    beats sent without gaps), ``in_valid`` (threshold of the ``tvalid`` draw), ``in_seed``.
    """
    name: str = "src"

    def __post_init__(self):
        if self.width % 8:
            raise ValueError(f"AXI4-Stream tdata is whole bytes, not {self.width!r} bits")

    def body(self) -> str:
        n, w = self.name, self.width
        return f"""\
  // {self.port}: beats from stimulus.bin, tvalid raised at random and held until the beat is taken
  reg [{w - 1}:0] {n}_tdata = 0;
  reg {n}_tvalid = 0;
  reg {n}_tlast = 0;
  wire {n}_tready;
  reg [{w - 1}:0] {n}_next;
  reg [63:0] {n}_beats, {n}_frame, {n}_free, {n}_state;
  reg [32:0] {n}_valid;
  reg [63:0] {n}_loaded = 0, {n}_sent = 0, {n}_position = 0;
  integer {n}_fd, {n}_code;
  initial begin
    if (!$value$plusargs("in_beats=%d", {n}_beats)) {n}_beats = 0;
    if (!$value$plusargs("in_frame=%d", {n}_frame)) {n}_frame = 1;
    if (!$value$plusargs("in_free=%d", {n}_free)) {n}_free = 0;
    if (!$value$plusargs("in_valid=%d", {n}_valid)) {n}_valid = 33'h100000000;
    if (!$value$plusargs("in_seed=%d", {n}_state)) {n}_state = 1;
    {n}_fd = $fopen("stimulus.bin", "rb");
    if ({n}_fd == 0) begin
      $display("hwseg harness: cannot open stimulus.bin");
      $finish;
    end
  end
  always @(posedge clk) if (!rst) begin
    {n}_state <= xorshift64({n}_state);
    if ({n}_tvalid && {n}_tready) {n}_sent <= {n}_sent + 1;
    if (!{n}_tvalid || {n}_tready) begin
      if ({n}_loaded < {n}_beats && ({n}_loaded < {n}_free || {{1'b0, {n}_state[63:32]}} < {n}_valid)) begin
        {n}_code = $fread({n}_next, {n}_fd);
        {n}_tdata <= {n}_next;
        {n}_tlast <= {n}_position == {n}_frame - 1;
        {n}_position <= {n}_position == {n}_frame - 1 ? 0 : {n}_position + 1;
        {n}_tvalid <= 1'b1;
        {n}_loaded <= {n}_loaded + 1;
      end else
        {n}_tvalid <= 1'b0;
    end
  end
"""

    @property
    def done(self) -> str:
        return "1'b1"   # the sink decides when the run is over; input may legitimately remain unsent

    def counters(self) -> list[str]:
        return [f"{self.name}_sent"]


@dataclass(frozen=True)
class StreamSink(_StreamModel):
    """Takes the design's master AXI4-Stream ``port`` with a random ``tready`` and logs every beat to
    ``beats.txt``. Plusargs: ``out_beats`` (total; the run is done when all arrived), ``out_free``
    (leading beats taken without backpressure), ``out_ready`` (threshold), ``out_seed``."""
    name: str = "snk"

    def body(self) -> str:
        n, w = self.name, self.width
        return f"""\
  // {self.port}: tready drawn at random every cycle, every beat taken logged as "cycle tlast tdata"
  wire [{w - 1}:0] {n}_tdata;
  wire {n}_tvalid, {n}_tlast;
  reg {n}_tready = 0;
  reg [63:0] {n}_beats, {n}_free, {n}_state;
  reg [32:0] {n}_ready;
  reg [63:0] {n}_received = 0;
  integer {n}_fd;
  initial begin
    if (!$value$plusargs("out_beats=%d", {n}_beats)) {n}_beats = 0;
    if (!$value$plusargs("out_free=%d", {n}_free)) {n}_free = 0;
    if (!$value$plusargs("out_ready=%d", {n}_ready)) {n}_ready = 33'h100000000;
    if (!$value$plusargs("out_seed=%d", {n}_state)) {n}_state = 1;
    {n}_fd = $fopen("beats.txt", "w");
  end
  always @(posedge clk) if (!rst) begin
    {n}_state <= xorshift64({n}_state);
    if ({n}_tvalid && {n}_tready) begin
      $fwrite({n}_fd, "%0d %0d %h\\n", cycle, {n}_tlast, {n}_tdata);
      {n}_received <= {n}_received + 1;
    end
    {n}_tready <= {n}_received < {n}_free || {{1'b0, {n}_state[63:32]}} < {n}_ready;
  end
"""

    @property
    def done(self) -> str:
        return f"({self.name}_received >= {self.name}_beats)"

    def counters(self) -> list[str]:
        return [f"{self.name}_received"]


class Harness:
    """The harness for a design with ports ``ports`` (``Design.ports``) and module name ``top``,
    with the given models on its ports (default: a stream source on ``s_axis``, a sink on ``m_axis``).

    Every port of the design except ``clk`` and ``rst`` must be claimed by exactly one model.
    """

    def __init__(self, top: str, ports: list[dict], models: list[HarnessModel] | None = None):
        self.top = top
        self.ports = {p["name"]: p for p in ports}
        if models is None:
            models = [StreamSource("s_axis", self._width("s_axis_tdata")),
                      StreamSink("m_axis", self._width("m_axis_tdata"))]
        self.models = list(models)
        claimed: dict[str, str] = {}
        for model in self.models:
            for port, expression in model.connections().items():
                if port not in self.ports:
                    raise ValueError(f"model {model.name} connects port {port!r}, which {top} does not have")
                if port in claimed:
                    raise ValueError(f"port {port!r} of {top} is claimed by both {claimed[port]} and {model.name}")
                claimed[port] = model.name
        self.connections = {port: expression for model in self.models
                            for port, expression in model.connections().items()}
        loose = [name for name in self.ports if name not in ("clk", "rst") and name not in self.connections]
        if loose:
            raise ValueError(f"no harness model drives port(s) {', '.join(loose)} of {top}")

    def _width(self, port: str) -> int:
        if port not in self.ports:
            raise ValueError(f"{self.top} has no port {port!r}")
        return self.ports[port]["width"]

    def verilog(self) -> str:
        """The harness module (Verilog-2005)."""
        connections = ",\n".join(f"    .{port}({self.connections.get(port, port)})" for port in self.ports)
        progress = " || ".join(model.progress for model in self.models) or "1'b0"
        done = " && ".join(model.done for model in self.models) or "1'b1"
        counters = [c for model in self.models for c in model.counters()]
        finish = [f"        {model.finish()}" for model in self.models if model.finish()]
        formats = " ".join(["%0d"] * (len(counters) + 1))
        status_args = ", ".join(["cycle", *counters])
        return "\n".join([
            "// Generated by hwseg (hwseg.cosim.harness): a simulation harness, no Python in the cycle loop.",
            f"module {TOP}(input wire clk);",
            f"  reg rst = 1'b1;",
            "  reg [7:0] reset_count = 0;",
            "  reg [63:0] cycle = 0, silent = 0, silence_limit;",
            "  integer status_fd;",
            _XORSHIFT,
            "  initial if (!$value$plusargs(\"silence_limit=%d\", silence_limit)) silence_limit = 1000000;",
            *[model.body() for model in self.models],
            f"  {self.top} dut(\n{connections}\n  );",
            "",
            "  // reset, the cycle count, the silence watchdog and the end of the run",
            "  always @(posedge clk) begin",
            "    if (rst) begin",
            "      reset_count <= reset_count + 1;",
            f"      if (reset_count == {RESET_CYCLES - 1}) rst <= 1'b0;",
            "    end else begin",
            "      cycle <= cycle + 1;",
            f"      silent <= ({progress}) ? 0 : silent + 1;",
            f"      if ({done} || silent >= silence_limit) begin",
            *finish,
            "        status_fd = $fopen(\"status.txt\", \"w\");",
            f"        if ({done}) $fdisplay(status_fd, \"ok {formats}\", {status_args});",
            f"        else $fdisplay(status_fd, \"stalled {formats}\", {status_args});",
            "        $fclose(status_fd);",
            "        $finish;",
            "      end",
            "    end",
            "  end",
            "endmodule",
            "",
        ])

    @staticmethod
    def verilator_main() -> str:
        """The C++ ``main`` Verilator builds the harness with: it only toggles the clock."""
        return f"""\
// Generated by hwseg (hwseg.cosim.harness): clocks the harness until it calls $finish.
#include "V{TOP}.h"
#include "verilated.h"

int main(int argc, char** argv) {{
    VerilatedContext* context = new VerilatedContext;
    context->commandArgs(argc, argv);
    V{TOP}* top = new V{TOP}{{context}};
    top->clk = 0;
    top->eval();
    while (!context->gotFinish()) {{
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
    }}
    top->final();
    delete top;
    delete context;
    return 0;
}}
"""

    @staticmethod
    def icarus_clock() -> str:
        """The top module Icarus runs: a free-running clock around the harness."""
        return "\n".join([
            "// Generated by hwseg (hwseg.cosim.harness): a clock for the harness under Icarus.",
            f"module {TOP}_clock;",
            "  reg clk = 1'b0;",
            "  always #1 clk = ~clk;",
            f"  {TOP} harness(.clk(clk));",
            "endmodule",
            "",
        ])
