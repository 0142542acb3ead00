"""Datasets and metrics for training and evaluating segmentation networks.

* :class:`SyntheticSegmentation` — seeded synthetic shapes, the default (no files needed);
* :class:`Cityscapes`, :class:`VOCSegmentation` — read the user's copy of those datasets;
* :func:`open_dataset` — ``"synthetic"`` or a directory whose layout is detected;
* :func:`check_size` — refuse an input size that is not a multiple of the network's stride;
* :func:`confusion_matrix`, :func:`mean_iou` — metrics that skip ignore pixels.

Every dataset yields ``(image, label)``: ``uint8 (3, H, W)`` and ``int64 (H, W)``. Label value
:data:`IGNORE` (255) means "not labelled" and must be skipped by losses
(``ignore_index=255``) and metrics.
"""

from ._files import IGNORE, PairedSegmentation
from .cityscapes import CITYSCAPES_CLASSES, Cityscapes
from .metrics import MeanIoU, confusion_matrix, mean_iou
from .loader import SYNTHETIC_DEFAULTS, check_size, open_dataset
from .synthetic import SHAPES, TEXTURES, SyntheticSegmentation
from .voc import VOC_CLASSES, VOCSegmentation, voc_palette

__all__ = ["IGNORE", "PairedSegmentation", "CITYSCAPES_CLASSES", "Cityscapes", "MeanIoU", "confusion_matrix",
           "mean_iou", "SYNTHETIC_DEFAULTS", "check_size", "open_dataset", "SHAPES", "TEXTURES",
           "SyntheticSegmentation", "VOC_CLASSES", "VOCSegmentation", "voc_palette"]
