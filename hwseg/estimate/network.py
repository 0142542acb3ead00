"""Per-layer and whole-network estimates: resources, cycles per frame, fps, board utilization.

Requires a graph prepared for hardware (``hwseg.passes.prepare_for_hardware``): every node
carries ``in_lanes``/``out_lanes`` and every convolution its ``pe``/``simd``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import ceil

from ..boards import Board
from ..errors import UnsupportedError
from ..ir import (Add, ArgMax, AvgPool, Bipolar, Concat, Conv2d, ConvTranspose2d, Fork, Graph, Input, MaxPool, MulShift,
                  RowTaps, Threshold, Upsample)
from . import resources as R
from .cycles import (folded_window_geometry, layer_cycles, transposed_buffer_rows, upsample_buffer_rows,
                     window_geometry, window_kind)
from .offchip import (REGION_ALIGN, DramBuffer, dram_buffers, loads_weights, offchip_fifos, region_address_bits,
                      row_taps_of, shared_weight_ram, skip_fifo_of, weight_store_of)
from .roofline import Roofline, roofline

__all__ = ["LayerEstimate", "NetworkEstimate", "estimate_graph", "conv_compute", "component_estimate"]


@dataclass(frozen=True)
class LayerEstimate:
    name: str
    op: str
    description: str
    resources: R.Resources
    cycles: int
    folding: dict = field(default_factory=dict)
    #: the rows a layer holds: (rows, width in pixels, channels, bits per element); () for none
    line_buffer: tuple[int, int, int, int] = ()
    #: the FIFOs in front of the layer's inputs: (input, depth in beats, beat width in bits)
    fifos: tuple[tuple[str, int, int], ...] = ()
    #: where the line buffer's RAM goes, then each FIFO's (same order as ``fifos``): (kind, cells) with
    #: kind "distributed" (LUTRAM), "block" (block RAMs), "huge" (URAM) or "logic" (flip-flops);
    #: the line buffer's entry is absent when the layer has none (or keeps its rows in registers)
    line_buffer_memory: tuple[str, int] | None = None
    fifo_memories: tuple[tuple[str, int], ...] = ()
    #: where the layer's resources go (:class:`.resources.Split`): memory by what it holds, logic by datapath and
    #: control; set by :func:`estimate_graph`, its parts sum to ``resources``
    split: R.Split | None = None
    #: the buffers the layer keeps in DRAM (its rows, the FIFOs on its inputs), with their traffic per frame
    dram: tuple[DramBuffer, ...] = ()

    @property
    def line_buffer_bits(self) -> int:
        """``rows × width × channels × bits``."""
        rows, width, channels, bits = self.line_buffer or (0, 0, 0, 0)
        return rows * width * channels * bits

    @property
    def fifo_bits(self) -> int:
        return sum(max(depth, 3) * width for _, depth, width in self.fifos)

    def as_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "description": self.description, **self.resources.as_dict(),
                "memory_bits": self.resources.memory_bits, "line_buffer_bits": self.line_buffer_bits,
                "line_buffer": dict(zip(("rows", "width", "channels", "bits"), self.line_buffer)),
                "line_buffer_memory": _memory_dict(self.line_buffer_memory),
                "fifos": [{"input": name, "depth": depth, "width": width, "bits": max(depth, 3) * width,
                           "memory": _memory_dict(memory)}
                          for (name, depth, width), memory in zip(self.fifos, self.fifo_memories)],
                "cycles": self.cycles, "folding": dict(self.folding),
                **({"dram": [buffer.as_dict() for buffer in self.dram]} if self.dram else {}),
                **({"split": self.split.as_dict()} if self.split is not None else {})}


def _memory_dict(memory: tuple[str, int] | None) -> dict | None:
    return None if memory is None else {"kind": memory[0], "cells": memory[1]}


@dataclass(frozen=True)
class NetworkEstimate:
    layers: list[LayerEstimate]
    board: Board
    #: the board's compute roofline and stream bound for this network (:mod:`.roofline`)
    roofline: Roofline | None = None
    #: one line on what keeps the design from a higher frame rate (set by the flow's folding)
    limit: str = ""

    @property
    def total(self) -> R.Resources:
        total = R.Resources()
        for layer in self.layers:
            total = total + layer.resources
        return total

    @property
    def split(self) -> R.Split | None:
        """The layers' splits summed (None when a layer has none)."""
        if any(layer.split is None for layer in self.layers):
            return None
        total = R.Split.empty()
        for layer in self.layers:
            total = total + layer.split
        return total

    @property
    def dram_buffers(self) -> list[DramBuffer]:
        return [buffer for layer in self.layers for buffer in layer.dram]

    @property
    def dram_bytes_per_frame(self) -> int:
        return sum(buffer.traffic_bytes for buffer in self.dram_buffers)

    @property
    def dram_region_bytes(self) -> int:
        """The DRAM region the design needs (each buffer's region on a 4 KiB boundary; the weight image, every
        loaded layer's share in a row, one region)."""
        align = lambda size: -(-size // REGION_ALIGN) * REGION_ALIGN
        image = sum(buffer.region_bytes for buffer in self.dram_buffers if buffer.kind == "weights")
        return sum(align(buffer.region_bytes) for buffer in self.dram_buffers if buffer.kind != "weights") + align(image)

    @property
    def dram_setup_bytes(self) -> tuple[int, int]:
        """Bytes read and written once after reset, before the first frame: the weight image, the zero rows."""
        return (sum(buffer.setup_read_bytes for buffer in self.dram_buffers),
                sum(buffer.setup_write_bytes for buffer in self.dram_buffers))

    @property
    def weight_image_bytes(self) -> int:
        """The weights the design loads from DRAM after reset (0: every weight in ROM)."""
        return sum(buffer.region_bytes for buffer in self.dram_buffers if buffer.kind == "weights")

    @property
    def compute_cycles_per_frame(self) -> int:
        """The slowest layer's cycles per frame, with a memory that keeps up."""
        return max(layer.cycles for layer in self.layers)

    @property
    def bandwidth_cycles_per_frame(self) -> float:
        """The cycles a frame's DRAM traffic takes at the board's bandwidth (0: nothing in DRAM)."""
        return self.roofline.bandwidth_cycles if self.roofline is not None else 0.0

    @property
    def cycles_per_frame(self) -> int:
        """The slowest layer's cycles per frame, or the DRAM traffic's if the memory is slower."""
        return max(self.compute_cycles_per_frame, ceil(self.bandwidth_cycles_per_frame))

    @property
    def bound(self) -> str:
        """What sets the frame rate: ``"compute"`` (the slowest layer) or ``"bandwidth"`` (the DRAM)."""
        return "bandwidth" if self.bandwidth_cycles_per_frame > self.compute_cycles_per_frame else "compute"

    @property
    def bottleneck(self) -> str:
        """The slowest layer (the frame rate's limit unless :attr:`bound` is ``"bandwidth"``)."""
        return max(self.layers, key=lambda layer: layer.cycles).name

    @property
    def fps(self) -> float:
        return self.board.clock_mhz * 1e6 / self.cycles_per_frame

    @property
    def dram_mbs(self) -> float:
        """The DRAM bandwidth the design uses at its frame rate, MB/s."""
        return self.dram_bytes_per_frame * self.fps / 1e6

    @property
    def utilization(self) -> dict[str, float]:
        """Used share of every resource the board has (URAM too where the part has it)."""
        total = self.total.as_dict()
        return {key: total.get(key, 0) / have for key, have in self.board.resources.items()}

    def overflows(self) -> dict[str, tuple[int, int]]:
        """Resources the design exceeds: name → (needed, available)."""
        total = self.total.as_dict()
        return {key: (total.get(key, 0), have) for key, have in self.board.resources.items()
                if total.get(key, 0) > have}


def _elem_bits(dtype) -> int:
    return dtype.bits


def _input_lanes(graph: Graph, node) -> list[int]:
    if isinstance(node.op, Concat):
        return [x.channels for x in graph.input_types(node.name)]
    return [node.attrs["in_lanes"]] * len(node.inputs)


def _fifos(graph: Graph, node) -> tuple[tuple[str, int, int], ...]:
    """The FIFOs the backend puts in front of ``node``'s inputs: (input, depth, width) — a join's in front of a
    lane converter that splits a forked stream, of the producer's wider beats."""
    depths = node.attrs.get("skip_fifos") or (node.attrs.get("fifo_depth", 0),) * len(node.inputs)
    fifos = []
    for name, depth, lanes, x, offchip in zip(node.inputs, depths, _input_lanes(graph, node),
                                              graph.input_types(node.name), offchip_fifos(node)):
        if offchip:                       # in DRAM: see _dram_fifos
            continue
        produced = graph[name].attrs.get("out_lanes", lanes)
        if (depth and produced > lanes and len(node.inputs) > 1
                and sum(reader.inputs.count(name) for reader in graph.consumers(name)) > 1):
            depth, lanes = -(-depth * lanes // produced), produced
        if depth:
            fifos.append((name, depth, lanes * x.dtype.bits))
    return tuple(fifos)


def _skids(graph: Graph, node) -> tuple[int, ...]:
    """The payload bits of each skid buffer on ``node``'s inputs (``attrs["skid_lanes"]``, set by
    ``hwseg.passes.register_ready``; none before that pass)."""
    return tuple(lanes * x.dtype.bits for lanes, x in zip(node.attrs.get("skid_lanes", ()), graph.input_types(node.name))
                 if lanes)


def _placement(depth: int, width: int, family: str, uram: bool) -> tuple[str, int]:
    mapping = R.memory_mapping(depth, width, family, uram=uram)
    return mapping.kind, mapping.cells


def _fifo_memories(graph: Graph, node, family: str, uram: bool) -> tuple[tuple[str, int], ...]:
    """Where each FIFO in front of ``node`` keeps its words (a ``StreamFIFO`` of depth ``D`` holds a memory
    of ``max(D, 3) − 1`` words, as :func:`.resources.fifo` counts it)."""
    return tuple(_placement(*R.fifo_memory_shape(depth=depth, width=width), family, uram)
                 for _, depth, width in _fifos(graph, node))


def _stitching(graph: Graph, node, family: str = "xc7", uram: bool = False) -> R.Resources:
    """Lane converters and FIFOs in front of ``node``'s inputs, and the fork after it if several read it."""
    total = R.Resources()
    for name, lanes, x, offchip in zip(node.inputs, _input_lanes(graph, node), graph.input_types(node.name),
                                       offchip_fifos(node)):
        if not offchip:                   # (a DRAM FIFO's converters: _dram_fifos)
            total = total + R.lane_converter(in_lanes=graph[name].attrs["out_lanes"], out_lanes=lanes,
                                             elem_bits=x.dtype.bits, family=family)
    for _, depth, width in _fifos(graph, node):
        total = total + R.fifo(depth=depth, width=width, family=family, uram=uram)
    for width in _skids(graph, node):
        total = total + R.skid_buffer(width=width, family=family)
    total = total + _dram_fifos(graph, node, family, uram)
    readers = len(graph.consumers(node.name))
    if readers > 1:
        total = total + R.stream_fork(outputs=readers, width=graph.types[node.name].channels
                                      * graph.types[node.name].dtype.bits, family=family)
    return total


def _dram_fifos(graph: Graph, node, family: str, uram: bool) -> R.Resources:
    """The DRAM FIFOs on a join's inputs, with the lane converters to and from their beats around each."""
    total = R.Resources()
    for k, offchip in enumerate(offchip_fifos(node)):
        if not offchip:
            continue
        geometry, _, grouped = skip_fifo_of(graph, node, k)
        memory, x = node.attrs["memory"], graph.input_types(node.name)[k]
        taken, produced = _input_lanes(graph, node)[k], graph[node.inputs[k]].attrs["out_lanes"]
        total = (total + R.dram_fifo(beat_bits=grouped * x.dtype.bits, words_per_beat=geometry.words_per_beat,
                                     region_words=geometry.region_words, data_bits=memory["data_bits"],
                                     address_bits=region_address_bits(geometry.region_bytes), burst=memory["burst"],
                                     outstanding=memory["outstanding"], read_buffer=memory["read_buffer"],
                                     family=family, uram=uram)
                 + R.lane_converter(in_lanes=produced, out_lanes=grouped, elem_bits=x.dtype.bits,
                                    family=family)
                 + R.lane_converter(in_lanes=grouped, out_lanes=taken, elem_bits=x.dtype.bits, family=family))
    return total


#: The narrowest weights whose products the folder may put in logic (``{"multiplier": "logic"}``).
LOGIC_WEIGHT_BITS = 8
#: Families whose products may be built in logic: the Xilinx parts, where the shift-and-add estimate is calibrated
#: against Yosys and a DSP48 is worth many LUTs. (On iCE40 a design that moved its products off the SB_MAC16s
#: no longer placed; ECP5's multipliers are plentiful for the designs that fit it.)
LOGIC_FAMILIES = ("xc7", "xcup")


def mac_variants(graph: Graph, node, pe: int, family: str, logic: bool = True) -> tuple[dict, ...]:
    """The ways a convolution's MAC array may be built at ``pe`` on ``family``, as node attributes: always the
    plain array (``{}``); for an integer-weight Conv2d also two PEs' products per DSP48 where that fits
    (``{"pack": 2}``, :func:`.resources.packings`) and, with ``logic``, for weights of :data:`LOGIC_WEIGHT_BITS` or
    more on :data:`LOGIC_FAMILIES`, products in logic where they would take DSPs (``{"multiplier": "logic"}``).
    Binary, channelwise and transposed convolutions have only the plain one."""
    op, x = node.op, graph.input_types(node.name)[0]
    if not isinstance(op, Conv2d) or op.channelwise or isinstance(op.weight_type, Bipolar):
        return ({},)
    in_bits, weight_bits = x.dtype.bits, op.weight_type.bits
    variants = [{}]
    if 2 in R.packings(in_bits, weight_bits, pe, family):
        variants.append({"pack": 2})
    # (8-bit weights only for now: the estimate of narrower ones in logic was 35 % high on held-out data)
    if (logic and family in LOGIC_FAMILIES and weight_bits >= LOGIC_WEIGHT_BITS
            and R.dsp_per_product(in_bits + 1, weight_bits, family, y_bits=in_bits + weight_bits)):
        variants.append({"multiplier": "logic"})
    return tuple(variants)


def conv_compute(graph: Graph, node, pe: int, simd: int, family: str = "xc7", uram: bool = False, *,
                 with_window: bool = True) -> R.Resources:
    """Resources of a convolution that depend on its folding ``pe`` × ``simd`` (and its MAC variant, :func:`mac_variants`) on a
    ``family`` part: its MAC array and (``with_window``), for a Conv2d with a window, that window (register or
    folded, :func:`.cycles.window_kind` at this folding); a transposed convolution's weight ROM holds every tap
    of every phase (``kh·kw·C_in`` per channel)."""
    op, x, out = node.op, graph.input_types(node.name)[0], graph.types[node.name]
    if isinstance(op, Conv2d) and op.channelwise:
        return _channel_affine(graph, node, pe, family)
    k = op.kernel[0] * op.kernel[1] * x.channels
    kind = window_kind(graph, node.with_attrs(pe=pe, simd=simd)) if isinstance(op, Conv2d) else None
    window = _window(graph, node, kind, pe, simd, family, uram) if with_window else R.Resources()
    if isinstance(op.weight_type, Bipolar):
        return window + R.bit_mac_array(in_count=k, in_bits=x.dtype.bits, out_channels=op.out_channels, pe=pe,
                                        simd=simd, acc_bits=out.dtype.bits, family=family, serial=kind == "folded")
    store = weight_store_of(graph, node, pe, simd) if loads_weights(node) else None
    shared = shared_weight_ram(graph, node) if store is not None else None
    return window + R.mac_array(in_count=k, in_bits=x.dtype.bits, weight_bits=op.weight_type.bits,
                                out_channels=op.out_channels, pe=pe, simd=simd, acc_bits=out.dtype.bits,
                                family=family, serial=kind == "folded",
                                pixel_slices=x.channels // simd if isinstance(op, ConvTranspose2d) else None,
                                loaded_weights=None if store is None else (store.fold_bits, store.folds_per_word),
                                uram=uram, external_weights=shared is not None,
                                pack=node.attrs.get("pack", 1), multiplier=node.attrs.get("multiplier", "dsp")) + (
        R.weight_ram(clients=[(s.word_bits, s.depth) for s in shared], family=family) if shared else R.Resources())


def _channel_affine(graph: Graph, node, lanes: int, family: str) -> R.Resources:
    """A channelwise convolution's multipliers at ``lanes`` channels per beat."""
    op, x, out = node.op, graph.input_types(node.name)[0], graph.types[node.name]
    return R.channel_affine(channels=x.channels, in_bits=x.dtype.bits, acc_bits=out.dtype.bits,
                            weight_bits=R.signed_bits(op.weight), weights=op.weight.reshape(-1), lanes=lanes,
                            bias_bits=R.signed_bits(op.bias), family=family)


def _window(graph: Graph, node, kind: str | None, pe: int, simd: int, family: str, uram: bool) -> R.Resources:
    """The window of a Conv2d, MaxPool or AvgPool (nothing for a pointwise convolution)."""
    if kind is None and not isinstance(node.op, (MaxPool, AvgPool)):
        return R.Resources()
    op, x = node.op, graph.input_types(node.name)[0]
    dilation = op.dilation if isinstance(op, Conv2d) else (1, 1)
    padded = (x.height + 2 * op.padding[0], x.width + 2 * op.padding[1])
    if kind == "folded":
        out = graph.types[node.name]
        return R.folded_window(channels=x.channels, elem_bits=x.dtype.bits, simd=simd,
                               repeats=op.out_channels // pe, kernel=op.kernel, padded_width=padded[1],
                               padded_height=padded[0], out_width=out.width, out_height=out.height,
                               ring_positions=_ring_positions(graph, node), family=family, uram=uram)
    return R.sliding_window(channels=x.channels, elem_bits=x.dtype.bits, kernel=op.kernel, dilation=dilation,
                            padded_width=padded[1], padded_height=padded[0], family=family, uram=uram)


def _ring_positions(graph: Graph, node) -> int:
    """Padded positions a folded window's ring memory holds."""
    return folded_window_geometry(**window_geometry(graph, node))["ring_positions"]


def component_estimate(graph: Graph, node, family: str, uram: bool = False) -> R.Resources:
    """The resources of ``node``'s own component (its lowering), without the stitching in front of it
    (lane converters, FIFOs) or the fork after it: what the calibration synthesizes alone."""
    layer = _estimate_node(graph, node, family, uram)
    stitching = _stitching(graph, node, family, uram)
    return R.Resources(*(a - b for a, b in zip(layer.resources.astuple(), stitching.astuple())))


def _estimate_node(graph: Graph, node, family: str = "xc7", uram: bool = False) -> LayerEstimate:
    layer = _estimate_resources(graph, node, family, uram)
    if isinstance(node.op, Input):
        return layer
    return replace(layer, line_buffer_memory=_line_buffer_memory(graph, node, family, uram),
                   fifo_memories=_fifo_memories(graph, node, family, uram), dram=tuple(dram_buffers(graph, node)))


def _line_buffer_memory(graph: Graph, node, family: str, uram: bool) -> tuple[str, int] | None:
    """Where a layer's row memory goes, for the memories :func:`_estimate_resources` counts."""
    op, x, out = node.op, graph.input_types(node.name)[0], graph.types[node.name]
    pixel = x.channels * x.dtype.bits
    if isinstance(op, RowTaps):
        return None
    if isinstance(op, ConvTranspose2d):
        rows = transposed_buffer_rows(height=x.height, out_height=out.height, kernel=op.kernel[0],
                                      stride=op.stride[0], padding=op.padding[0])
        return _placement(rows * x.width, pixel, family, uram)
    if isinstance(op, Upsample):
        rows = upsample_buffer_rows(height=x.height, width=x.width, factor=op.factor, mode=op.mode)
        return _placement(x.width, rows * pixel, family, uram)
    if window_kind(graph, node) == "folded":
        simd = node.attrs["simd"]
        return _placement(_ring_positions(graph, node) * (x.channels // simd), simd * x.dtype.bits, family, uram)
    if isinstance(op, (Conv2d, MaxPool, AvgPool)) and not (isinstance(op, Conv2d) and op.channelwise):
        shape = R.window_memory_shape(channels=x.channels, elem_bits=x.dtype.bits, kernel=op.kernel,
                                      dilation=op.dilation if isinstance(op, Conv2d) else (1, 1),
                                      padded_width=x.width + 2 * op.padding[1])
        if shape is not None:
            return _placement(*shape, family, uram)
    return None


def _estimate_resources(graph: Graph, node, family: str = "xc7", uram: bool = False) -> LayerEstimate:
    op, out = node.op, graph.types[node.name]
    if isinstance(op, Input):
        return LayerEstimate(node.name, "Input", op.describe(),
                             R.axis_adapter(beats_per_frame=out.pixels, family=family), out.pixels)
    x = graph.input_types(node.name)[0]
    convert = _stitching(graph, node, family, uram)
    fifos = _fifos(graph, node)
    if isinstance(op, Conv2d) and op.channelwise:
        pe = node.attrs["pe"]
        return LayerEstimate(node.name, "Conv2d", op.describe(), convert + _channel_affine(graph, node, pe, family),
                             layer_cycles(graph, node), {"channelwise": True, "pe": pe, "nf": x.channels // pe},
                             fifos=fifos)
    if isinstance(op, (Conv2d, MaxPool, AvgPool)):
        kernel, stride, padding = op.kernel, op.stride, op.padding
        dilation = op.dilation if isinstance(op, Conv2d) else (1, 1)
        padded = (x.height + 2 * padding[0], x.width + 2 * padding[1])
        pointwise = isinstance(op, Conv2d) and kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)
        line_buffer = ()  # a pointwise convolution takes pixels as they come
        # (kh−1)·dh padded rows (a register window: the last L pixels of each in the tap registers, the rest
        # in RAM; a folded one: all in its ring, with its slack)
        if not pointwise and kernel[0] > 1:
            line_buffer = ((kernel[0] - 1) * dilation[0], padded[1], x.channels, x.dtype.bits)
        if isinstance(op, Conv2d):
            pe, simd = node.attrs["pe"], node.attrs["simd"]
            k = kernel[0] * kernel[1] * x.channels
            window, compute = R.Resources(), conv_compute(graph, node, pe, simd, family, uram)
            folding = {"pe": pe, "simd": simd, "nf": op.out_channels // pe, "sf": k // simd}
            if node.attrs.get("pack", 1) != 1:   # products per multiplier
                folding["pack"] = node.attrs["pack"]
            if node.attrs.get("multiplier", "dsp") != "dsp":
                folding["multiplier"] = node.attrs["multiplier"]
            kind = window_kind(graph, node)      # (None: a pointwise one holding its vector)
            if kind is not None:
                folding["window"] = kind
        else:
            window = _window(graph, node, None, 0, 0, family, uram)
            compute = (R.window_max if isinstance(op, MaxPool) else R.window_mean)(
                window=kernel[0] * kernel[1], channels=x.channels, elem_bits=x.dtype.bits, family=family)
            folding = {}
        return LayerEstimate(node.name, type(op).__name__, op.describe(), convert + window + compute,
                             layer_cycles(graph, node), folding, line_buffer, fifos)
    if isinstance(op, ConvTranspose2d):
        pe, simd = node.attrs["pe"], node.attrs["simd"]
        rows = transposed_buffer_rows(height=x.height, out_height=out.height, kernel=op.kernel[0],
                                      stride=op.stride[0], padding=op.padding[0])
        # on Lattice block RAM Yosys emulates this buffer's old-data read (as an upsampler's; measured,
        # transposed_3x3s2_c8_k4_pe2_s4_w32: 137 more FF on ECP5 than on xcup); a sliding window's row
        # memory, whose read port has no enable, gets none (counting it puts conv_3x1_d2 34 % over)
        line_buffer = R.memory(rows * x.width, x.channels * x.dtype.bits, family=family, uram=uram,
                               read_first=True, role="window")
        folding = {"pe": pe, "simd": simd, "nf": op.out_channels // pe, "sf": x.channels // simd,
                   "buffer_rows": rows}
        return LayerEstimate(node.name, "ConvTranspose2d", op.describe(),
                             convert + line_buffer + conv_compute(graph, node, pe, simd, family)
                             + R.transposed_control(height=x.height, width=x.width, kernel=op.kernel,
                                                    stride=op.stride, family=family),
                             layer_cycles(graph, node),
                             folding, (rows, x.width, x.channels, x.dtype.bits), fifos)
    if isinstance(op, Upsample):
        rows = upsample_buffer_rows(height=x.height, width=x.width, factor=op.factor, mode=op.mode)
        res = R.memory(x.width, rows * x.channels * x.dtype.bits, family=family, uram=uram,
                       read_first=True, role="window") + R.upsampler(
            channels=x.channels, elem_bits=x.dtype.bits, bilinear=op.mode == "bilinear", shift=op.shift,
            rows=rows, factor=op.factor, height=x.height, width=x.width, family=family)
        return LayerEstimate(node.name, "Upsample", op.describe(), convert + res, layer_cycles(graph, node),
                             {"buffer_rows": rows}, (rows, x.width, x.channels, x.dtype.bits), fifos)
    if isinstance(op, RowTaps):
        geometry, memory = row_taps_of(graph, node), node.attrs["memory"]
        res = R.dram_row_taps(taps=op.taps, pixel_bits=x.channels * x.dtype.bits,
                              words_per_beat=geometry.words_per_beat, width=x.width, frame_rows=geometry.frame_rows,
                              row_words=geometry.row_words, ring_rows=geometry.ring_rows, stride=geometry.stride,
                              data_bits=memory["data_bits"], address_bits=region_address_bits(geometry.region_bytes),
                              burst=memory["burst"], outstanding=memory["outstanding"],
                              read_buffer=memory["read_buffer"], family=family, uram=uram,
                              word_beats=node.attrs["out_lanes"] < out.channels)
        return LayerEstimate(node.name, "RowTaps", op.describe(), convert + res, layer_cycles(graph, node),
                             {"offchip": True, "ring_rows": geometry.ring_rows}, fifos=fifos)
    if isinstance(op, MulShift):
        lanes = node.attrs["in_lanes"]
        res = R.mul_shift(lanes=lanes, channels=x.channels, acc_bits=x.dtype.bits, out_bits=out.dtype.bits,
                          multiplier_bits=R.signed_bits(op.multiplier), shift=op.shift, family=family)
        return LayerEstimate(node.name, "MulShift", op.describe(), convert + res, layer_cycles(graph, node),
                             {"lanes": lanes}, fifos=fifos)
    if isinstance(op, Threshold):
        lanes = node.attrs["in_lanes"]
        res = R.multi_threshold(lanes=lanes, channels=x.channels, acc_bits=x.dtype.bits,
                                thresholds=op.thresholds.shape[1], family=family)
        return LayerEstimate(node.name, "Threshold", op.describe(), convert + res, layer_cycles(graph, node),
                             {"lanes": lanes}, fifos=fifos)
    if isinstance(op, ArgMax):
        res = R.argmax(channels=x.channels, elem_bits=x.dtype.bits, index_bits=out.dtype.bits, family=family)
        return LayerEstimate(node.name, "ArgMax", op.describe(), convert + res, out.pixels, fifos=fifos)
    if isinstance(op, Add):
        a, b = graph.input_types(node.name)
        sides = int(op.lo > a.dtype.min + b.dtype.min) + int(op.hi < a.dtype.max + b.dtype.max)
        lanes = node.attrs["in_lanes"]
        res = R.elementwise_add(lanes=lanes, in_bits=max(a.dtype.bits, b.dtype.bits), out_bits=out.dtype.bits,
                                clamp_sides=sides, family=family)
        return LayerEstimate(node.name, "Add", op.describe(), convert + res, layer_cycles(graph, node), fifos=fifos)
    if isinstance(op, Concat):
        return LayerEstimate(node.name, "Concat", op.describe(), convert + R.channel_concat(inputs=len(node.inputs), family=family),
                             out.pixels, fifos=fifos)
    if isinstance(op, Fork):
        return LayerEstimate(node.name, "Fork", op.describe(), convert, out.pixels)
    raise UnsupportedError(f"layer {node.name!r} ({op.describe()}) has no estimate")


def estimate_graph(graph: Graph, board: Board) -> NetworkEstimate:
    """Every layer's estimate for ``board``'s device family (memories in URAM where the part has it)."""
    family, uram = board.family, bool(board.uram)
    layers = []
    for node in graph:   # each layer evaluated once, its split recorded as it is (resources.splitting)
        with R.splitting() as entries:
            layer = _estimate_node(graph, node, family, uram)
        layers.append(replace(layer, split=R.Split.of(entries)))
    # The output adapter counts beats for tlast.
    out = graph.output_type
    loaded = [node for node in graph if loads_weights(node)]
    # every buffer has a memory port, and one weight loader serves every loaded weight memory (its region the image)
    buffers = [buffer for layer in layers for buffer in layer.dram]
    regions = ([buffer.region_bytes for buffer in buffers if buffer.kind != "weights"]
               + ([sum(buffer.region_bytes for buffer in buffers if buffer.kind == "weights")] if loaded else []))
    with R.splitting() as entries:
        tail = R.axis_adapter(beats_per_frame=out.pixels, family=family)
        if loaded:
            memory = loaded[0].attrs["memory"]
            stores = [weight_store_of(graph, node) for node in loaded]
            tail = tail + R.weight_loader(stores=[(store.word_bits, store.depth) for store in stores],
                                          data_bits=memory["data_bits"], address_bits=region_address_bits(regions[-1]),
                                          burst=memory["burst"], outstanding=memory["outstanding"], family=family,
                                          uram=uram)
        if regions:          # the arbiter in front of the memory port, or the one buffer's region placed
            memory = next(node.attrs["memory"] for node in graph if "memory" in node.attrs)
            span = sum(-(-region // REGION_ALIGN) * REGION_ALIGN for region in regions)
            tail = tail + R.memory_arbiter(ports=len(regions), data_bits=memory["data_bits"],
                                           address_bits=memory["address_bits"],
                                           port_address_bits=max(map(region_address_bits, regions)),
                                           offset_bits=region_address_bits(span), family=family)
    last = layers[-1]
    layers[-1] = replace(last, resources=last.resources + tail, split=last.split + R.Split.of(entries))
    return NetworkEstimate(layers, board, roofline(graph, board, dram=[b for layer in layers for b in layer.dram]))
