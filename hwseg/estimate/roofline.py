"""The board's roofline for a network: the frame rate its compute resources could reach at best.

A streaming accelerator computes every layer at once, each on its own multipliers, so the
board's compute bounds the frame rate by how many multiply-accumulates its resources can
perform per cycle. A convolution's MAC is one *lane* of its MAC array; a lane costs what the
estimator charges per lane of that layer's array when fully unfolded (``pe = C_out``,
``simd`` = the whole window), for each way the array may be built (:func:`.network.mac_variants`): one DSP for a
multi-bit multiplier, half of one where two lanes share a DSP48 (more LUTs), none for products in logic (many
more LUTs); some LUTs for a binary one (bit planes and popcounts). If each layer's MACs were split between its
variants at will and its lanes sized in proportion to its work, ``T`` cycles per frame need
``Σ_l Σ_v MACs_lv · cost_lv[r] / T`` of resource ``r``; the compute bound is the least ``T`` for which some split
fits the board,

    T_compute = min over splits of max_r Σ_l Σ_v MACs_lv · cost_lv[r] / available[r]     (r ∈ DSP, LUT)

(for a cap on DSPs, the split with the fewest LUTs fills the DSPs with the layers that save the most LUTs per DSP
first: a fractional knapsack over each layer's convex trade curve; ``T`` by bisection), and the compute roofline
is ``clock / T_compute`` frames per second. It ignores everything but the MAC lanes (line buffers, requantizers,
FIFOs) and the integer constraints of folding (``pe`` divides ``C_out``, ``simd`` the window), so no real design
reaches it.

A second bound is architectural: every stream moves at most one beat per cycle, so a layer
that walks a padded frame of ``P`` positions (or emits ``P`` pixels) needs ``P`` cycles; the
*stream bound* is ``clock / max P``.

A third bound is the memory's, for a design that keeps buffers in DRAM: a frame reads ``R`` and writes
``W`` bytes. The accelerator's port carries ``port`` MB/s each way (its data width at the clock) and the
memory delivers ``usable`` MB/s for both together (the board's ``[dram]``), so the *bandwidth bound* is
``min(port / R, port / W, usable / (R + W))`` frames per second. The achievable frame rate is below all three.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..boards import Board
from ..ir import AvgPool, Conv2d, ConvTranspose2d, Graph, MaxPool
from .work import layer_macs

__all__ = ["Roofline", "roofline", "lane_costs", "stream_bound_cycles", "bandwidth_bound"]

#: The resources MAC lanes are made of.
COMPUTE_RESOURCES = ("dsp", "lut")


@dataclass(frozen=True)
class Roofline:
    compute_fps: float            # clock / T_compute
    compute_cycles: float         # T_compute (fractional: an ideal)
    binding: str                  # the resource that sets T_compute ("dsp" or "lut")
    stream_fps: float             # clock / the largest per-layer stream length
    stream_cycles: int
    stream_layer: str             # the layer with the longest stream
    demand: dict                  # resource → Σ MACs · cost per frame
    bandwidth_fps: float = float("inf")   # the DRAM's bound (inf: nothing in DRAM)
    bandwidth_cycles: float = 0.0         # clock / bandwidth_fps
    dram_read_bytes: int = 0              # per frame
    dram_write_bytes: int = 0
    dram_mbs: float = 0.0                 # the usable bandwidth: min(the port's both ways, the memory's)

    @property
    def fps(self) -> float:
        """The lowest of the bounds."""
        return min(self.compute_fps, self.stream_fps, self.bandwidth_fps)

    @property
    def binding_bound(self) -> str:
        """Which bound is lowest: ``"compute"``, ``"stream"`` or ``"bandwidth"``."""
        bounds = {"compute": self.compute_fps, "stream": self.stream_fps, "bandwidth": self.bandwidth_fps}
        return min(bounds, key=lambda key: bounds[key])

    def as_dict(self) -> dict:
        out = {"compute_fps": round(self.compute_fps, 3), "compute_cycles": round(self.compute_cycles, 3),
               "binding_resource": self.binding, "stream_fps": round(self.stream_fps, 3),
               "stream_cycles": self.stream_cycles, "stream_layer": self.stream_layer,
               "mac_lane_demand": {key: round(value, 3) for key, value in self.demand.items()},
               "binding_bound": self.binding_bound}
        if self.dram_read_bytes or self.dram_write_bytes:
            out.update(bandwidth_fps=round(self.bandwidth_fps, 3), bandwidth_cycles=round(self.bandwidth_cycles, 1),
                       dram_read_bytes_per_frame=self.dram_read_bytes, dram_write_bytes_per_frame=self.dram_write_bytes,
                       dram_usable_mbs=round(self.dram_mbs, 1))
        return out


def _is_conv(node) -> bool:
    op = node.op
    return isinstance(op, ConvTranspose2d) or (isinstance(op, Conv2d) and not op.channelwise)


def lane_costs(graph: Graph, node, family: str) -> list[dict[str, float]]:
    """Resources per MAC lane of ``node``'s array, fully unfolded, from the analytic estimate for a ``family``
    part: one entry per MAC variant the array may take (:func:`.network.mac_variants`: plain, two lanes per
    DSP48, products in logic)."""
    from .network import conv_compute, mac_variants   # network imports this module's users; import late

    op = node.op
    # simd spans a Conv2d's window kh·kw·C_in, a ConvTranspose2d's C_in (it folds over taps in time)
    window = op.in_channels if isinstance(op, ConvTranspose2d) else op.kernel[0] * op.kernel[1] * op.in_channels
    lanes_pe, lanes_simd = op.out_channels, window
    lanes = lanes_pe * lanes_simd
    costs = []
    for attrs in mac_variants(graph, node, lanes_pe, family):
        built = node.with_attrs(**{"pack": 1, "multiplier": "dsp", **attrs})     # (not the variant it was folded to)
        spent = conv_compute(graph, built, lanes_pe, lanes_simd, family, with_window=False).as_dict()
        costs.append({key: spent[key] / lanes for key in COMPUTE_RESOURCES})
    return costs


def _trade_curve(options: list[dict[str, float]]) -> list[tuple[float, float]]:
    """The ``(dsp, lut)`` per lane of the variants worth mixing: the lower-left convex hull, by DSP ascending."""
    points = sorted({(o["dsp"], o["lut"]) for o in options})
    hull: list[tuple[float, float]] = []
    for point in points:
        if hull and point[1] >= hull[-1][1]:        # more DSP and no fewer LUTs: never worth it
            continue
        while len(hull) >= 2 and ((hull[-1][1] - hull[-2][1]) * (point[0] - hull[-2][0])
                                  >= (point[1] - hull[-2][1]) * (hull[-1][0] - hull[-2][0])):
            hull.pop()                              # not convex: the middle point is beaten by mixing its neighbours
        hull.append(point)
    return hull


def _least_luts(layers: list[tuple[float, list[tuple[float, float]]]], dsp_cap: float) -> tuple[float, float]:
    """``(dsp, lut)`` of the demand that spends the fewest LUTs with at most ``dsp_cap`` DSPs, each layer's MACs
    split between its variants (a fractional choice: the bound ignores that lanes are whole), or ``(inf, inf)``
    if even the fewest DSPs exceed the cap. Greedy over the hulls' segments, the most LUTs saved per DSP first."""
    dsp = sum(macs * curve[0][0] for macs, curve in layers)
    lut = sum(macs * curve[0][1] for macs, curve in layers)
    if dsp > dsp_cap * (1 + 1e-12):
        return float("inf"), float("inf")
    segments = sorted(((l0 - l1) / (d1 - d0), macs * (d1 - d0), macs * (l0 - l1))
                      for macs, curve in layers for (d0, l0), (d1, l1) in zip(curve, curve[1:]))
    for _, more_dsp, fewer_lut in reversed(segments):
        share = min(1.0, (dsp_cap - dsp) / more_dsp)
        dsp, lut = dsp + share * more_dsp, lut - share * fewer_lut
        if share < 1.0:
            break
    return dsp, lut


