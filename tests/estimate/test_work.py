"""MAC and parameter counts of a graph."""

import numpy as np

from hwseg.estimate.work import macs_per_frame, parameter_count
from hwseg.ir import ArgMax, Conv2d, ConvTranspose2d, Graph, Input, Int, Node, UInt


def test_counts_follow_the_networks_md_convention():
    conv = Conv2d(np.ones((6, 3, 3, 3)), np.zeros(6), Int(8), stride=2, padding=1)            # 16×16 → 8×8
    up = ConvTranspose2d(np.ones((6, 4, 2, 2)), np.zeros(4), Int(8), stride=2)                 # 8×8 → 16×16
    graph = Graph([Node("x", Input((3, 16, 16), UInt(8))), Node("c", conv, ("x",)), Node("u", up, ("c",)),
                   Node("a", ArgMax(), ("u",))])
    assert macs_per_frame(graph) == 6 * 27 * 64 + 6 * 4 * 4 * 64
    assert parameter_count(graph) == 6 * 27 + 6 + 6 * 4 * 4 + 4
