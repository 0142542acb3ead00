"""Training and evaluation of hwseg's segmentation models.

Models end in :class:`hwseg.quant.ArgMax`, which passes the logits through while training
(the loss needs them) and gives the class map in eval mode. When a model's output is
coarser than its labels (a network without a full-resolution decoder), the labels are
subsampled to the output size by nearest neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data import IGNORE, MeanIoU, confusion_matrix, mean_iou
from .progress import Progress

__all__ = ["TrainSettings", "EpochResult", "train", "evaluate_model", "evaluate_graph", "labels_like"]


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class EpochResult:
    epoch: int
    loss: float
    miou: float
    per_class: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "loss": round(self.loss, 6), "miou": round(self.miou, 6),
                "per_class": [None if math.isnan(v) else round(float(v), 6) for v in self.per_class]}


def labels_like(labels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``labels`` ``(N, H, W)`` subsampled (nearest) to ``height × width``; unchanged when equal."""
    if labels.shape[-2:] == (height, width):
        return labels
    resized = F.interpolate(labels[:, None].float(), size=(height, width), mode="nearest")
    return resized[:, 0].long()


def _loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=0,
                      drop_last=False)


def evaluate_model(model: nn.Module, dataset: Dataset, classes: int, *, batch_size: int = 32,
                   label: str = "eval") -> MeanIoU:
    """mIoU of ``model`` (in eval mode: its class map) on ``dataset``."""
    model.eval()
    confusion = np.zeros((classes, classes), dtype=np.int64)
    loader = _loader(dataset, batch_size, False, 0)
    progress = Progress(len(loader), label)
    with torch.no_grad():
        for images, labels in loader:
            predicted = model(images.float())[:, 0]
            confusion += confusion_matrix(predicted, labels_like(labels, *predicted.shape[-2:]), classes).numpy()
            progress.update()
    return mean_iou(confusion)


def evaluate_graph(graph, dataset: Dataset, classes: int, *, batch_size: int = 32, label: str = "golden") -> MeanIoU:
    """mIoU of the exported integer graph, executed by the golden model, on ``dataset``."""
    from ..golden import run_graph

    confusion = np.zeros((classes, classes), dtype=np.int64)
    loader = _loader(dataset, batch_size, False, 0)
    progress = Progress(len(loader), label)
    for images, labels in loader:
        predicted = torch.from_numpy(run_graph(graph, images.numpy().astype(np.int64))[:, 0])
        confusion += confusion_matrix(predicted, labels_like(labels, *predicted.shape[-2:]), classes).numpy()
        progress.update()
    return mean_iou(confusion)


def train(model: nn.Module, train_set: Dataset, val_set: Dataset, classes: int, settings: TrainSettings, *,
          start_epoch: int = 0, optimizer_state: dict | None = None, on_epoch=None) -> list[EpochResult]:
    """Train ``model`` from ``start_epoch`` to ``settings.epochs`` with Adam and a cosine schedule;
    after each epoch evaluate on ``val_set`` and call ``on_epoch(result, optimizer)``."""
    torch.manual_seed(settings.seed + start_epoch)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    results = []
    for epoch in range(start_epoch, settings.epochs):
        for group in optimizer.param_groups:  # cosine decay, a function of the epoch only (resumable)
            group["lr"] = settings.lr * 0.5 * (1 + math.cos(math.pi * epoch / settings.epochs))
        model.train()
        loader = _loader(train_set, settings.batch_size, True, settings.seed * 1000 + epoch)
        progress = Progress(len(loader), f"epoch {epoch + 1}/{settings.epochs}")
        total, batches = 0.0, 0
        for images, labels in loader:
            logits = model(images.float())
            loss = F.cross_entropy(logits, labels_like(labels, *logits.shape[-2:]), ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
            progress.update(loss=total / batches)
        miou, per_class = evaluate_model(model, val_set, classes, label="  validation")
        result = EpochResult(epoch + 1, total / max(batches, 1), miou, list(per_class))
        results.append(result)
        if on_epoch is not None:
            on_epoch(result, optimizer)
    return results
