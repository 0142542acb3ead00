"""Buffers in DRAM: their geometry, DRAM traffic and cycles, as :mod:`hwseg.hw.dram` builds them.

The hardware (:class:`hwseg.hw.dram.DramRowTaps`, :class:`hwseg.hw.dram.DramFifo`) computes the same
figures from its own parameters; ``tests/estimate/test_offchip.py`` checks that both agree, so the
estimate, the stream timing and the report read them from here.

A buffer placed in DRAM carries its memory parameters in ``attrs["memory"]`` (:func:`memory_parameters`,
from the board's ``[dram]`` table): the port's data width and address width, the burst length, the
bursts in flight and the on-chip staging, which covers the memory's latency at a word a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedError
from .resources import signed_bits

__all__ = ["memory_parameters", "RowTapsGeometry", "row_taps_geometry", "FifoGeometry", "fifo_geometry",
           "REGION_ALIGN", "OUTSTANDING", "DramBuffer", "row_taps_of", "skip_fifo_of", "dram_buffers",
           "offchip_fifos", "uses_dram", "PACKED_WORD_BITS", "folds_per_word", "WeightStore", "weight_store_of",
           "loads_weights"]

#: Bursts in flight per buffer (reads and writes each).
OUTSTANDING = 4
#: Each buffer's region starts on a 4 KiB boundary.
REGION_ALIGN = 4096


def memory_parameters(dram, clock_mhz: float) -> dict:
    """The memory parameters of a buffer in ``dram`` (a :class:`hwseg.boards.Dram`) at ``clock_mhz``: the
    read staging holds two bursts plus what arrives during one latency at a word a cycle (whole bursts)."""
    latency = dram.latency_cycles(clock_mhz)
    staging = dram.burst * (2 + -(-latency // dram.burst))
    return {"data_bits": dram.data_bits, "address_bits": dram.address_bits, "burst": dram.burst,
            "outstanding": OUTSTANDING, "read_buffer": staging, "latency": latency}


def _words_per_beat(bits: int, data_bits: int) -> int:
    return -(-bits // data_bits)


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


@dataclass(frozen=True)
class RowTapsGeometry:
    """:class:`hwseg.hw.dram.DramRowTaps`: a ring of ``ring_rows`` row slots of ``row_stride`` words in DRAM, the
    intake up to ``ahead_rows`` rows ahead of the rows the output needs."""
    taps: int
    height: int
    width: int
    stride: int
    padding: int
    dilation: int
    words_per_beat: int
    row_words: int
    row_stride: int
    ring_rows: int
    data_bits: int
    out_height: int
    first_output_row: int
    frame_rows: int

    @property
    def region_bytes(self) -> int:
        """The ring of row slots and the row of zeros after it (read for padding taps)."""
        return (self.ring_rows + 1) * self.row_stride * self.data_bits // 8

    @property
    def setup_write_words(self) -> int:
        """Written once after reset: the row of zeros."""
        return self.row_words

    def output_row(self, row_time: int):
        offset = row_time - self.first_output_row
        if offset < 0 or offset % self.stride or offset // self.stride >= self.out_height:
            return None
        return offset // self.stride

    def reads(self, row_time: int) -> int:
        """Taps read back in row time ``row_time``: all of them (padding from the zero row), 0 if it gives no
        output."""
        return 0 if self.output_row(row_time) is None else self.taps

    def row_time_cycles(self, row_time: int) -> int:
        """The output side's cycles in a row time (one for a row time without output)."""
        if self.output_row(row_time) is None:
            return 1
        return self.width * self.words_per_beat * max(self.reads(row_time), 1)

    @property
    def cycles_per_frame(self) -> int:
        """The output side's row times, or the intake's words if the write channel is slower."""
        return max(sum(self.row_time_cycles(t) for t in range(self.frame_rows)), self.write_words)

    @property
    def ahead_rows(self) -> int:
        return max(self.first_output_row, self.frame_rows - self.height) + 2

    @property
    def write_words(self) -> int:
        return self.height * self.row_words

    @property
    def read_words(self) -> int:
        return self.row_words * sum(self.reads(t) for t in range(self.frame_rows))

    @property
    def traffic_bytes(self) -> int:
        """DRAM bytes per frame, written and read."""
        return (self.write_words + self.read_words) * self.data_bits // 8


