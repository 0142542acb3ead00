"""Small graphs the backend tests build on."""

import numpy as np

from hwseg.ir import ArgMax, Conv2d, Graph, Input, Int, MulShift, Node, UInt


def two_conv_net(seed=0, width=8, size=12, name="net"):
    """3×3 conv → requantizer → 1×1 conv to 4 channels → requantizer → argmax, on a ``size``² image."""
    rng = np.random.default_rng(seed)
    return Graph([
        Node("x", Input((3, size, size), UInt(8))),
        Node("c1", Conv2d(rng.integers(-127, 128, (width, 3, 3, 3)), rng.integers(-99, 99, width), Int(8),
                          padding=1), ("x",)),
        Node("r1", MulShift(rng.integers(1, 99, width), 10, 0, 255), ("c1",)),
        Node("c2", Conv2d(rng.integers(-127, 128, (4, width, 1, 1)), np.zeros(4), Int(8)), ("r1",)),
        Node("r2", MulShift(rng.integers(1, 99, 4), 10, -127, 127), ("c2",)),
        Node("a", ArgMax(), ("r2",)),
    ], name=name)


def pointwise_chain(widths=(128, 128, 128, 128), size=2):
    """1×1 convolutions of 8-bit weights, each requantized to 8 bits: at one MAC a cycle a 128 × 128 one keeps
    2,048 words of 8 packed folds (64 bits) — an UltraRAM alone, two to one together."""
    rng = np.random.default_rng(14)
    nodes, previous = [Node("x", Input((widths[0], size, size), UInt(8)))], "x"
    for k, (cin, cout) in enumerate(zip(widths, widths[1:])):
        nodes += [Node(f"c{k}", Conv2d(rng.integers(-127, 128, (cout, cin, 1, 1)), np.zeros(cout, dtype=np.int64),
                                       Int(8)), (previous,)),
                  Node(f"r{k}", MulShift(rng.integers(1, 9, cout), 12, 0, 255), (f"c{k}",))]
        previous = f"r{k}"
    return Graph(nodes, name="pointwise_chain")
