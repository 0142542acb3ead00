"""Confusion matrix and mean IoU against a hand-computed example."""

import math

import numpy as np
import pytest
import torch

from hwseg.data import confusion_matrix, mean_iou

LABEL = torch.tensor([[0, 0, 1], [1, 2, 255]])
PRED = torch.tensor([[0, 1, 1], [1, 1, 0]])


def test_hand_computed_example():
    # kept pixels (label, pred): (0,0) (0,1) (1,1) (1,1) (2,1); the ignored pixel predicts 0 and must not count
    confusion = confusion_matrix(PRED, LABEL, 4)
    assert confusion.dtype == torch.int64
    assert confusion.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    miou, per_class = mean_iou(confusion)
    # IoU0 = 1 / (1 + 0 FP + 1 FN); IoU1 = 2 / (2 + 2 FP + 0 FN); IoU2 = 0 / (0 + 0 + 1); class 3 absent
    assert per_class[:3].tolist() == [0.5, 0.5, 0.0]
    assert math.isnan(per_class[3])
    assert miou == pytest.approx(1 / 3)


def test_batches_sum_and_numpy_inputs():
    total = confusion_matrix(PRED[:1].numpy(), LABEL[:1].numpy(), 3) + confusion_matrix(PRED[1:], LABEL[1:], 3)
    assert torch.equal(total, confusion_matrix(PRED, LABEL, 3))
    assert mean_iou(total.numpy()).miou == pytest.approx(1 / 3)


def test_predicted_but_unlabelled_class_counts_as_zero():
    confusion = confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 0]), 2)
    assert mean_iou(confusion).per_class.tolist() == [0.0, 0.0]


def test_random_maps_against_a_loop():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 5, size=(3, 7, 9))
    label[rng.random(label.shape) < 0.2] = 255
    pred = rng.integers(0, 5, size=label.shape)
    expected = np.zeros((5, 5), np.int64)
    for l, p in zip(label.ravel(), pred.ravel()):
        if l != 255:
            expected[l, p] += 1
    assert confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label), 5).numpy().tolist() == expected.tolist()


def test_nothing_present_and_bad_inputs():
    assert math.isnan(mean_iou(torch.zeros(3, 3, dtype=torch.int64)).miou)
    with pytest.raises(ValueError, match="differs from label shape"):
        confusion_matrix(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"label values must lie in 0..1 \(or be 255\), found 0..7"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 7]), 2)
    with pytest.raises(ValueError, match="predicted classes must lie in 0..1"):
        confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), 2)