def _compute_bound(layers, available: dict) -> tuple[float, dict[str, float]]:
    """The least cycles per frame ``T`` with ``dsp ≤ T·available["dsp"]`` and ``lut ≤ T·available["lut"]`` for
    some split of the layers' MACs between their variants, and that split's demand (bisection on ``T``)."""
    def demand(cycles):
        dsp, lut = _least_luts(layers, cycles * available["dsp"])
        return {"dsp": dsp, "lut": lut}

    def fits(cycles):
        return demand(cycles)["lut"] <= cycles * available["lut"] * (1 + 1e-12)

    low = 0.0
    high = max(sum(macs * curve[0][0] for macs, curve in layers) / available["dsp"],
               sum(macs * curve[0][1] for macs, curve in layers) / available["lut"])   # the fewest DSPs fit
    if high <= 0:
        return 0.0, {"dsp": 0.0, "lut": 0.0}
    for _ in range(100):
        middle = (low + high) / 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return high, demand(high)


def stream_bound_cycles(graph: Graph) -> tuple[int, str]:
    """The longest stream of any layer (padded positions of a window layer, else output pixels) and
    its layer."""
    best = (0, "")
    for node in graph:
        length = graph.types[node.name].pixels
        if isinstance(node.op, (Conv2d, MaxPool, AvgPool)) and not (isinstance(node.op, Conv2d)
                                                                     and node.op.channelwise):
            x = graph.input_types(node.name)[0]
            ph, pw = node.op.padding
            length = max(length, (x.height + 2 * ph) * (x.width + 2 * pw))
        best = max(best, (length, node.name))
    return best