def row_taps_geometry(*, channels: int, elem_bits: int, height: int, width: int, taps: int, stride: int,
                      padding: int, dilation: int, data_bits: int, burst: int) -> RowTapsGeometry:
    span = (taps - 1) * dilation
    out_height = (height + 2 * padding - span - 1) // stride + 1
    first = span - padding
    words = _words_per_beat(channels * elem_bits, data_bits)
    row_words = width * words
    frame_rows = max(height, first + (out_height - 1) * stride + 1)
    ahead = max(first, frame_rows - height) + 2
    return RowTapsGeometry(taps=taps, height=height, width=width, stride=stride, padding=padding, dilation=dilation,
                           words_per_beat=words, row_words=row_words, row_stride=-(-row_words // burst) * burst,
                           ring_rows=_pow2(span + ahead), data_bits=data_bits, out_height=out_height,
                           first_output_row=first, frame_rows=frame_rows)


@dataclass(frozen=True)
class FifoGeometry:
    """:class:`hwseg.hw.dram.DramFifo`: a ring of ``region_words`` words."""
    words_per_beat: int
    region_words: int
    data_bits: int

    @property
    def region_bytes(self) -> int:
        return self.region_words * self.data_bits // 8

    @property
    def capacity(self) -> int:
        return self.region_words // self.words_per_beat

    def traffic_bytes(self, beats_per_frame: int) -> int:
        """Each beat's words written once and read once."""
        return 2 * beats_per_frame * self.words_per_beat * self.data_bits // 8


def fifo_geometry(*, beat_bits: int, depth: int, data_bits: int, burst: int) -> FifoGeometry:
    words = _words_per_beat(beat_bits, data_bits)
    return FifoGeometry(words_per_beat=words, region_words=_pow2(max(burst, depth * words)), data_bits=data_bits)


@dataclass(frozen=True)
class DramBuffer:
    """One buffer in DRAM: the layer that owns it, what it is (``rows``: a RowTaps' line buffer; ``fifo``: the FIFO
    on its input ``input``; ``weights``: its share of the weight image, read once after reset), its region and its
    traffic per frame."""
    layer: str
    kind: str
    input: str
    region_bytes: int
    read_bytes: int
    write_bytes: int
    #: bytes moved once after reset, not per frame (the weight image read, a line buffer's zero row written)
    setup_read_bytes: int = 0
    setup_write_bytes: int = 0

    @property
    def traffic_bytes(self) -> int:
        return self.read_bytes + self.write_bytes

    @property
    def describe(self) -> str:
        return {"rows": "rows (line buffer)", "weights": "weights (read once after reset)"}.get(
            self.kind, f"FIFO on input {self.input}")

    def as_dict(self) -> dict:
        return {"layer": self.layer, "kind": self.kind, "input": self.input, "region_bytes": self.region_bytes,
                "read_bytes_per_frame": self.read_bytes, "write_bytes_per_frame": self.write_bytes,
                "setup_read_bytes": self.setup_read_bytes, "setup_write_bytes": self.setup_write_bytes}


def _memory(node) -> dict:
    memory = node.attrs.get("memory")
    if memory is None:
        raise UnsupportedError(f"layer {node.name!r} ({node.op.describe()}) keeps a buffer in DRAM but has no memory "
                               f"parameters; the buffer placement gives them")
    return memory


def row_taps_of(graph, node) -> RowTapsGeometry:
    """The DRAM geometry of a RowTaps node, from its input and its ``attrs["memory"]``."""
    memory, op, x = _memory(node), node.op, graph.input_types(node.name)[0]
    return row_taps_geometry(channels=x.channels, elem_bits=x.dtype.bits, height=x.height, width=x.width,
                             taps=op.taps, stride=op.stride, padding=op.padding, dilation=op.dilation,
                             data_bits=memory["data_bits"], burst=memory["burst"])


def region_address_bits(region_bytes: int) -> int:
    """The address bits a buffer in DRAM drives: its region's, addressed from 0 (the arbiter or the top level
    adds the region's place, ``hwseg.backend.top``; synthesis drops the constant-zero bits above)."""
    return max(1, (region_bytes - 1).bit_length())


def offchip_fifos(node) -> tuple[bool, ...]:
    """Which inputs of a join keep their FIFO in DRAM (``attrs["fifo_offchip"]``)."""
    return tuple(node.attrs.get("fifo_offchip", ())) or (False,) * len(node.inputs)


def skip_fifo_of(graph, node, k: int) -> tuple[FifoGeometry, int, int]:
    """The DRAM FIFO on input ``k`` of a node, its depth and its lanes per beat (``attrs["fifo_lanes"]``,
    ``hwseg.passes.place_fifos.dram_fifo_lanes``): the backend regroups the input into beats of that many lanes and
    keeps ``⌈depth · in_lanes / lanes⌉`` of them (the depth the passes gave, in the node's beats of ``in_lanes``: a
    join's ``skip_fifos``, a layer's ``fifo_depth``)."""
    memory, x = _memory(node), graph.input_types(node.name)[k]
    taken = x.channels if type(node.op).__name__ == "Concat" else node.attrs["in_lanes"]
    if "fifo_lanes" not in node.attrs:
        raise UnsupportedError(f"layer {node.name!r} has a FIFO in DRAM but no fifo_lanes; run place_fifos")
    lanes = node.attrs["fifo_lanes"][k]
    depths = node.attrs["skip_fifos"] if "skip_fifos" in node.attrs else (node.attrs["fifo_depth"],) * len(node.inputs)
    beats = -(-depths[k] * taken // lanes)
    return fifo_geometry(beat_bits=lanes * x.dtype.bits, depth=beats, data_bits=memory["data_bits"],
                         burst=memory["burst"]), beats, lanes


def dram_buffers(graph, node) -> list[DramBuffer]:
    """The buffers ``node`` keeps in DRAM (none for most)."""
    word = lambda memory: memory["data_bits"] // 8
    if type(node.op).__name__ == "RowTaps" and node.attrs.get("offchip"):
        geometry, memory = row_taps_of(graph, node), _memory(node)
        return [DramBuffer(node.name, "rows", node.inputs[0], geometry.region_bytes,
                           geometry.read_words * word(memory), geometry.write_words * word(memory),
                           setup_write_bytes=geometry.setup_write_words * word(memory))]
    buffers = []
    if loads_weights(node):      # read once after reset, not per frame
        image = weight_store_of(graph, node).image_bytes
        buffers.append(DramBuffer(node.name, "weights", "", image, 0, 0, setup_read_bytes=image))
    for k, offchip in enumerate(offchip_fifos(node)):
        if offchip:
            geometry, _, lanes = skip_fifo_of(graph, node, k)
            x = graph.input_types(node.name)[k]
            traffic = geometry.traffic_bytes(x.pixels * x.channels // lanes) // 2
            buffers.append(DramBuffer(node.name, "fifo", node.inputs[k], geometry.region_bytes, traffic, traffic))
    return buffers


#: loaded weights pack folds into memory words of up to this many bits, an UltraRAM word
#: (:attr:`hwseg.hw.mac_array.MacArray.folds_per_word`)
PACKED_WORD_BITS = 72


def folds_per_word(fold_bits: int, folds: int) -> int:
    """Folds of ``fold_bits`` packed in one word of a loaded weight memory of ``folds`` folds: a power of two, as
    many as fit :data:`PACKED_WORD_BITS`, no more than the folds rounded up to a power of two."""
    if fold_bits * 2 > PACKED_WORD_BITS:
        return 1
    return min(1 << (PACKED_WORD_BITS // fold_bits).bit_length() - 1, _pow2(folds))


@dataclass(frozen=True)
class WeightStore:
    """A convolution's loaded weight memory: ``depth`` words of ``word_bits`` (``folds_per_word`` folds of
    ``fold_bits`` each), and its share of the weight image in DRAM (each word in whole memory words)."""
    fold_bits: int
    folds: int
    data_bits: int

    @property
    def folds_per_word(self) -> int:
        return folds_per_word(self.fold_bits, self.folds)

    @property
    def word_bits(self) -> int:
        return self.fold_bits * self.folds_per_word

    @property
    def depth(self) -> int:
        return -(-self.folds // self.folds_per_word)

    @property
    def image_bytes(self) -> int:
        return self.depth * _words_per_beat(self.word_bits, self.data_bits) * self.data_bits // 8


def loads_weights(node) -> bool:
    """Whether a convolution keeps its weights in RAM loaded from DRAM (``attrs["weight_memory"] == "uram"``)."""
    return node.attrs.get("weight_memory") == "uram"


def weight_store_of(graph, node, pe: int | None = None, simd: int | None = None) -> WeightStore:
    """The loaded weight memory of a convolution at its folding (or at ``pe`` × ``simd``): a fold is ``pe × simd``
    weights of the width the weights' values need (as the MAC array takes it)."""
    memory, op, x = _memory(node), node.op, graph.input_types(node.name)[0]
    pe = node.attrs["pe"] if pe is None else pe
    simd = node.attrs["simd"] if simd is None else simd
    width = signed_bits(op.weight)
    in_count = op.kernel[0] * op.kernel[1] * x.channels
    return WeightStore(pe * simd * width, (op.out_channels // pe) * (in_count // simd), memory["data_bits"])


def shared_weight_ram(graph, node) -> list[WeightStore] | None:
    """For a convolution whose loaded weights share a :class:`hwseg.hw.weights.WeightRam` (``attrs["weight_ram"]``,
    :func:`hwseg.offchip.pair_weight_rams`): its clients' stores where the node is client 0 (the RAM is counted
    once, there), ``[]`` where it is another client; None for a memory of its own."""
    if "weight_ram" not in node.attrs:
        return None
    group, index = node.attrs["weight_ram"]
    if index:
        return []
    members = sorted((other.attrs["weight_ram"][1], other.name) for other in graph
                     if other.attrs.get("weight_ram", (None,))[0] == group)
    return [weight_store_of(graph, graph[name]) for _, name in members]


def uses_dram(graph) -> bool:
    """Whether any buffer of ``graph`` is placed in DRAM."""
    return any("memory" in node.attrs for node in graph)
