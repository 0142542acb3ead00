"""An AXI4 slave memory for the generated harness, with seeded random latency and random ``ready``.

:class:`AxiMemory` is a :class:`~.harness.HarnessModel` on a design's AXI4 master port (``m_axi``
by default): it claims the port's signals, holds a memory of ``size`` bytes in the harness, and
answers the design as DRAM behind an interconnect would, only slower and more erratic on purpose:

* address and write-data channels: ``arready``/``awready``/``wready`` high with probability
  ``+mem_ready`` (a 33-bit threshold, as the stream models take it) in each cycle;
* reads: up to :attr:`outstanding` bursts accepted ahead; each burst's data starts a random
  ``+mem_latency_min`` … ``+mem_latency_max`` cycles after its address was taken, then one beat per
  cycle in which a random draw allows it (``rvalid`` gaps, same threshold), ``rlast`` on the last;
* writes: data beats follow the oldest accepted ``aw`` burst (the slave may wait for the address,
  as AXI allows), ``wstrb`` selects the bytes; the ``b`` response comes a random latency after
  ``wlast``;
* INCR bursts of full-width beats (``awsize``/``arsize`` = the data width, ``awburst``/``arburst`` =
  INCR), aligned and inside the memory; a design asking for anything else sets the model's error
  flag, which ``status.txt`` reports among the counters.

The memory holds byte addresses ``base`` … ``base + size − 1``; with ``base_port`` (the design's ``dram_base``
input, if it has one) the model also drives that port with ``base``, so that a design which forgets to add its
base address reads and writes outside the memory (an error). The memory starts from ``memory_in.hex`` when ``+mem_init=1`` (``$readmemh``, one word per line) and is
written to ``memory_out.hex`` at the end of the run. The run is not done while a write awaits
its response.
"""

from __future__ import annotations

from dataclasses import dataclass

from .harness import HarnessModel

__all__ = ["AxiMemory"]

#: the AXI4 master signals the model drives or reads (without the port prefix); those marked
#: optional may be absent from the design (AXI4 defaults then apply)
_SIGNALS = {
    "awid": True, "arid": True, "bid": True, "rid": True,
    "awaddr": False, "awlen": False, "awsize": True, "awburst": True, "awvalid": False, "awready": False,
    "wdata": False, "wstrb": True, "wlast": False, "wvalid": False, "wready": False,
    "bresp": True, "bvalid": False, "bready": False,
    "araddr": False, "arlen": False, "arsize": True, "arburst": True, "arvalid": False, "arready": False,
    "rdata": False, "rresp": True, "rlast": False, "rvalid": False, "rready": False,
}


