"""The estimate-only report of the full ERFNet (networks.md structure) on the boards the issue names:
every line buffer follows rows × width × channels × bits, and every skip FIFO is listed."""

import re

import pytest
import torch

from hwseg.flow import build
from hwseg.frontend import save_checkpoint
from hwseg.ir import Add, Concat, Conv2d
from hwseg.models import build_model
from hwseg.quant import calibrate


@pytest.fixture(scope="module")
def erfnet_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    args = {"classes": 20, "input_size": [512, 1024]}
    model = build_model("erfnet", args)
    calibrate(model, [torch.randint(0, 256, (1, 3, 64, 128)).float()])   # convolutions do not care about size
    path = tmp_path_factory.mktemp("erfnet") / "erfnet.pt"
    save_checkpoint(model.eval(), path, "erfnet", args, (3, 512, 1024))
    return path


@pytest.mark.parametrize("board, size", [("zcu104", (512, 1024)), ("pynq-z2", (256, 512))])
def test_full_erfnet_report_lists_line_buffers_and_fifos(erfnet_checkpoint, board, size, tmp_path):
    design = build(erfnet_checkpoint, board, input_size=size, estimate_only=True, offchip="none")
    assert design.verilog is None and set(design.files()) == {"report.json", "report.md", "report.html"}
    graph, layers = design.graph, {layer.name: layer for layer in design.estimate.layers}
    dilated = 0
    for node in graph:
        layer = layers[node.name]
        if isinstance(node.op, Conv2d) and not node.op.channelwise and node.op.kernel != (1, 1):
            (kh, kw), (dh, _), (ph, pw) = node.op.kernel, node.op.dilation, node.op.padding
            x = graph.input_types(node.name)[0]
            if kh == 1:                       # a 1×k kernel: a shift register of taps, no rows
                assert layer.line_buffer == (), node.name
                continue
            rows, width, channels, bits = layer.line_buffer
            assert (rows, width, channels, bits) == ((kh - 1) * dh, x.width + 2 * pw, x.channels, 8), node.name
            assert layer.line_buffer_bits == rows * width * channels * bits
            dilated += kw == 1 and dh > 1
        if isinstance(node.op, (Add, Concat)):
            assert any(node.attrs["skip_fifos"]), node.name      # the shorter branch waits in a FIFO
            assert {name for name, _, _ in layer.fifos} <= set(node.inputs)
    assert dilated == 8                # 8 non-bottleneck-1d blocks with dilations 2, 4, 8, 16 (their second 3×1)
    report = design.files()["report.md"]
    d16 = next(n for n in graph if isinstance(n.op, Conv2d) and n.op.dilation == (16, 1))
    x = graph.input_types(d16.name)[0]
    # a 3×1 kernel with dilation 16 holds 2·16 rows (padding is vertical only: the width is the frame's)
    # of megabits: in block RAM (or URAM where the part has it), never LUTRAM
    line = f"| {d16.name} | 32 × {x.width} × {x.channels} × 8 b = {32 * x.width * x.channels * 8:,} b in "
    assert re.search(re.escape(line) + r"\d+ (BRAM18|URAM) \|", report), line
    # every residual add lists a FIFO on each input: "source: depth × width b = bits b in <memory>"
    fifo = r"encoder_\w+: [\d,]+ × \d+ b = [\d,]+ b in (LUTRAM|\d+ BRAM18|\d+ URAM|flip-flops)"
    assert re.search(rf"\| encoder_\d+_out \|  \| {fifo}, {fifo} \|", report)
    # the design does not fit: the reports give no frame rate and no share of the roofline as if it ran
    assert design.estimate.overflows()
    summary = design.files()["report.md"]
    assert "DOES NOT FIT" in summary and "no frame rate until it fits" in summary and " fps at " not in summary
    assert "of the compute bound" not in summary
    import json
    data = json.loads(design.files()["report.json"])
    assert data["fps"] is None and data["roofline"]["achieved_fraction"] is None
    assert "none: does not fit" in design.files()["report.html"]


def test_full_erfnet_fully_folded_keeps_its_windows_in_memory(erfnet_checkpoint):
    """Issue 12: on zcu104 at 1024×512 the cheapest design (nothing fits: block RAM is short) is the fully
    folded one, whose windows are served from memory: at most 120,000 FF in all, 1,500 per convolution."""
    design = build(erfnet_checkpoint, "zcu104", estimate_only=True, offchip="none")
    estimate = design.estimate
    assert estimate.limit.startswith("does not fit even fully folded")
    convs = [(node, layer) for node, layer in zip(design.graph, estimate.layers)
             if isinstance(node.op, Conv2d) and not node.op.channelwise]
    assert all(node.attrs["pe"] == 1 and node.attrs["simd"] == 1 for node, _ in convs)
    windowed = [node for node, _ in convs if node.op.kernel != (1, 1)]
    assert windowed and all(node.attrs["window"] == "folded" for node in windowed)
    heaviest = max(convs, key=lambda pair: pair[1].resources.ff)
    print(f"\nFF {estimate.total.ff:,} in all; the heaviest convolution {heaviest[0].name}: "
          f"{heaviest[1].resources.ff:,} FF")
    assert estimate.total.ff <= 120_000
    assert heaviest[1].resources.ff <= 1_500


def test_erfnet_tiny_fits_zcu104_at_288x576():
    """Issue 12: the bundled erfnet_tiny at --input 288x576 fits zcu104 (it was refused as needing 3,514 of
    1,728 DSP "even fully folded", although 256x512 fitted)."""
    design = build("examples/erfnet_tiny.pt", "zcu104", input_size=(288, 576), estimate_only=True)
    assert not design.estimate.overflows(), design.estimate.limit
    assert design.estimate.fps > 100
