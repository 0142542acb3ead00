"""Buffers in DRAM, measured in RTL against the estimate (issue 14).

    python bench/offchip.py [--case slow-memory|real-size|synth|all] [--port-efficiency 0.1] [--memory-ready 0.1]
                            [--frames 12] [--seed 2] [--ports 4,16] [--json]

``real-size``: the zoo's ERFNet-tiny (``examples/erfnet_tiny.pt``) at 512×256 (``--input 256x512``) on pynq-z2 with
the default ``--offchip auto`` (which puts its biggest buffers in DRAM), two unstalled and two stalled frames
(AXI-Stream stalls 0.3, memory latency 20–200, ready 0.9): every beat against golden, the cycles per frame against
the estimate, the DRAM words against the estimate's traffic. About four minutes.

``slow-memory``: the reduced ERFNet of ``sim/test_offchip.py`` (every block type, dilations 2–16, 128×64) on pynq-z2 with every
buffer in DRAM (``--offchip all``), on a board whose memory port moves a beat in a tenth of the cycles each way
(``port_efficiency``) and a memory model that is ready in a tenth of the cycles (``memory_ready``): the design
is bandwidth-bound, and the estimate's frame period is the memory's. The simulation runs ``--frames`` stalled
frames after the two measured ones; the layers share the memory, so frames leave unevenly (upstream layers run
ahead on buffers held in DRAM), and the last ones faster (the layers upstream, out of input, leave the memory to
the rest): the figure is the mean period between the end of frame 5 and that of the third-last, against the
estimate. Prints the bound, both periods, the error, the DRAM words moved and whether every beat matched
golden. About two minutes.

``synth`` (not part of ``all``): ``--ports`` DRAM FIFOs (16 lanes of 8 bits, 4,096 beats; 128-bit words, 40-bit
addresses as on the UltraScale+ boards) sharing one memory port through the ``MemoryArbiter``, synthesized with
Yosys for xcup, LUT and FF against the estimate: each buffer addresses its own region from 0 and the arbiter places
it (the top level's wiring). About two minutes for 4 and 16 ports.

Exits 1 if a beat differs, a cycle figure is more than 5 % off, or a synthesized total more than 15 % off.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from hwseg.boards import load_board  # noqa: E402
from hwseg.cosim.network import simulate_design  # noqa: E402
from hwseg.flow import build, compile_graph  # noqa: E402
from hwseg.frontend import to_graph  # noqa: E402
from hwseg.models import build_model  # noqa: E402
from hwseg.quant import calibrate  # noqa: E402

#: the reduced ERFNet of sim/test_offchip.py
ARGS = {"classes": 6, "width": 0.25, "blocks": [1, 4, 1, 1], "input_size": [64, 128], "dropout": False}


def reduced_erfnet():
    torch.manual_seed(0)
    model = build_model("erfnet", ARGS)
    calibrate(model, [torch.randint(0, 256, (2, 3, 64, 128)).float()])
    return to_graph(model.eval(), (3, 64, 128), name="erfnet_reduced")


def real_size(args) -> tuple[dict, bool]:
    """ERFNet-tiny at 512×256 on pynq-z2, --offchip auto."""
    started = time.monotonic()
    print("compiling ERFNet-tiny at 256x512 for pynq-z2 (--offchip auto) …", file=sys.stderr, flush=True)
    design = build(ROOT / "examples" / "erfnet_tiny.pt", "pynq-z2", input_size=(256, 512))
    estimate = design.estimate
    print("simulating 4 frames …", file=sys.stderr, flush=True)
    report = simulate_design(design, frames=2, seed=args.seed, valid_prob=0.7, ready_prob=0.7,
                             memory_latency=(20, 200), memory_ready=0.9)
    word = design.manifest["dram"]["data_bits"] // 8
    setup_read, setup_write = estimate.dram_setup_bytes
    expected = (report.frames * estimate.roofline.dram_read_bytes // word + setup_read // word,
                report.frames * estimate.roofline.dram_write_bytes // word + setup_write // word)
    result = {
        "case": "real-size", "design": "erfnet_tiny 512x256 pynq-z2 --offchip auto",
        "buffers_in_dram": len(estimate.dram_buffers), "dram_bytes_per_frame": estimate.dram_bytes_per_frame,
        "bound": estimate.bound, "estimated_cycles_per_frame": estimate.cycles_per_frame,
        "measured_cycles_per_frame": report.measured_cycles_per_frame, "error": round(report.estimate_error, 4),
        "memory_words": report.memory_words, "estimated_memory_words": expected, "bit_exact": report.passed,
        "frames": report.frames, "seconds": round(time.monotonic() - started, 1),
    }
    if not args.json:
        print(f"ERFNet-tiny 512x256 on pynq-z2, --offchip auto: {result['buffers_in_dram']} buffers in DRAM, "
              f"{estimate.dram_bytes_per_frame / 1e6:.2f} MB per frame, {estimate.bound}-bound")
        print(report.summary())
        print(f"DRAM words read, written: {report.memory_words[0]:,}, {report.memory_words[1]:,} (estimate: "
              f"{expected[0]:,}, {expected[1]:,} besides the reads that run ahead into the next frame); "
              f"{result['seconds']} s")
        if not report.passed:
            print(*report.mismatches[:5], sep="\n")
    return result, report.passed and abs(report.estimate_error) < 0.05


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("slow-memory", "real-size", "synth", "all"), default="all")
    parser.add_argument("--ports", default="4,16", help="buffers sharing the memory in the synth case")
    parser.add_argument("--port-efficiency", type=float, default=0.1)
    parser.add_argument("--memory-ready", type=float, default=0.1)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ok = True
    if args.case in ("real-size", "all"):
        result, passed = real_size(args)
        ok &= passed
        if args.json:
            print(json.dumps(result))
    if args.case in ("slow-memory", "all"):
        result, passed = slow_memory(args)
        ok &= passed
        if args.json:
            print(json.dumps(result))
    if args.case == "synth":
        for ports in (int(n) for n in args.ports.split(",")):
            result, passed = shared_memory_synth(ports)
            ok &= passed
            if args.json:
                print(json.dumps(result))
    return 0 if ok else 1


def shared_memory_synth(ports: int) -> tuple[dict, bool]:
    """``ports`` DRAM FIFOs through the arbiter, as the top level wires them, synthesized for xcup."""
    from amaranth.back import verilog
    from amaranth.hdl import Module, unsigned
    from amaranth.lib import data, stream, wiring
    from amaranth.lib.wiring import In, Out

    from hwseg.backend.top import REGION_ALIGN
    from hwseg.estimate import resources as R
    from hwseg.estimate.offchip import fifo_geometry, region_address_bits
    from hwseg.hw.dram import DramFifo, MemoryArbiter, memory_port_signature
    from hwseg.synth import synthesize

    beat = data.ArrayLayout(unsigned(8), 16)
    memory = dict(data_bits=128, address_bits=40, burst=32, outstanding=4, read_buffer=64)

    class Shared(wiring.Component):
        def __init__(self):
            self.fifos = [DramFifo(payload_shape=beat, depth=4096, **memory) for _ in range(ports)]
            members = {"base": In(40), "mem": Out(memory_port_signature(address_bits=40, data_bits=128))}
            for k in range(ports):
                members.update({f"i{k}": In(stream.Signature(beat)), f"o{k}": Out(stream.Signature(beat))})
            super().__init__(members)

        def elaborate(self, platform):
            m = Module()
            offsets, offset = [], 0
            for fifo in self.fifos:
                offsets.append(offset)
                offset += -(-fifo.region_bytes // REGION_ALIGN) * REGION_ALIGN
            m.submodules.arbiter = arbiter = MemoryArbiter(address_bits=40, data_bits=128, ports=ports,
                                                           offsets=offsets)
            m.d.comb += arbiter.base.eq(self.base)
            for k, fifo in enumerate(self.fifos):
                m.submodules[f"fifo{k}"] = fifo
                m.d.comb += fifo.base.eq(0)
                wiring.connect(m, wiring.flipped(getattr(self, f"i{k}")), fifo.i_stream)
                wiring.connect(m, fifo.o_stream, wiring.flipped(getattr(self, f"o{k}")))
                wiring.connect(m, fifo.mem, arbiter.ports[k])
            wiring.connect(m, arbiter.mem, wiring.flipped(self.mem))
            return m

    started = time.monotonic()
    print(f"synthesizing {ports} DRAM FIFOs and their arbiter for xcup …", file=sys.stderr, flush=True)
    measured = synthesize(verilog.convert(Shared(), name="shared"), "shared", "xcup").totals
    geometry = fifo_geometry(beat_bits=128, depth=4096, data_bits=128, burst=32)
    region = region_address_bits(geometry.region_bytes)
    each = R.dram_fifo(beat_bits=128, words_per_beat=geometry.words_per_beat, region_words=geometry.region_words,
                       family="xcup", **{**memory, "address_bits": region})
    span = ports * -(-geometry.region_bytes // REGION_ALIGN) * REGION_ALIGN
    estimate = R.memory_arbiter(ports=ports, data_bits=128, address_bits=40, port_address_bits=region,
                                offset_bits=region_address_bits(span), family="xcup")
    for _ in range(ports):
        estimate = estimate + each
    errors = {key: estimate.as_dict()[key] / measured[key] - 1 for key in ("lut", "ff")}
    result = {"case": "synth", "ports": ports, "measured": {key: measured[key] for key in ("lut", "ff")},
              "estimated": {key: estimate.as_dict()[key] for key in ("lut", "ff")},
              "errors": {key: round(value, 4) for key, value in errors.items()},
              "seconds": round(time.monotonic() - started, 1)}
    print(f"{ports} DRAM FIFOs + arbiter on xcup: LUT {measured['lut']:,} measured, {estimate.lut:,} estimated "
          f"({100 * errors['lut']:+.1f} %); FF {measured['ff']:,} measured, {estimate.ff:,} estimated "
          f"({100 * errors['ff']:+.1f} %); {result['seconds']} s")
    return result, all(abs(value) <= 0.15 for value in errors.values())


def slow_memory(args) -> tuple[dict, bool]:
    """The reduced ERFNet, every buffer in DRAM, a memory that sets the pace."""
    started = time.monotonic()
    base = load_board("pynq-z2")
    board = replace(base, dram=replace(base.dram, port_efficiency=args.port_efficiency))
    print("compiling the reduced ERFNet for pynq-z2, every buffer in DRAM …", file=sys.stderr, flush=True)
    design = compile_graph(reduced_erfnet(), board, offchip="all")
    estimate = design.estimate
    print(f"simulating {args.frames + 2} frames …", file=sys.stderr, flush=True)
    report = simulate_design(design, frames=args.frames, seed=args.seed, valid_prob=1.0, ready_prob=1.0,
                             memory_latency=(20, 200), memory_ready=args.memory_ready)
    pixels = design.graph.output_type.pixels
    ends = report.output_cycles[pixels - 1::pixels]
    # steady state: after the first four frames (the pipeline filling) and before the last two (the layers
    # upstream, out of input, leave the memory to the rest: the last frames leave faster)
    first, last = min(4, len(ends) - 2), max(len(ends) - 3, min(4, len(ends) - 2) + 1)
    period = (ends[last] - ends[first]) / (last - first)
    error = period / estimate.cycles_per_frame - 1
    result = {
        "case": "slow-memory", "bound": estimate.bound, "compute_cycles_per_frame": estimate.compute_cycles_per_frame,
        "bandwidth_cycles_per_frame": round(estimate.bandwidth_cycles_per_frame),
        "estimated_cycles_per_frame": estimate.cycles_per_frame, "measured_cycles_per_frame": round(period),
        "error": round(error, 4), "frames": len(ends), "memory_words": report.memory_words,
        "bit_exact": report.passed, "seconds": round(time.monotonic() - started, 1),
    }
    if not args.json:
        print(f"bound: {result['bound']} (compute {result['compute_cycles_per_frame']:,} cycles per frame, bandwidth "
              f"{result['bandwidth_cycles_per_frame']:,})")
        print(f"cycles per frame: estimated {result['estimated_cycles_per_frame']:,}, measured "
              f"{result['measured_cycles_per_frame']:,} (mean of frames {first + 2}–{last + 1}; {100 * error:+.1f} %)")
        print(f"DRAM words read, written: {report.memory_words[0]:,}, {report.memory_words[1]:,}; every beat equal to "
              f"golden: {'yes' if report.passed else 'NO'}; {result['seconds']} s")
        if not report.passed:
            print(report.summary(), *report.mismatches[:5], sep="\n")
    return result, report.passed and abs(error) < 0.05 and estimate.bound == "bandwidth"


if __name__ == "__main__":
    sys.exit(main())