@dataclass(frozen=True)
class AxiMemory(HarnessModel):
    """A slave memory of ``size`` bytes on the design's AXI4 master ``port`` (``data_bits`` wide data,
    ``address_bits`` addresses), with up to ``outstanding`` read and write bursts in flight."""
    port: str
    data_bits: int
    address_bits: int
    size: int
    present: frozenset = frozenset(_SIGNALS)
    outstanding: int = 8
    name: str = "mem"
    base: int = 0
    base_port: str | None = None
    id_bits: int = 1

    def __post_init__(self):
        if self.data_bits % 8 or self.data_bits & (self.data_bits - 1) or not 8 <= self.data_bits <= 1024:
            raise ValueError(f"AXI4 data is a power of two of bytes (8 to 1024 bits), not {self.data_bits!r} bits")
        word = self.data_bits // 8
        if self.size <= 0 or self.size % word:
            raise ValueError(f"the memory size is a positive multiple of {word} bytes, not {self.size!r}")
        if self.base < 0 or self.base % 4096 or self.base + self.size > 1 << self.address_bits:
            raise ValueError(f"{self.size} bytes at {self.base:#x} do not fit {self.address_bits}-bit addresses "
                             f"(the base must be a multiple of 4096)")
        if self.outstanding < 1 or self.outstanding & (self.outstanding - 1):
            raise ValueError(f"outstanding bursts are a power of two, not {self.outstanding!r}")
        missing = [s for s, optional in _SIGNALS.items() if not optional and s not in self.present]
        if missing:
            raise ValueError(f"the AXI4 port {self.port} lacks {', '.join(missing)}")

    @classmethod
    def for_ports(cls, ports: list[dict], size: int, port: str = "m_axi", **options) -> "AxiMemory":
        """The model for the AXI4 master ``port`` as a design's port list describes it."""
        widths = {p["name"][len(port) + 1:]: p["width"] for p in ports if p["name"].startswith(port + "_")}
        if "rdata" not in widths or "araddr" not in widths:
            raise ValueError(f"the design has no AXI4 master port {port!r}")
        base_port = "dram_base" if any(p["name"] == "dram_base" for p in ports) else None
        return cls(port, widths["rdata"], widths["araddr"], size, frozenset(s for s in widths if s in _SIGNALS),
                   base_port=base_port, id_bits=widths.get("arid", 1), **options)

    def connections(self) -> dict[str, str]:
        connections = {f"{self.port}_{signal}": f"{self.name}_{signal}" for signal in _SIGNALS if signal in self.present}
        if self.base_port is not None:
            connections[self.base_port] = f"{self.address_bits}'d{self.base}"
        return connections

    @property
    def _words(self) -> int:
        return self.size // (self.data_bits // 8)

    def body(self) -> str:
        n, d, a = self.name, self.data_bits, self.address_bits
        b = d // 8
        shift = (b - 1).bit_length()
        q = self.outstanding
        qb = max(1, (q - 1).bit_length())
        size_code = shift
        optional_inputs = []
        for signal, width, default in (("awsize", 3, size_code), ("arsize", 3, size_code), ("awburst", 2, 1),
                                       ("arburst", 2, 1), ("wstrb", b, (1 << b) - 1)):
            if signal in self.present:
                optional_inputs.append(f"  wire [{width - 1}:0] {n}_{signal};")
            else:
                optional_inputs.append(f"  wire [{width - 1}:0] {n}_{signal} = {width}'d{default};")
        for signal, driven in (("awid", False), ("arid", False), ("bid", True), ("rid", True)):
            if signal in self.present:   # one ID: the master's are not looked at, the responses carry 0
                optional_inputs.append(f"  wire [{self.id_bits - 1}:0] {n}_{signal}" + (" = 0;" if driven else ";"))
        optional_inputs = "\n".join(optional_inputs)

        def below(signal):       # an address under the base (no compare at all for base 0: it is constant)
            return f"{n}_{signal} < {self.base} || " if self.base else ""
        return f"""\
  // {self.port}: an AXI4 slave memory of {self.size} bytes, random latency and ready (hwseg.cosim.axi_memory)
  reg [{d - 1}:0] {n}_memory [0:{self._words - 1}];
  wire [{a - 1}:0] {n}_awaddr, {n}_araddr;
  wire [7:0] {n}_awlen, {n}_arlen;
  wire {n}_awvalid, {n}_wvalid, {n}_wlast, {n}_bready, {n}_arvalid, {n}_rready;
  wire [{d - 1}:0] {n}_wdata;
{optional_inputs}
  reg {n}_awready = 0, {n}_wready = 0, {n}_arready = 0;
  reg {n}_bvalid = 0, {n}_rvalid = 0, {n}_rlast = 0;
  wire [1:0] {n}_bresp = 2'b00, {n}_rresp = 2'b00;
  reg [{d - 1}:0] {n}_rdata = 0;
  reg [63:0] {n}_state, {n}_latency_min, {n}_latency_max;
  reg [32:0] {n}_ready;
  reg [63:0] {n}_draw;
  reg {n}_error = 0;
  reg [63:0] {n}_words_read = 0, {n}_words_written = 0;
  integer {n}_byte;
  // bursts accepted, oldest first: read addresses (word index, beats, due cycle), write addresses, responses
  reg [63:0] {n}_ar_word [0:{q - 1}];
  reg [8:0] {n}_ar_beats [0:{q - 1}];
  reg [63:0] {n}_ar_due [0:{q - 1}];
  reg [{qb}:0] {n}_ar_count = 0;
  reg [{qb - 1}:0] {n}_ar_head = 0, {n}_ar_tail = 0;
  reg [8:0] {n}_r_beat = 0;
  reg [63:0] {n}_aw_word [0:{q - 1}];
  reg [{qb}:0] {n}_aw_count = 0;
  reg [{qb - 1}:0] {n}_aw_head = 0, {n}_aw_tail = 0;
  reg [8:0] {n}_w_beat = 0;
  reg [63:0] {n}_b_due [0:{q - 1}];
  reg [{qb}:0] {n}_b_count = 0;
  reg [{qb - 1}:0] {n}_b_head = 0, {n}_b_tail = 0;
  reg [63:0] {n}_init;
  initial begin
    if (!$value$plusargs("mem_ready=%d", {n}_ready)) {n}_ready = 33'h100000000;
    if (!$value$plusargs("mem_seed=%d", {n}_state)) {n}_state = 1;
    if (!$value$plusargs("mem_latency_min=%d", {n}_latency_min)) {n}_latency_min = 1;
    if (!$value$plusargs("mem_latency_max=%d", {n}_latency_max)) {n}_latency_max = {n}_latency_min;
    if (!$value$plusargs("mem_init=%d", {n}_init)) {n}_init = 0;
    if ({n}_init != 0) $readmemh("memory_in.hex", {n}_memory);
  end
  // separate slices of one draw for the address, read-data and write-data channels
  wire {n}_allow = {{1'b0, {n}_state[63:32]}} < {n}_ready;
  wire {n}_allow_r = {{1'b0, {n}_state[47:16]}} < {n}_ready;
  wire {n}_allow_w = {{1'b0, {n}_state[55:24]}} < {n}_ready;
  wire [63:0] {n}_delay = {n}_latency_min + ({n}_state[31:0] % ({n}_latency_max - {n}_latency_min + 1));
  wire {n}_ar_take = {n}_arvalid && {n}_arready;
  wire {n}_r_take = {n}_rvalid && {n}_rready;
  wire {n}_aw_take = {n}_awvalid && {n}_awready;
  wire {n}_w_take = {n}_wvalid && {n}_wready;
  wire {n}_b_take = {n}_bvalid && {n}_bready;
  wire [63:0] {n}_r_word = {n}_ar_word[{n}_ar_head] + {n}_r_beat;
  wire [63:0] {n}_w_word = {n}_aw_word[{n}_aw_head] + {n}_w_beat;
  always @(posedge clk) if (!rst) begin
    {n}_state <= xorshift64({n}_state);
    // read addresses
    if ({n}_ar_take) begin
      if ({n}_arsize != {size_code} || {n}_arburst != 2'b01 || ({n}_araddr & {b - 1}) != 0
          || {below('araddr')}(({n}_araddr - {self.base}) >> {shift}) + {n}_arlen >= {self._words})
        {n}_error <= 1'b1;
      {n}_ar_word[{n}_ar_tail] <= ({n}_araddr - {self.base}) >> {shift};
      {n}_ar_beats[{n}_ar_tail] <= {n}_arlen + 1;
      {n}_ar_due[{n}_ar_tail] <= cycle + {n}_delay;
      {n}_ar_tail <= {n}_ar_tail + 1;
    end
    {n}_arready <= {n}_allow && {n}_ar_count + {n}_ar_take - ({n}_r_take && {n}_rlast) < {q};
    {n}_ar_count <= {n}_ar_count + {n}_ar_take - ({n}_r_take && {n}_rlast);
    // read data: the oldest burst, once due, a beat whenever a draw allows it
    if ({n}_r_take) {n}_words_read <= {n}_words_read + 1;
    if ({n}_w_take) {n}_words_written <= {n}_words_written + 1;
    if ({n}_r_take) begin
      {n}_r_beat <= {n}_rlast ? 0 : {n}_r_beat + 1;
      if ({n}_rlast) {n}_ar_head <= {n}_ar_head + 1;
    end
    if (!{n}_rvalid || {n}_r_take) begin
      if ({n}_ar_count - ({n}_r_take && {n}_rlast) != 0 && {n}_allow_r) begin
        if ({n}_r_take && {n}_rlast) begin
          if ({n}_ar_due[{n}_ar_head + 1] <= cycle) begin
            {n}_rdata <= {n}_memory[{n}_ar_word[{n}_ar_head + 1]];
            {n}_rlast <= {n}_ar_beats[{n}_ar_head + 1] == 1;
            {n}_rvalid <= 1'b1;
          end else
            {n}_rvalid <= 1'b0;
        end else if ({n}_ar_due[{n}_ar_head] <= cycle) begin
          {n}_rdata <= {n}_memory[{n}_r_word + {n}_r_take];
          {n}_rlast <= {n}_ar_beats[{n}_ar_head] == {n}_r_beat + {n}_r_take + 1;
          {n}_rvalid <= 1'b1;
        end else
          {n}_rvalid <= 1'b0;
      end else
        {n}_rvalid <= 1'b0;
    end
    // write addresses and data
    if ({n}_aw_take) begin
      if ({n}_awsize != {size_code} || {n}_awburst != 2'b01 || ({n}_awaddr & {b - 1}) != 0
          || {below('awaddr')}(({n}_awaddr - {self.base}) >> {shift}) + {n}_awlen >= {self._words})
        {n}_error <= 1'b1;
      {n}_aw_word[{n}_aw_tail] <= ({n}_awaddr - {self.base}) >> {shift};
      {n}_aw_tail <= {n}_aw_tail + 1;
    end
    // every burst in flight holds a place until its response is taken
    {n}_awready <= {n}_allow && {n}_aw_count + {n}_aw_take + {n}_b_count - {n}_b_take < {q};
    {n}_aw_count <= {n}_aw_count + {n}_aw_take - ({n}_w_take && {n}_wlast);
    if ({n}_w_take) begin
      for ({n}_byte = 0; {n}_byte < {b}; {n}_byte = {n}_byte + 1)
        if ({n}_wstrb[{n}_byte]) {n}_memory[{n}_w_word][{n}_byte * 8 +: 8] <= {n}_wdata[{n}_byte * 8 +: 8];
      {n}_w_beat <= {n}_wlast ? 0 : {n}_w_beat + 1;
      if ({n}_wlast) begin
        {n}_aw_head <= {n}_aw_head + 1;
        {n}_b_due[{n}_b_tail] <= cycle + {n}_delay;
        {n}_b_tail <= {n}_b_tail + 1;
      end
    end
    // a beat is taken only for a burst whose address was taken in an earlier cycle
    {n}_wready <= {n}_allow_w && {n}_aw_count + {n}_aw_take - ({n}_w_take && {n}_wlast) != 0;
    // write responses
    if ({n}_b_take) {n}_b_head <= {n}_b_head + 1;
    {n}_b_count <= {n}_b_count + ({n}_w_take && {n}_wlast) - {n}_b_take;
    if (!{n}_bvalid || {n}_b_take)
      {n}_bvalid <= {n}_b_count - {n}_b_take != 0 && {n}_b_due[{n}_b_head + {n}_b_take] <= cycle;
  end
"""

    @property
    def progress(self) -> str:
        n = self.name
        return f"({n}_ar_take || {n}_r_take || {n}_aw_take || {n}_w_take || {n}_b_take)"

    @property
    def done(self) -> str:
        n = self.name
        return f"({n}_aw_count == 0 && {n}_b_count == 0 && !{n}_bvalid)"

    def finish(self) -> str:
        return f'$writememh("memory_out.hex", {self.name}_memory);'

    def counters(self) -> list[str]:
        return [f"{self.name}_error", f"{self.name}_words_read", f"{self.name}_words_written"]
