"""Reading image and label files with Pillow for the directory datasets, and the shared
(image, label) pair dataset: sizes checked, labels range-checked, optional resize.

Pillow is imported on first use, so ``hwseg.data`` (and the synthetic dataset) works without it.
"""

import numpy as np
import torch
from torch.utils.data import Dataset

from hwseg.errors import DatasetError

from .synthetic import _check_size

IGNORE = 255


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError("reading dataset images needs Pillow; install it with 'pip install pillow'") from None
    return Image


def _reason(error):
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def _open(path):
    """Open and fully decode an image file, or raise DatasetError naming it."""
    Image = _pil()
    try:
        with Image.open(path) as image:
            image.load()  # decoded now: stays usable after the file is closed
            return image
    except FileNotFoundError:
        raise DatasetError(f"image file '{path}' does not exist; restore it or remove it from the split") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        reason = "unrecognised image format" if isinstance(error, Image.UnidentifiedImageError) else _reason(error)
        raise DatasetError(f"cannot read image '{path}' ({reason}); the file is corrupted or not a "
                           f"PNG/JPEG image: replace it or re-extract the dataset") from None


def read_image(path):
    """An RGB image file as a PIL image."""
    image = _open(path)
    return image if image.mode == "RGB" else image.convert("RGB")


def read_label_ids(path, colours=None):
    """A label file as a ``uint8`` array of class indices (255 = ignore).

    Palette (``P``) and greyscale (``L``, ``I``) PNGs hold the indices directly. An RGB label is
    decoded through ``colours`` (a dict ``(r, g, b) → index``) when the dataset has a colour map,
    and refused otherwise.
    """
    image = _open(path)
    if image.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
        ids = np.asarray(image)
        if ids.dtype != np.uint8:
            ids = ids.astype(np.int64)
            bad = (ids < 0) | (ids > IGNORE)
            if bad.any():
                raise DatasetError(f"label '{path}' holds value {int(ids[bad].flat[0])}, which is not a class index "
                                   f"0..254 or 255 (ignore); fix the label file")
            ids = ids.astype(np.uint8)
        return ids
    if image.mode in ("RGB", "RGBA") and colours is not None:
        rgb = np.asarray(image.convert("RGB")).astype(np.int32)
        keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        table_keys = np.array([(r << 16) | (g << 8) | b for r, g, b in colours], dtype=np.int32)
        table_ids = np.array(list(colours.values()), dtype=np.uint8)
        order = np.argsort(table_keys)
        table_keys, table_ids = table_keys[order], table_ids[order]
        where = np.clip(np.searchsorted(table_keys, keys), 0, len(table_keys) - 1)
        known = table_keys[where] == keys
        if not known.all():
            y, x = np.argwhere(~known)[0]
            raise DatasetError(f"label '{path}' is an RGB image with colour {tuple(int(v) for v in rgb[y, x])} at "
                               f"(row {y}, column {x}), which is not in the dataset's colour map; use the "
                               f"dataset's palette PNG labels")
        return table_ids[where]
    raise DatasetError(f"label '{path}' has image mode {image.mode}; expected a single-channel (palette or "
                       f"greyscale) PNG of class indices")


class PairedSegmentation(Dataset):
    """(image, label) file pairs → ``(uint8 (3, H, W), int64 (H, W))`` tensors.

    ``classes`` is the number of classes the network predicts. A label pixel must be a class index
    ``0 … labelled − 1`` (``labelled = classes``, or ``classes − 1`` with ``void_class``) or 255; 255 is
    kept as 255 (ignore: metrics and losses must skip it), or becomes class ``classes − 1`` when
    ``void_class`` is set. ``size = (H, W)`` resizes images bilinearly and labels by nearest neighbour.
    """

    ignore_index = IGNORE
    colours = None  # RGB label decoding table, for datasets that have one

    def __init__(self, pairs, *, classes, size=None, void_class=False, class_names=None):
        if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or not 2 <= classes <= 255:
            raise DatasetError(f"classes must be an integer from 2 to 255, not {classes!r}")
        self.pairs = list(pairs)
        self.classes = int(classes)
        self.void_class = bool(void_class)
        self.size = None if size is None else _check_size(size)
        self.class_names = tuple(class_names) if class_names is not None else tuple(str(c) for c in range(classes))

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, index):
        image_path, label_path = self.pairs[index]
        image = read_image(image_path)
        ids = read_label_ids(label_path, self.colours)
        if ids.shape != (image.height, image.width):
            raise DatasetError(f"image '{image_path}' is {image.height}×{image.width} but its label '{label_path}' is "
                               f"{ids.shape[0]}×{ids.shape[1]}; the pair does not match: fix or remove it")
        labelled = self.classes - 1 if self.void_class else self.classes
        bad = (ids >= labelled) & (ids != IGNORE)
        if bad.any():
            value = int(ids[bad].min())
            void = f", {labelled} = void" if self.void_class else ""
            raise DatasetError(f"label '{label_path}' holds class {value}, outside the range 0..{labelled - 1} "
                               f"(255 = ignore{void}) of a {self.classes}-class network; fix the label file or "
                               f"pass the dataset's class count")
        if self.size is not None and self.size != ids.shape:
            height, width = self.size
            Image = _pil()
            image = image.resize((width, height), Image.BILINEAR)
            ids = np.asarray(Image.fromarray(np.ascontiguousarray(ids)).resize((width, height), Image.NEAREST))
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8).transpose(2, 0, 1).copy())
        label = torch.from_numpy(ids.astype(np.int64))
        if self.void_class:
            label[label == IGNORE] = self.classes - 1
        return pixels, label
