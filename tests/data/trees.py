"""Small Cityscapes and PASCAL VOC trees written with Pillow, for the dataset tests.

Sample ``k`` of a tree has a constant image colour :func:`colour` ``(k)`` and a label whose left
half is class ``k`` (``k mod classes``) and whose right half is 255 (ignore), except the top row,
which is class 0: a loader that pairs images with the wrong labels, or drops the ignore value,
is caught by comparing the two.
"""

import numpy as np
from PIL import Image

from hwseg.data import voc_palette

H, W = 8, 12


def colour(k):
    return (20 + 30 * k, 200 - 25 * k, 40 + 17 * k)


def image_array(k, height=H, width=W):
    return np.broadcast_to(np.array(colour(k), np.uint8), (height, width, 3)).copy()


def label_array(k, height=H, width=W):
    label = np.full((height, width), 255, np.uint8)
    label[:, : width // 2] = k
    label[0, :] = 0
    return label


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_palette_png(path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.frombytes("P", (ids.shape[1], ids.shape[0]), np.ascontiguousarray(ids, np.uint8).tobytes())
    image.putpalette([v for rgb in voc_palette() for v in rgb])
    image.save(path)


CITIES = {"train": [("aachen", "aachen_000000_000019"), ("aachen", "aachen_000001_000019"),
                    ("bremen", "bremen_000000_000019")],
          "val": [("lindau", "lindau_000000_000019")]}


def cityscapes_tree(root):
    """Write a Cityscapes tree; returns {split: [(image path, label path, k)]} in sorted order."""
    files = {}
    k = 1
    for split, names in CITIES.items():
        files[split] = []
        for city, name in names:
            image = root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png"
            label = root / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png"
            write_png(image, image_array(k))
            write_png(label, label_array(k))
            # the other gtFine files of a real tree, which the loader must not take for trainId labels
            write_png(label.with_name(f"{name}_gtFine_labelIds.png"), label_array(k) + 7)
            files[split].append((image, label, k))
            k += 1
    return files


VOC_IDS = {"train": ["2007_000032", "2007_000039", "2008_000123"], "val": ["2007_000033"]}


def voc_tree(root):
    """Write a VOC2012 tree; returns {split: [(image path, label path, k)]} in split-file order."""
    files = {}
    k = 1
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for split, ids in VOC_IDS.items():
        files[split] = []
        for image_id in ids:
            image = root / "JPEGImages" / f"{image_id}.jpg"
            label = root / "SegmentationClass" / f"{image_id}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image_array(k)).save(image, quality=95)
            write_palette_png(label, label_array(k))
            files[split].append((image, label, k))
            k += 1
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    # an image without segmentation, as most of JPEGImages/ in the real set
    Image.fromarray(image_array(0)).save(root / "JPEGImages" / "2012_004000.jpg")
    return files
