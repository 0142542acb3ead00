"""A seeded synthetic segmentation dataset: the default for training and for tests.

Every sample is drawn from its own random stream, seeded by ``(seed, split, index)``, so a sample
does not depend on which samples were read before it, and the train and val splits differ.

What a sample holds:

* **background** (class 0): a smooth, low-saturation colour gradient;
* **objects** (classes 1 … K−1), painted over one another in random order at random positions,
  sizes and angles (they may overlap and leave the frame; the label is the class on top).
  Each class has its own shape, colour and texture, so that a small CNN can tell them apart from
  local context alone: the shape cycles through :data:`SHAPES`, the texture through
  :data:`TEXTURES` (stripes, checks and dots with fixed periods of 4 to 6 pixels, at any image
  size) and the colour is a saturated hue of its own;
* additive Gaussian noise over the whole image.

Each sample contains at least one object of class ``1 + index mod (K − 1)``, painted last, so
any K − 1 consecutive samples show every class.
"""

import colorsys

import numpy as np
import torch
from torch.utils.data import Dataset

from hwseg.errors import DatasetError

__all__ = ["SyntheticSegmentation", "SHAPES", "TEXTURES", "MIN_CLASSES", "MAX_CLASSES"]

SHAPES = ("disc", "rectangle", "band", "triangle", "ring", "diamond", "ellipse", "cross")
TEXTURES = ("solid", "hstripes", "vstripes", "checker", "dots", "diagonal")
MIN_CLASSES, MAX_CLASSES = 2, 20

_SPLITS = {"train": 0, "val": 1}
_SALT = 0x5E9D47A  # keeps these streams apart from other uses of the same seed
_TEXTURE_DEPTH = 0.5  # how much a texture darkens the object's colour where its pattern is 1


def _class_colour(cls):
    """A saturated RGB colour (0…255) per object class: hues spread by the golden angle."""
    k = cls - 1
    hue = (k * 0.6180339887) % 1.0
    sat = 0.9 if k % 2 == 0 else 0.65
    val = 0.95 if (k // 2) % 2 == 0 else 0.75
    return np.array(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float32) * 255.0


_COLOURS = np.stack([np.zeros(3, np.float32)] + [_class_colour(c) for c in range(1, MAX_CLASSES)])


def _check_size(size):
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        height, width = size
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (height, width))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DatasetError(f"size must be (height, width) with two positive integers, not {size!r}; "
                           f"pass e.g. size=(64, 64)")
    return int(height), int(width)