def bandwidth_bound(board: Board, read_bytes: int, write_bytes: int) -> tuple[float, float]:
    """``(fps, cycles per frame)`` that DRAM traffic of ``read_bytes`` and ``write_bytes`` a frame allows on
    ``board`` (``(inf, 0)`` without traffic)."""
    if not read_bytes and not write_bytes:
        return float("inf"), 0.0
    dram = board.dram
    port = dram.port_mbs(board.clock_mhz) * 1e6
    limits = [dram.usable_mbs * 1e6 / (read_bytes + write_bytes)]
    limits += [port / traffic for traffic in (read_bytes, write_bytes) if traffic]
    fps = min(limits)
    return fps, board.clock_mhz * 1e6 / fps


def roofline(graph: Graph, board: Board, dram=()) -> Roofline:
    """The compute roofline, the stream bound and (for the ``dram`` buffers, :class:`.offchip.DramBuffer`) the
    bandwidth bound of ``graph`` on ``board``."""
    layers = [(layer_macs(graph, node.name), _trade_curve(lane_costs(graph, node, board.family)))
              for node in graph if _is_conv(node)]
    compute_cycles, demand = _compute_bound(layers, board.resources)
    ratios = {key: demand[key] / board.resources[key] for key in COMPUTE_RESOURCES}
    binding = max(ratios, key=lambda key: ratios[key])
    clock = board.clock_mhz * 1e6
    stream_cycles, stream_layer = stream_bound_cycles(graph)
    compute_fps = clock / compute_cycles if compute_cycles > 0 else float("inf")
    reads, writes = sum(b.read_bytes for b in dram), sum(b.write_bytes for b in dram)
    bandwidth_fps, bandwidth_cycles = bandwidth_bound(board, reads, writes)
    usable = min(board.dram.usable_mbs, 2 * board.dram.port_mbs(board.clock_mhz)) if board.dram else 0.0
    return Roofline(compute_fps, compute_cycles, binding, clock / stream_cycles, stream_cycles, stream_layer, demand,
                    bandwidth_fps, bandwidth_cycles, reads, writes, usable)
