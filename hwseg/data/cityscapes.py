"""Cityscapes, read from the user's copy (hwseg downloads nothing).

Expected tree (as extracted from ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``,
with the trainId labels made by cityscapesscripts' ``createTrainIdLabelImgs.py``)::

    root/leftImg8bit/{split}/{city}/{name}_leftImg8bit.png
    root/gtFine/{split}/{city}/{name}_gtFine_labelTrainIds.png

Labels are trainIds 0…18 and 255 (ignore). 255 stays 255 — metrics and losses must skip it —
unless ``void_class`` is set, which makes it a class of its own (the last one: 19 of 20 by
default, as ERFNet trains).
"""

from pathlib import Path

from hwseg.errors import DatasetError

from ._files import PairedSegmentation

__all__ = ["Cityscapes", "CITYSCAPES_CLASSES"]

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                      "bicycle")

_IMAGE_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelTrainIds.png"


def _splits(folder):
    present = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return ", ".join(present) if present else "none"


def is_cityscapes(root):
    root = Path(root)
    return (root / "leftImg8bit").is_dir() or (root / "gtFine").is_dir()


def cityscapes_pairs(root, split):
    """The sorted (image, label) path pairs of a split; DatasetError for a broken tree or split."""
    root = Path(root)
    images_dir, labels_dir = root / "leftImg8bit", root / "gtFine"
    for have, missing, archive in ((images_dir, labels_dir, "gtFine_trainvaltest.zip"),
                                   (labels_dir, images_dir, "leftImg8bit_trainvaltest.zip")):
        if not missing.is_dir():
            raise DatasetError(f"Cityscapes tree '{root}' has {have.name}/ but no {missing.name}/; extract "
                               f"{archive} into '{root}'")
    images = sorted((images_dir / split).glob(f"*/*{_IMAGE_SUFFIX}"))
    if not images:
        raise DatasetError(f"Cityscapes split '{split}' in '{root}' has no images (expected "
                           f"leftImg8bit/{split}/<city>/<name>{_IMAGE_SUFFIX}); splits present: {_splits(images_dir)}")
    pairs = []
    for image in images:
        city = image.parent.name
        name = image.name[:-len(_IMAGE_SUFFIX)]
        label = labels_dir / split / city / f"{name}{_LABEL_SUFFIX}"
        if not label.is_file():
            raise DatasetError(f"Cityscapes image '{image}' has no label '{label}'; create the trainId labels with "
                               f"cityscapesscripts' createTrainIdLabelImgs.py, or remove the image")
        pairs.append((image, label))
    paired = {label for _, label in pairs}
    for label in sorted((labels_dir / split).glob(f"*/*{_LABEL_SUFFIX}")):
        if label not in paired:
            name = label.name[:-len(_LABEL_SUFFIX)]
            image = images_dir / split / label.parent.name / f"{name}{_IMAGE_SUFFIX}"
            raise DatasetError(f"Cityscapes label '{label}' has no image '{image}'; restore the image or remove the "
                               f"label")
    return pairs


class Cityscapes(PairedSegmentation):
    """A Cityscapes split: ``(uint8 (3, H, W), int64 (H, W))`` samples, in sorted file order.

    ``classes`` defaults to 19, or 20 with ``void_class`` (255 → class 19); pass the network's class
    count to check the labels against it. ``size = (H, W)`` resizes (bilinear images, nearest labels).
    """

    def __init__(self, root, split="train", size=None, *, classes=None, void_class=False):
        if classes is None:
            classes = len(CITYSCAPES_CLASSES) + (1 if void_class else 0)
        names = CITYSCAPES_CLASSES + (("void",) if void_class else ())
        if len(names) != classes:
            names = None
        super().__init__(cityscapes_pairs(root, split), classes=classes, size=size, void_class=void_class,
                         class_names=names)
        self.root, self.split = Path(root), split

    def __repr__(self):
        return f"Cityscapes('{self.root}', split={self.split!r}, {len(self)} images, classes={self.classes})"
