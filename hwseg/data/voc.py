"""PASCAL VOC 2012 segmentation, read from the user's copy (hwseg downloads nothing).

Expected tree (``VOCdevkit/VOC2012`` of ``VOCtrainval_11-May-2012.tar``; the directory above it,
``VOCdevkit/`` or the one holding ``VOCdevkit/`` are accepted too)::

    root/JPEGImages/{id}.jpg
    root/SegmentationClass/{id}.png          palette PNG: pixel = class index
    root/ImageSets/Segmentation/{split}.txt  one id per line

21 classes (0 = background). Index 255 marks object boundaries and "difficult" regions: it stays
255 (ignore) — metrics and losses must skip it. RGB label PNGs are decoded through the VOC colour
map.
"""

from pathlib import Path

from hwseg.errors import DatasetError

from ._files import IGNORE, PairedSegmentation

__all__ = ["VOCSegmentation", "VOC_CLASSES", "voc_palette"]

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")

_PARTS = ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation")


def voc_palette():
    """The VOC colour map: 256 (r, g, b) triples, entry i the colour of class index i (255 → (224, 224, 192))."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette.append((r, g, b))
    return palette


_COLOURS = {colour: index for index, colour in enumerate(voc_palette()) if index < len(VOC_CLASSES) or index == IGNORE}


def find_voc_root(root):
    """The VOC2012 directory at or under ``root`` (root, root/VOC2012, root/VOCdevkit/VOC2012), or None."""
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if any((candidate / part).is_dir() for part in _PARTS):
            return candidate
    return None


def voc_pairs(root, split):
    """The (image, label) path pairs listed by a split file; DatasetError for a broken tree or split."""
    root = Path(root)
    for part in _PARTS:
        if not (root / part).is_dir():
            raise DatasetError(f"PASCAL VOC tree '{root}' has no {part}/; expected JPEGImages/, SegmentationClass/ "
                               f"and ImageSets/Segmentation/ as in VOCdevkit/VOC2012")
    split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not split_file.is_file():
        present = sorted(p.stem for p in (root / "ImageSets" / "Segmentation").glob("*.txt"))
        raise DatasetError(f"PASCAL VOC tree '{root}' has no split file ImageSets/Segmentation/{split}.txt; "
                           f"splits present: {', '.join(present) if present else 'none'}")
    try:
        ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read split file '{split_file}' ({error}); restore it") from None
    if not ids:
        raise DatasetError(f"PASCAL VOC split '{split}' is empty: '{split_file}' lists no image ids; "
                           f"add one id per line or choose another split")
    pairs = []
    for image_id in ids:
        image = root / "JPEGImages" / f"{image_id}.jpg"
        label = root / "SegmentationClass" / f"{image_id}.png"
        if not image.is_file():
            raise DatasetError(f"PASCAL VOC split '{split}' lists '{image_id}' but its image '{image}' is missing; "
                               f"restore it or remove the id from '{split_file}'")
        if not label.is_file():
            raise DatasetError(f"PASCAL VOC split '{split}' lists '{image_id}' but its label '{label}' is missing; "
                               f"restore it or remove the id from '{split_file}'")
        pairs.append((image, label))
    return pairs


class VOCSegmentation(PairedSegmentation):
    """A PASCAL VOC 2012 segmentation split: ``(uint8 (3, H, W), int64 (H, W))`` samples in split-file order.

    ``root`` is ``VOC2012/`` (or a directory above it). ``classes`` defaults to 21; 255 is ignore.
    ``size = (H, W)`` resizes (bilinear images, nearest labels).
    """

    colours = _COLOURS

    def __init__(self, root, split="train", size=None, *, classes=None):
        found = find_voc_root(root)
        if classes is None:
            classes = len(VOC_CLASSES)
        names = VOC_CLASSES if classes == len(VOC_CLASSES) else None
        super().__init__(voc_pairs(found if found is not None else root, split), classes=classes, size=size,
                         class_names=names)
        self.root, self.split = Path(found if found is not None else root), split

    def __repr__(self):
        return f"VOCSegmentation('{self.root}', split={self.split!r}, {len(self)} images, classes={self.classes})"