class SyntheticSegmentation(Dataset):
    """``count`` synthetic samples of ``size = (H, W)`` with ``classes`` classes (2…20).

    ``dataset[i]`` is ``(image, label)``: a ``uint8`` tensor ``(3, H, W)`` and an ``int64`` tensor
    ``(H, W)`` with values ``0 … classes − 1`` (no ignore pixels). ``objects`` is the inclusive
    range of objects per sample, ``noise`` the standard deviation of the additive noise (0…255 units).
    """

    ignore_index = 255

    def __init__(self, size=(64, 64), count=1024, classes=8, seed=0, split="train", *, objects=(1, 5), noise=8.0):
        self.size = _check_size(size)
        if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) \
                or not MIN_CLASSES <= classes <= MAX_CLASSES:
            raise DatasetError(f"the synthetic dataset has {MIN_CLASSES} to {MAX_CLASSES} classes, not {classes!r}; "
                               f"pass classes between {MIN_CLASSES} and {MAX_CLASSES}")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise DatasetError(f"the synthetic dataset needs a positive sample count, not {count!r}; "
                               f"pass e.g. count=1024")
        if split not in _SPLITS:
            raise DatasetError(f"the synthetic dataset has splits 'train' and 'val', not {split!r}; "
                               f"pass split='train' or split='val'")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise DatasetError(f"the synthetic dataset's seed must be a non-negative integer, not {seed!r}")
        lo, hi = objects
        if not 1 <= lo <= hi:
            raise DatasetError(f"objects must be a range (min, max) with 1 <= min <= max, not {objects!r}")
        self.classes = int(classes)
        self.count = int(count)
        self.seed = int(seed)
        self.split = split
        self.objects = (int(lo), int(hi))
        self.noise = float(noise)
        self.class_names = ("background",) + tuple(
            f"{SHAPES[(c - 1) % len(SHAPES)]}/{TEXTURES[(c - 1) % len(TEXTURES)]}" for c in range(1, self.classes))
        height, width = self.size
        self._ys = np.arange(height, dtype=np.float32)[:, None] + 0.5
        self._xs = np.arange(width, dtype=np.float32)[None, :] + 0.5
        self._iy = np.arange(height, dtype=np.int32)[:, None]
        self._ix = np.arange(width, dtype=np.int32)[None, :]

    def __len__(self):
        return self.count

    def __repr__(self):
        return (f"SyntheticSegmentation(size={self.size}, count={self.count}, classes={self.classes}, "
                f"seed={self.seed}, split={self.split!r})")

    def __getitem__(self, index):
        image, label = self.sample(index)
        return torch.from_numpy(image), torch.from_numpy(label)

    def sample(self, index):
        """Sample ``index`` as NumPy arrays: ``uint8 (3, H, W)`` and ``int64 (H, W)``."""
        index = int(index)
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(f"sample {index} out of range for {self.count} samples")
        rng = np.random.default_rng(np.random.SeedSequence([_SALT, self.seed, _SPLITS[self.split], index]))
        height, width = self.size
        image = self._background(rng)
        label = np.zeros((height, width), dtype=np.int64)
        lo, hi = self.objects
        others = rng.integers(1, self.classes, size=int(rng.integers(lo, hi + 1)) - 1)
        guaranteed = 1 + index % (self.classes - 1)
        for position, cls in enumerate([*others.tolist(), guaranteed]):
            self._paint(rng, image, label, cls, last=position == len(others))
        if self.noise > 0:
            image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(self.noise)
        return np.clip(np.rint(image), 0, 255).astype(np.uint8), label

    def _background(self, rng):
        height, width = self.size
        grey = rng.uniform(70.0, 150.0)
        tint = rng.uniform(-15.0, 15.0, size=3)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        amplitude = rng.uniform(10.0, 35.0)
        ramp = ((self._ys / height - 0.5) * np.float32(np.sin(angle))
                + (self._xs / width - 0.5) * np.float32(np.cos(angle)))
        base = (grey + tint).astype(np.float32)[:, None, None]
        return np.broadcast_to(base + np.float32(amplitude) * ramp[None], (3, height, width)).copy()

    def _paint(self, rng, image, label, cls, *, last):
        height, width = self.size
        side = min(height, width)
        if last:  # the guaranteed object: fully inside the frame's middle and large enough to be seen
            radius = max(2.5, rng.uniform(0.15, 0.3) * side)
            cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
        else:
            radius = max(2.0, rng.uniform(0.1, 0.3) * side)
            cy, cx = rng.uniform(0.0, height), rng.uniform(0.0, width)
        angle = rng.uniform(0.0, np.pi)
        aspect = rng.uniform(0.45, 0.9)
        brightness = rng.uniform(0.85, 1.1)
        phase_y, phase_x = (int(v) for v in rng.integers(0, 12, size=2))

        dy = self._ys - np.float32(cy)
        dx = self._xs - np.float32(cx)
        cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        shape = SHAPES[(cls - 1) % len(SHAPES)]
        r = np.float32(radius)
        if shape in ("disc", "ring"):
            dist2 = dx * dx + dy * dy
            mask = dist2 <= r * r
            if shape == "ring":
                mask &= dist2 >= (np.float32(0.55) * r) ** 2
        elif shape == "band":  # a strip across the whole frame
            mask = np.abs(dx * cos + dy * sin) <= max(1.5, 0.3 * radius)
        elif shape == "triangle":  # equilateral: inside the three edges at distance r/2 from the centre
            mask = None
            for k in range(3):
                a = angle + np.pi / 3 + 2 * np.pi * k / 3
                edge = dx * np.float32(np.cos(a)) + dy * np.float32(np.sin(a)) <= r / 2
                mask = edge if mask is None else mask & edge
        else:
            u, v = np.abs(dx * cos + dy * sin), np.abs(dy * cos - dx * sin)
            if shape == "rectangle":
                mask = (u <= r) & (v <= r * np.float32(aspect))
            elif shape == "diamond":
                mask = u + v <= r
            elif shape == "ellipse":
                mask = (u / r) ** 2 + (v / (r * np.float32(aspect * 0.7))) ** 2 <= 1
            else:  # cross
                arm = r / 3
                mask = ((u <= r) & (v <= arm)) | ((v <= r) & (u <= arm))
        if not mask.any():
            return
        iy, ix = np.nonzero(mask)
        texture = TEXTURES[(cls - 1) % len(TEXTURES)]
        iy = iy + phase_y
        ix = ix + phase_x
        if texture == "solid":
            pattern = None
        elif texture == "hstripes":
            pattern = (iy // 2) % 2
        elif texture == "vstripes":
            pattern = (ix // 2) % 2
        elif texture == "checker":
            pattern = (iy // 3 + ix // 3) % 2
        elif texture == "dots":
            pattern = ((iy % 6) < 3) & ((ix % 6) < 3)
        else:  # diagonal
            pattern = ((iy + ix) // 3) % 2
        colour = _COLOURS[cls] * np.float32(brightness)
        if pattern is None:
            image[:, mask] = colour[:, None]
        else:
            shade = 1.0 - np.float32(_TEXTURE_DEPTH) * pattern.astype(np.float32)
            image[:, mask] = colour[:, None] * shade[None, :]
        label[mask] = cls
