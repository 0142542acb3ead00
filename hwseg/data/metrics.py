"""Segmentation metrics: confusion matrix and (mean) intersection over union.

Pixels labelled ``ignore`` (255) are skipped. A class that occurs neither in the labels nor in
the predictions has no IoU (NaN in the per-class result) and is left out of the mean, so the mean
is over the classes that were seen or predicted; a class that was predicted but never labelled
counts with IoU 0.
"""

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["confusion_matrix", "mean_iou", "MeanIoU"]


class MeanIoU(NamedTuple):
    miou: float                 #: mean over the classes present in labels or predictions (NaN if none)
    per_class: torch.Tensor     #: float64 (classes,), NaN for absent classes


def _as_tensor(x):
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    return torch.as_tensor(x)


def confusion_matrix(pred, label, classes, ignore=255):
    """``int64 (classes, classes)`` counts: row = label class, column = predicted class.

    ``pred`` and ``label`` are integer tensors (or arrays) of the same shape, any number of
    dimensions; label pixels equal to ``ignore`` are skipped. Sum the matrices of several batches
    to get the matrix of a whole split.
    """
    pred, label = _as_tensor(pred), _as_tensor(label)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(label.shape)}")
    if pred.is_floating_point() or label.is_floating_point():
        raise ValueError("prediction and label must be integer class maps (take argmax over the logits first)")
    pred, label = pred.reshape(-1).long(), label.reshape(-1).long()
    if ignore is not None:
        keep = label != ignore
        pred, label = pred[keep], label[keep]
    if label.numel():
        if int(label.min()) < 0 or int(label.max()) >= classes:
            raise ValueError(f"label values must lie in 0..{classes - 1} (or be {ignore}), "
                             f"found {int(label.min())}..{int(label.max())}")
        if int(pred.min()) < 0 or int(pred.max()) >= classes:
            raise ValueError(f"predicted classes must lie in 0..{classes - 1}, "
                             f"found {int(pred.min())}..{int(pred.max())}")
    counts = torch.bincount(label * classes + pred, minlength=classes * classes)
    return counts.reshape(classes, classes).cpu()


def mean_iou(confusion):
    """``MeanIoU(miou, per_class)`` of a confusion matrix (rows = label, columns = prediction).

    ``IoU_c = TP / (TP + FP + FN)``; classes with ``TP + FP + FN = 0`` (absent from labels and
    predictions) get NaN and are excluded from the mean.
    """
    confusion = _as_tensor(confusion).to(torch.float64)
    if confusion.dim() != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion matrix must be square, not {tuple(confusion.shape)}")
    tp = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - tp
    per_class = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    present = union > 0
    miou = float(per_class[present].mean()) if bool(present.any()) else float("nan")
    return MeanIoU(miou, per_class)
