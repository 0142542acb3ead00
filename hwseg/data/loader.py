"""``open_dataset``: one entry point for the synthetic set and the directory datasets, and
``check_size``: the input size the network's stride requires."""

from pathlib import Path

from hwseg.errors import DatasetError

from .cityscapes import Cityscapes, is_cityscapes
from .synthetic import SyntheticSegmentation, _check_size
from .voc import VOCSegmentation, find_voc_root

__all__ = ["open_dataset", "check_size", "SYNTHETIC_DEFAULTS"]

#: What ``open_dataset("synthetic", ...)`` uses for arguments left as None.
SYNTHETIC_DEFAULTS = {"size": (64, 64), "classes": 8, "count": {"train": 1024, "val": 256}}


def _suggest(value, stride):
    down = value // stride * stride
    return down, down + stride


def check_size(size, stride):
    """Return ``size`` as ``(H, W)`` if both sides are multiples of ``stride``; DatasetError otherwise.

    The message suggests the nearest sizes below and above that the network accepts.
    """
    height, width = _check_size(size)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer, not {stride!r}")
    if height % stride == 0 and width % stride == 0:
        return height, width
    (h_down, h_up), (w_down, w_up) = _suggest(height, stride), _suggest(width, stride)
    if height % stride == 0:
        h_down = h_up = height
    if width % stride == 0:
        w_down = w_up = width
    options = [f"{h}×{w}" for h, w in ((h_down, w_down), (h_up, w_up)) if h > 0 and w > 0]
    raise DatasetError(f"input {height}×{width} is not divisible by the network's stride {stride}; "
                       f"use e.g. {' or '.join(options)}")


def open_dataset(spec, *, split, size, classes=None, count=None, seed=0, void_class=False, stride=None):
    """Open a segmentation dataset: ``"synthetic"`` or the root directory of a Cityscapes or VOC tree.

    Every dataset yields ``(image uint8 (3, H, W), label int64 (H, W))``; label 255 is ignore
    (never produced by the synthetic set). ``size = (H, W)`` resizes real images (None keeps their
    own size; for the synthetic set None means 64×64). ``classes`` is the network's class count
    (default: 8 synthetic, 19 Cityscapes — 20 with ``void_class`` —, 21 VOC); real labels are checked
    against it as they are read. ``count`` and ``seed`` apply to the synthetic set only. With
    ``stride`` a given (or the synthetic default) size is checked with :func:`check_size`.

    Raises DatasetError with a one-line message for a path that is neither layout, a broken tree,
    an empty split, and (when a sample is read) an unreadable image or an out-of-range label.
    """
    if size is not None:
        size = _check_size(size)
    if isinstance(spec, str) and spec == "synthetic":
        size = size if size is not None else SYNTHETIC_DEFAULTS["size"]
        if stride is not None:
            check_size(size, stride)
        if count is None:
            count = SYNTHETIC_DEFAULTS["count"].get(split, SYNTHETIC_DEFAULTS["count"]["val"])
        return SyntheticSegmentation(size=size, count=count,
                                     classes=classes if classes is not None else SYNTHETIC_DEFAULTS["classes"],
                                     seed=seed, split=split)
    if stride is not None and size is not None:
        check_size(size, stride)
    root = Path(spec)
    if not root.is_dir():
        what = "is a file, not a directory" if root.exists() else "does not exist"
        raise DatasetError(f"dataset '{spec}' {what}; pass 'synthetic' or the root directory of a Cityscapes or "
                           f"PASCAL VOC 2012 tree")
    if is_cityscapes(root):
        dataset = Cityscapes(root, split, size, classes=classes, void_class=void_class)
    elif find_voc_root(root) is not None:
        if void_class:
            raise DatasetError(f"void_class applies to Cityscapes only, and '{root}' is a PASCAL VOC tree; "
                               f"drop void_class")
        dataset = VOCSegmentation(root, split, size, classes=classes)
    else:
        raise DatasetError(f"'{root}' is neither a Cityscapes tree (leftImg8bit/ and gtFine/) nor a PASCAL VOC 2012 "
                           f"tree (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/); pass the dataset's "
                           f"root directory or 'synthetic'")
    return dataset
