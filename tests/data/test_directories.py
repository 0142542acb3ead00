"""Cityscapes and PASCAL VOC trees (written here with Pillow): layout detection, pairing, values,
resize, ignore, and every user error with its one-line message."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from hwseg.data import Cityscapes, VOCSegmentation, check_size, open_dataset, voc_palette
from hwseg.errors import DatasetError

from .trees import CITIES, H, W, colour, cityscapes_tree, image_array, label_array, voc_tree, write_png


def raises(message):
    """pytest.raises(DatasetError) with the message pinned, checking that it is one line."""
    class OneLine:
        def __enter__(self):
            self.context = pytest.raises(DatasetError, match=message)
            self.info = self.context.__enter__()
            return self.info

        def __exit__(self, *exc):
            result = self.context.__exit__(*exc)
            assert "\n" not in str(self.info.value)
            return result
    return OneLine()


def check_sample(sample, k, *, jpeg=False, size=(H, W)):
    image, label = sample
    assert image.dtype == torch.uint8 and image.shape == (3, *size)
    assert label.dtype == torch.int64 and label.shape == size
    expected = torch.tensor(colour(k), dtype=torch.int16)[:, None, None]
    assert (image.to(torch.int16) - expected).abs().max() <= (3 if jpeg else 0)
    assert torch.equal(label, torch.from_numpy(label_array(k, *size).astype(np.int64)))


# ---- Cityscapes ---------------------------------------------------------------------------------------------

def test_cityscapes_pairs_values_and_ignore(tmp_path):
    files = cityscapes_tree(tmp_path)
    data = open_dataset(tmp_path, split="train", size=None)
    assert isinstance(data, Cityscapes) and len(data) == 3 and data.classes == 19
    assert data.class_names[0] == "road" and data.ignore_index == 255
    assert [pair for pair in data.pairs] == [(image, label) for image, label, _ in files["train"]]
    for index, (_, _, k) in enumerate(files["train"]):
        check_sample(data[index], k)
    val = Cityscapes(tmp_path, "val")
    assert len(val) == len(CITIES["val"])
    check_sample(val[0], files["val"][0][2])


def test_cityscapes_void_class(tmp_path):
    cityscapes_tree(tmp_path)
    data = open_dataset(str(tmp_path), split="train", size=None, void_class=True)
    assert data.classes == 20 and data.class_names[-1] == "void"
    image, label = data[0]
    expected = torch.from_numpy(label_array(1).astype(np.int64))
    expected[expected == 255] = 19
    assert torch.equal(label, expected)


def test_cityscapes_resize(tmp_path):
    cityscapes_tree(tmp_path)
    # labels are 2×2-blocky after doubling, so nearest downsampling by 2 must give the original back
    image, label = Cityscapes(tmp_path, "train")[0]
    big = tmp_path / "big"
    write_png(big / "leftImg8bit/train/x/x_0_leftImg8bit.png", image_array(1, 2 * H, 2 * W))
    write_png(big / "gtFine/train/x/x_0_gtFine_labelTrainIds.png",
              np.repeat(np.repeat(label_array(1), 2, 0), 2, 1))
    check_sample(open_dataset(big, split="train", size=(H, W))[0], 1)
    up_image, up_label = open_dataset(tmp_path, split="train", size=(2 * H, 3 * W))[0]
    assert up_image.shape == (3, 2 * H, 3 * W) and up_label.shape == (2 * H, 3 * W)
    assert torch.equal(up_image, image[:, :1, :1].expand(3, 2 * H, 3 * W))  # a flat colour stays flat (bilinear)
    assert set(up_label.unique().tolist()) == {0, 1, 255}  # nearest: no new values


def test_cityscapes_broken_trees(tmp_path):
    files = cityscapes_tree(tmp_path)
    with raises(r"^Cityscapes split 'test' in '.*' has no images \(expected leftImg8bit/test/<city>/"
                r"<name>_leftImg8bit.png\); splits present: train, val$"):
        open_dataset(tmp_path, split="test", size=None)
    image, label, _ = files["train"][1]
    label.unlink()
    with raises(rf"^Cityscapes image '{re.escape(str(image))}' has no label '{re.escape(str(label))}'; create the "
                r"trainId labels with cityscapesscripts' createTrainIdLabelImgs.py, or remove the image$"):
        open_dataset(tmp_path, split="train", size=None)
    write_png(label, label_array(1))
    image.unlink()
    with raises(rf"^Cityscapes label '{re.escape(str(label))}' has no image '{re.escape(str(image))}'; "):
        open_dataset(tmp_path, split="train", size=None)


def test_cityscapes_missing_half(tmp_path):
    cityscapes_tree(tmp_path)
    (tmp_path / "gtFine").rename(tmp_path / "gtCoarse")
    with raises(r"^Cityscapes tree '.*' has leftImg8bit/ but no gtFine/; extract gtFine_trainvaltest.zip into"):
        open_dataset(tmp_path, split="train", size=None)


def test_label_outside_class_range(tmp_path):
    files = cityscapes_tree(tmp_path)
    _, label, _ = files["train"][2]
    bad = label_array(3)
    bad[4, 1] = 19
    bad[5, 1] = 40
    write_png(label, bad)
    data = open_dataset(tmp_path, split="train", size=None)
    data[0], data[1]  # the good ones still load
    with raises(rf"^label '{re.escape(str(label))}' holds class 19, outside the range 0..18 \(255 = ignore\) of a "
                r"19-class network; fix the label file or pass the dataset's class count$"):
        data[2]
    with raises(r"holds class 19, outside the range 0..18 \(255 = ignore, 19 = void\) of a 20-class network"):
        open_dataset(tmp_path, split="train", size=None, void_class=True)[2]
    with raises(r"holds class 40, outside the range 0..39 \(255 = ignore\) of a 40-class network"):
        open_dataset(tmp_path, split="train", size=None, classes=40)[2]
    assert open_dataset(tmp_path, split="train", size=None, classes=41)[2][1].max() == 255


@pytest.mark.parametrize("content, reason", [(b"not an image at all", "unrecognised image format"),
                                             ("truncated", "image file is truncated")])
def test_corrupted_image(tmp_path, content, reason):
    files = cityscapes_tree(tmp_path)
    image = files["train"][1][0]
    if content == "truncated":  # a noisy image (so its pixel data is long), cut in the middle of the pixel data
        write_png(image, np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8))
        content = image.read_bytes()[:200]
    image.write_bytes(content)
    data = open_dataset(tmp_path, split="train", size=None)
    with raises(rf"^cannot read image '{re.escape(str(image))}' \({reason}\); the file is corrupted or not a "
                r"PNG/JPEG image: replace it or re-extract the dataset$"):
        data[1]


def test_image_and_label_sizes_differ(tmp_path):
    files = cityscapes_tree(tmp_path)
    image, label, _ = files["train"][0]
    write_png(label, label_array(1, H, W + 2))
    with raises(rf"^image '{re.escape(str(image))}' is 8×12 but its label '{re.escape(str(label))}' is 8×14; "):
        open_dataset(tmp_path, split="train", size=None)[0]


def test_rgb_cityscapes_label_refused(tmp_path):
    files = cityscapes_tree(tmp_path)
    write_png(files["train"][0][1], image_array(1))
    with raises(r"^label '.*' has image mode RGB; expected a single-channel \(palette or greyscale\) PNG"):
        open_dataset(tmp_path, split="train", size=None)[0]


# ---- PASCAL VOC ---------------------------------------------------------------------------------------------

def test_voc_palette_labels_pairs_and_order(tmp_path):
    files = voc_tree(tmp_path / "VOCdevkit" / "VOC2012")
    with Image.open(files["train"][0][1]) as label:
        assert label.mode == "P"
    for root in (tmp_path, tmp_path / "VOCdevkit", tmp_path / "VOCdevkit" / "VOC2012"):
        data = open_dataset(root, split="train", size=None)
        assert isinstance(data, VOCSegmentation) and len(data) == 3 and data.classes == 21
        assert data.class_names[15] == "person"
        for index, (_, _, k) in enumerate(files["train"]):
            check_sample(data[index], k, jpeg=True)
    check_sample(VOCSegmentation(tmp_path, "val")[0], files["val"][0][2], jpeg=True)


def test_voc_resize_and_rgb_labels(tmp_path):
    files = voc_tree(tmp_path)
    image, label, k = files["train"][1]
    rgb = np.array(voc_palette(), np.uint8)[np.repeat(np.repeat(label_array(k), 2, 0), 2, 1)]
    Image.fromarray(image_array(k, 2 * H, 2 * W)).save(image, quality=95)
    label.unlink()
    Image.fromarray(rgb).save(label)
    check_sample(open_dataset(tmp_path, split="train", size=(H, W))[1], k, jpeg=True)
    rgb[3, 5] = (1, 2, 3)
    Image.fromarray(rgb).save(label)
    with raises(r"^label '.*' is an RGB image with colour \(1, 2, 3\) at \(row 3, column 5\), which is not in the "
                r"dataset's colour map; use the dataset's palette PNG labels$"):
        open_dataset(tmp_path, split="train", size=(H, W))[1]


def test_voc_broken_trees(tmp_path):
    files = voc_tree(tmp_path)
    with raises(r"^PASCAL VOC tree '.*' has no split file ImageSets/Segmentation/test.txt; "
                r"splits present: train, val$"):
        open_dataset(tmp_path, split="test", size=None)
    (tmp_path / "ImageSets/Segmentation/test.txt").write_text("\n\n")
    with raises(r"^PASCAL VOC split 'test' is empty: '.*test.txt' lists no image ids; add one id per line"):
        open_dataset(tmp_path, split="test", size=None)
    image, label, _ = files["train"][2]
    label.unlink()
    with raises(rf"^PASCAL VOC split 'train' lists '2008_000123' but its label '{re.escape(str(label))}' is "
                r"missing; restore it or remove the id from '.*train.txt'$"):
        open_dataset(tmp_path, split="train", size=None)
    image.unlink()
    with raises(r"^PASCAL VOC split 'train' lists '2008_000123' but its image '.*2008_000123.jpg' is missing"):
        open_dataset(tmp_path, split="train", size=None)
    (tmp_path / "SegmentationClass").rename(tmp_path / "SegmentationObject")
    with raises(r"^PASCAL VOC tree '.*' has no SegmentationClass/; expected JPEGImages/, SegmentationClass/ and "
                r"ImageSets/Segmentation/ as in VOCdevkit/VOC2012$"):
        open_dataset(tmp_path, split="train", size=None)


def test_voc_label_outside_class_range(tmp_path):
    files = voc_tree(tmp_path)
    ids = label_array(2)
    ids[2, 2] = 21
    write_png(files["train"][1][1], ids)  # a greyscale label is read as indices too
    with raises(r"^label '.*2007_000039.png' holds class 21, outside the range 0..20 \(255 = ignore\) of a "
                r"21-class network"):
        open_dataset(tmp_path, split="train", size=None)[1]


# ---- detection and sizes ------------------------------------------------------------------------------------

def test_neither_layout(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "notes.txt").write_text("hi")
    with raises(rf"^'{re.escape(str(tmp_path))}' is neither a Cityscapes tree \(leftImg8bit/ and gtFine/\) nor a "
                r"PASCAL VOC 2012 tree \(JPEGImages/, SegmentationClass/, ImageSets/Segmentation/\); pass the "
                r"dataset's root directory or 'synthetic'$"):
        open_dataset(tmp_path, split="train", size=None)
    with raises(r"^dataset '.*nowhere' does not exist; pass 'synthetic' or the root directory of a Cityscapes or "
                r"PASCAL VOC 2012 tree$"):
        open_dataset(tmp_path / "nowhere", split="train", size=None)
    with raises(r"^dataset '.*notes.txt' is a file, not a directory;"):
        open_dataset(tmp_path / "notes.txt", split="train", size=None)
    with raises(r"^dataset 'synthetc' does not exist;"):
        open_dataset("synthetc", split="train", size=None)


def test_check_size():
    assert check_size((96, 56), 8) == (96, 56)
    assert check_size(64, 16) == (64, 64)
    with raises(r"^input 100×60 is not divisible by the network's stride 8; use e.g. 96×56 or 104×64$"):
        check_size((100, 60), 8)
    with raises(r"^input 96×60 is not divisible by the network's stride 8; use e.g. 96×56 or 96×64$"):
        check_size((96, 60), 8)
    with raises(r"^input 5×64 is not divisible by the network's stride 8; use e.g. 8×64$"):
        check_size((5, 64), 8)
    with raises(r"^input 100×60 is not divisible by the network's stride 8"):
        open_dataset("synthetic", split="train", size=(100, 60), stride=8)
    with raises(r"^input 30×30 is not divisible by the network's stride 4; use e.g. 28×28 or 32×32$"):
        open_dataset("/nonexistent", split="train", size=(30, 30), stride=4)
    assert open_dataset("synthetic", split="train", size=(32, 64), stride=32).size == (32, 64)
