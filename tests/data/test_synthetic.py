"""The synthetic dataset: deterministic per (seed, split, index), any size, every class, learnable colours."""

import time

import pytest
import torch

from hwseg.data import SyntheticSegmentation, open_dataset
from hwseg.errors import DatasetError


def test_same_seed_and_index_give_identical_samples_in_any_order():
    a = SyntheticSegmentation(size=(40, 56), count=20, classes=7, seed=3)
    b = SyntheticSegmentation(size=(40, 56), count=20, classes=7, seed=3)
    forward = [a[i] for i in range(20)]
    backward = [b[i] for i in reversed(range(20))][::-1]
    for (ia, la), (ib, lb) in zip(forward, backward):
        assert torch.equal(ia, ib) and torch.equal(la, lb)
    assert torch.equal(a[-1][0], a[19][0])
    with pytest.raises(IndexError):
        a[20]


def test_splits_seeds_and_indices_differ():
    kw = dict(size=(32, 32), count=8, classes=5)
    train = SyntheticSegmentation(seed=0, split="train", **kw)
    val = SyntheticSegmentation(seed=0, split="val", **kw)
    other = SyntheticSegmentation(seed=1, split="train", **kw)
    for i in range(8):
        assert not torch.equal(train[i][0], val[i][0])
        assert not torch.equal(train[i][1], val[i][1])
        assert not torch.equal(train[i][0], other[i][0])
    assert not torch.equal(train[0][0], train[1][0])


@pytest.mark.parametrize("size", [(16, 16), (17, 33), (64, 64), (96, 40), (512, 256), (256, 512)])
def test_shapes_dtypes_and_values(size):
    data = SyntheticSegmentation(size=size, count=4, classes=6, seed=0)
    assert len(data) == 4
    for i in range(len(data)):
        image, label = data[i]
        assert image.dtype == torch.uint8 and image.shape == (3, *size)
        assert label.dtype == torch.int64 and label.shape == size
        assert 0 <= int(label.min()) and int(label.max()) < 6
        assert (label > 0).any(), "every sample holds at least one object"
        assert image.float().std() > 5  # not blank


@pytest.mark.parametrize("classes", [2, 5, 20])
@pytest.mark.parametrize("size", [(16, 16), (64, 64)])
def test_every_class_appears_within_a_few_samples(classes, size):
    data = SyntheticSegmentation(size=size, count=40, classes=classes, seed=5, split="val")
    seen = set()
    for i in range(classes - 1):
        seen |= set(data[i][1].unique().tolist())
    assert seen == set(range(classes))


def test_classes_are_told_apart_by_local_colour():
    """A nearest-mean-colour classifier on 3×3-averaged pixels (fit on train, scored on val) does well."""
    classes = 8
    def pixels(split):
        data = SyntheticSegmentation(size=(48, 48), count=28, classes=classes, seed=2, split=split)
        images, labels = zip(*(data[i] for i in range(len(data))))
        images = torch.nn.functional.avg_pool2d(torch.stack(images).float(), 3, stride=1, padding=1,
                                                count_include_pad=False)
        return images.permute(0, 2, 3, 1).reshape(-1, 3), torch.stack(labels).reshape(-1)
    x, y = pixels("train")
    means = torch.stack([x[y == c].mean(0) for c in range(classes)])
    x, y = pixels("val")
    accuracy = (torch.cdist(x, means).argmin(1) == y).float().mean()
    assert accuracy > 0.8


def test_fast_enough():
    data = SyntheticSegmentation(size=(64, 64), count=400, classes=20)
    start = time.perf_counter()
    for i in range(400):
        data[i]
    assert time.perf_counter() - start < 4.0  # about 0.25 s alone; loose for a busy machine


def test_batches_through_a_dataloader():
    loader = torch.utils.data.DataLoader(open_dataset("synthetic", split="train", size=(32, 48), count=6),
                                         batch_size=4)
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 32, 48) and labels.shape == (4, 32, 48)


def test_open_dataset_synthetic_defaults():
    data = open_dataset("synthetic", split="val", size=None)
    assert (data.size, data.classes, len(data), data.split) == ((64, 64), 8, 256, "val")
    assert len(data.class_names) == 8 and data.class_names[0] == "background"
    data = open_dataset("synthetic", split="train", size=(16, 24), classes=3, count=5, seed=9)
    assert (data.size, data.classes, len(data), data.seed) == ((16, 24), 3, 5, 9)


@pytest.mark.parametrize("kwargs, message", [
    (dict(classes=21), r"^the synthetic dataset has 2 to 20 classes, not 21; pass classes between 2 and 20$"),
    (dict(classes=1), r"^the synthetic dataset has 2 to 20 classes, not 1;"),
    (dict(split="test"), r"^the synthetic dataset has splits 'train' and 'val', not 'test'; pass split='train'"),
    (dict(size=(0, 8)), r"^size must be \(height, width\) with two positive integers, not \(0, 8\); "),
    (dict(size=(8, 8, 3)), r"^size must be \(height, width\)"),
    (dict(count=0), r"^the synthetic dataset needs a positive sample count, not 0;"),
    (dict(seed=-1), r"^the synthetic dataset's seed must be a non-negative integer, not -1$"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(DatasetError, match=message) as error:
        SyntheticSegmentation(**kwargs)
    assert "\n" not in str(error.value)


def test_integer_size_means_square():
    assert SyntheticSegmentation(size=24, count=1)[0][0].shape == (3, 24, 24)
