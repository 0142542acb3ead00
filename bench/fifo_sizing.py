"""How long the FIFO pass (hwseg.passes.size_skip_fifos) takes, and how much memory its FIFOs hold.

For each network: the folded graph of an estimate-only build, its FIFO attributes dropped, then
``annotate_lanes`` and ``size_fifos`` (two rows in front of each layer) and the timed
``size_skip_fifos``. Prints the seconds of that pass and the FIFO bits (``max(depth, 3) × width``,
as the report counts them) on join inputs and on layer inputs, with the layer FIFOs as
``size_fifos`` left them for comparison.

    python bench/fifo_sizing.py                 # all four networks
    python bench/fifo_sizing.py fpl_tiny erfnet  # some of them

Networks: ``fpl_tiny`` and ``erfnet_tiny`` (the bundled checkpoints, pynq-z2), the full ERFNet
and an FPL-style network (``fpl`` at its defaults, 20 classes) at 1024×512 on zcu104, calibrated
on random images (the sizes do not depend on the weights).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwseg.estimate.dataflow import dataflow  # noqa: E402
from hwseg.flow import build, compile_graph  # noqa: E402
from hwseg.ir import Add, Concat  # noqa: E402
from hwseg.passes import annotate_lanes, size_fifos, size_skip_fifos  # noqa: E402

FIFO_ATTRS = ("skip_fifos", "skip_fifos_min", "fifo_depth", "in_lanes", "out_lanes")


def _full_size(arch: str):
    import torch

    from hwseg.frontend import to_graph
    from hwseg.models import build_model
    from hwseg.quant import calibrate

    torch.manual_seed(0)
    args = {"classes": 20, "input_size": [512, 1024]}
    model = build_model(arch, args)
    calibrate(model, [torch.randint(0, 256, (1, 3, 64, 128)).float()])   # convolutions do not care about size
    return compile_graph(to_graph(model.eval(), (3, 512, 1024), name=f"{arch}_1024x512"), "zcu104",
                         estimate_only=True)


NETWORKS = {
    "fpl_tiny": lambda: build(ROOT / "examples" / "fpl_tiny.pt", "pynq-z2", estimate_only=True),
    "erfnet_tiny": lambda: build(ROOT / "examples" / "erfnet_tiny.pt", "pynq-z2", estimate_only=True),
    "erfnet": lambda: _full_size("erfnet"),
    "fpl": lambda: _full_size("fpl"),
}


def fifo_bits(graph) -> tuple[int, int]:
    """FIFO bits on join inputs and on layer inputs."""
    joins = layers = 0
    for node in graph:
        depths = node.attrs.get("skip_fifos") or (node.attrs.get("fifo_depth", 0),) * len(node.inputs)
        for k, (source, depth) in enumerate(zip(node.inputs, depths)):
            if not depth:
                continue
            x = graph.types[source]
            lanes = x.channels if isinstance(node.op, Concat) else node.attrs["in_lanes"]
            bits = max(depth, 3) * lanes * x.dtype.bits
            if isinstance(node.op, (Add, Concat)):
                joins += bits
            else:
                layers += bits
    return joins, layers


def measure(name: str) -> None:
    start = time.perf_counter()
    design = NETWORKS[name]()
    built = time.perf_counter() - start
    folded = design.graph.replace([node.__class__(node.name, node.op, node.inputs,
                                                  {k: v for k, v in node.attrs.items() if k not in FIFO_ATTRS})
                                   for node in design.graph])
    graph, _ = annotate_lanes.apply(folded)
    graph, _ = size_fifos.apply(graph)
    _, rows_only = fifo_bits(graph)
    start = time.perf_counter()
    graph, _ = size_skip_fifos.apply(graph, model=dataflow)
    sizing = time.perf_counter() - start
    joins, layers = fifo_bits(graph)
    x = design.graph.input_type
    print(f"{name:12s} {x.width}×{x.height}  {len(graph):4d} nodes  sizing {sizing:7.2f} s  "
          f"join FIFOs {joins:>12,} b  layer FIFOs {layers:>12,} b (two rows: {rows_only:,} b)  "
          f"[build {built:.1f} s, {design.estimate.cycles_per_frame:,} cycles/frame]", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs="*", choices=[[], *NETWORKS], default=list(NETWORKS),
                        help="networks to size (default: all)")
    for name in parser.parse_args().networks or NETWORKS:
        measure(name)


if __name__ == "__main__":
    main()
