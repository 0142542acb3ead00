"""run_graph / run_op on a hand-built graph against the same chain of torch ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwseg.golden import run_graph, run_op
from hwseg.ir import ArgMax, Conv2d, Graph, Input, Int, IRError, MaxPool, MulShift, Node, Op, UInt

RNG = np.random.default_rng(2024)
W1 = RNG.integers(-7, 8, (8, 3, 3, 3))          # Int(4) narrow range
B1 = RNG.integers(-200, 200, 8)
M1 = RNG.integers(1, 40, 8)
W2 = RNG.integers(-127, 128, (6, 4, 3, 2))      # Int(8), groups=2, rectangular kernel
B2 = RNG.integers(-500, 500, 6)
M2 = RNG.integers(-30, 60, 6)                   # a negative multiplier too


def build_graph():
    return Graph([
        Node("image", Input((3, 13, 11), UInt(8))),
        Node("conv1", Conv2d(W1, B1, Int(4), padding=1), ("image",)),
        Node("req1", MulShift(M1, 13, 0, 15), ("conv1",)),                  # ReLU to UInt(4)
        Node("pool", MaxPool(3, stride=2, padding=1), ("req1",)),
        Node("conv2", Conv2d(W2, B2, Int(8), stride=(1, 2), padding=(1, 1), groups=2), ("pool",)),
        Node("req2", MulShift(M2, 11, -128, 127), ("conv2",)),               # signed Int(8) logits
        Node("classes", ArgMax(bits=3), ("req2",)),
    ], name="tiny")


def torch_mul_shift(acc, m, s, lo, hi):
    y = acc * torch.as_tensor(m).view(1, -1, 1, 1)
    return torch.clamp(torch.div(y + 2 ** (s - 1), 2 ** s, rounding_mode="floor"), lo, hi)


def torch_chain(x):
    """The same network with torch ops: float64 convs on integers (exact), int64 requant."""
    t = torch.from_numpy(x)
    steps = {"image": t}
    acc = F.conv2d(t.double(), torch.from_numpy(W1).double(), torch.from_numpy(B1).double(), padding=1)
    steps["conv1"] = acc.round().long()
    steps["req1"] = torch_mul_shift(steps["conv1"], M1, 13, 0, 15)
    steps["pool"] = F.max_pool2d(steps["req1"].double(), 3, 2, 1).long()
    acc = F.conv2d(steps["pool"].double(), torch.from_numpy(W2).double(), torch.from_numpy(B2).double(),
                   stride=(1, 2), padding=1, groups=2)
    steps["conv2"] = acc.round().long()
    steps["req2"] = torch_mul_shift(steps["conv2"], M2, 11, -128, 127)
    steps["classes"] = torch.argmax(steps["req2"], dim=1, keepdim=True)
    return {k: v.numpy() for k, v in steps.items()}


@pytest.fixture(scope="module")
def graph():
    return build_graph()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(7).integers(0, 256, (3, 3, 13, 11))


def test_output_equals_torch_chain(graph, images):
    expected = torch_chain(images)
    got = run_graph(graph, images)
    assert got.dtype == np.int64 and got.shape == (3, 1, 7, 4)
    assert np.array_equal(got, expected["classes"])
    # The data is not degenerate: requantized values spread and several classes win.
    assert len(np.unique(expected["req1"])) > 4 and len(np.unique(expected["req2"])) > 10
    assert len(np.unique(got)) > 2


def test_keep_returns_every_node(graph, images):
    expected = torch_chain(images)
    kept = run_graph(graph, images, keep=True)
    assert list(kept) == [n.name for n in graph]
    for name, value in kept.items():
        assert value.dtype == np.int64, name
        assert value.shape[1:] == graph.types[name].shape, name
        assert np.array_equal(value, expected[name]), name


def test_single_frame_and_batch_agree(graph, images):
    batch = run_graph(graph, images)
    for i in range(len(images)):
        frame = run_graph(graph, images[i])
        assert frame.shape == (1, 7, 4)
        assert np.array_equal(frame, batch[i])
    kept = run_graph(graph, images[1], keep=True)
    assert kept["conv1"].shape == (8, 13, 11) and np.array_equal(kept["classes"], batch[1])


def test_narrow_integer_dtypes_accepted(graph, images):
    assert np.array_equal(run_graph(graph, images.astype(np.uint8)), run_graph(graph, images))


def test_output_may_be_an_inner_node(images):
    g = build_graph().replace(output="pool")
    got = run_graph(g, images)
    assert np.array_equal(got, torch_chain(images)["pool"])


@pytest.mark.parametrize("value", [256, -1, 1000])
def test_out_of_range_input_rejected(graph, images, value):
    bad = images.copy()
    bad[1, 2, 5, 4] = value
    with pytest.raises(IRError, match=rf"'image' of type UInt\(8\) holds {value}, outside its range 0…255"):
        run_graph(graph, bad)
    with pytest.raises(IRError, match="outside its range"):
        run_graph(graph, bad[1])


@pytest.mark.parametrize("shape", [(3, 13, 12), (2, 13, 11), (1, 3, 11, 13), (3, 13), (1, 1, 3, 13, 11), (0, 3, 13, 11)])
def test_wrong_shape_rejected(graph, shape):
    with pytest.raises(IRError, match="shape|empty batch"):
        run_graph(graph, np.zeros(shape, np.int64))


def test_float_input_rejected(graph, images):
    with pytest.raises(IRError, match="must hold integers, not float64"):
        run_graph(graph, images.astype(np.float64))


def test_signed_input_type_checked():
    g = Graph([Node("x", Input((1, 4, 4), Int(4))), Node("pool", MaxPool(2), ("x",))])
    x = np.full((1, 4, 4), -8)
    assert np.array_equal(run_graph(g, x), np.full((1, 2, 2), -8))
    with pytest.raises(IRError, match=r"holds -9, outside its range -8…7"):
        run_graph(g, x - 1)


def test_run_op_single_ops(images):
    expected = torch_chain(images)
    conv = Conv2d(W1, B1, Int(4), padding=1)
    assert np.array_equal(run_op(conv, [images]), expected["conv1"])
    assert np.array_equal(run_op(MulShift(M1, 13, 0, 15), [expected["conv1"]]), expected["req1"])
    assert np.array_equal(run_op(MaxPool(3, 2, 1), [expected["req1"]]), expected["pool"])
    assert np.array_equal(run_op(ArgMax(3), [expected["req2"]]), expected["classes"])
    assert np.array_equal(run_op(Input((3, 13, 11), UInt(8)), [images]), images)


def test_run_op_errors(images):
    with pytest.raises(IRError, match="takes 1 input tensor"):
        run_op(MaxPool(2), [images, images])
    with pytest.raises(IRError, match="takes 1 input tensor"):
        run_op(Input((3, 13, 11), UInt(8)), [])

    class Mystery(Op):
        pass

    with pytest.raises(NotImplementedError, match="no implementation of Mystery"):
        run_op(Mystery(), [images])
