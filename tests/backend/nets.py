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
