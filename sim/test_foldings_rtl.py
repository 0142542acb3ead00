"""One example network at three foldings: measured cycles per frame within 5 % of the estimate.

The bundled ``int8_tiny`` is built with its convolutions folded three ways — the automatic
folding for pynq-z2, every convolution at a quarter of its multipliers, and a folding that
leaves ``conv3`` (the dilated 3×3) as the only bottleneck at few lanes — and each accelerator is
simulated under Verilator: every beat must equal golden and the cycles per frame measured
between two unstalled frames must be within 5 % of the estimate, whichever layer limits.
"""

from pathlib import Path

import pytest

from hwseg.cosim import simulate_design
from hwseg.flow import compile_graph, load_graph
from hwseg.ir import Conv2d

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "int8_tiny.pt"


def _window(op) -> int:
    return op.kernel[0] * op.kernel[1] * op.in_channels


def _quarter(graph):
    """Every convolution at ``pe = 1`` and a quarter of the window in parallel (rounded to a divisor)."""
    folding = {}
    for node in graph:
        if isinstance(node.op, Conv2d):
            window = _window(node.op)
            simd = max(d for d in range(1, window + 1) if window % d == 0 and d <= max(1, window // 4))
            folding[node.name] = (1, simd)
    return folding


FOLDINGS = {
    "automatic": lambda graph: {},
    "quarter": _quarter,
    "conv3_narrow": lambda graph: {"conv3": (2, 8)},
}


@pytest.mark.parametrize("folding", sorted(FOLDINGS))
def test_measured_cycles_match_the_estimate_at_each_folding(folding, work_dir):
    graph, _ = load_graph(EXAMPLE)
    for name, (pe, simd) in FOLDINGS[folding](graph).items():
        graph = graph.with_attrs(name, pe=pe, simd=simd)
    design = compile_graph(graph, "pynq-z2")
    chosen = {n.name: (n.attrs["pe"], n.attrs["simd"]) for n in design.graph if isinstance(n.op, Conv2d)}
    for name, pair in FOLDINGS[folding](graph).items():
        assert chosen[name] == pair, (name, chosen[name])
    report = simulate_design(design, frames=1, simulator="verilator", seed=21, valid_prob=0.7, ready_prob=0.7,
                             work_dir=work_dir)
    print(f"{folding}: {chosen}; {report.summary()}")
    assert report.passed, report.summary()
    assert abs(report.estimate_error) <= 0.05, report.summary()
