"""Checkpoint format: round trip, determinism, and every refusal with its message."""

import hashlib
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hwseg.errors import CheckpointError
from hwseg.frontend import load_checkpoint, save_checkpoint, to_graph
from hwseg.golden import run_graph
from hwseg.models import build_model
from hwseg.quant import calibrate

from tests.quant.random_models import random_images

ARGS = {"classes": 3, "width": 4, "input_size": 16}


class Payload:
    """Unpickling this runs ``os.system("touch <marker>")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class OpenPayload(Payload):
    """Unpickling this calls ``open(<marker>, "w")``, which creates the file."""

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_model("int8_tiny", ARGS)
    return calibrate(model, [random_images(s, (3, 16, 16), 8) for s in range(3)])


@pytest.fixture
def saved(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(tiny, path, "int8_tiny", ARGS, [3, 16, 16], meta={"note": "test"})
    return path


def refuses(path, message):
    """Expect CheckpointError for ``path`` with ``message`` (a regex) after the file name."""
    return pytest.raises(CheckpointError, match="^" + re.escape(str(path)) + ": " + message)


def test_round_trip_gives_the_same_graph_outputs(tiny, saved):
    ckpt = load_checkpoint(saved)
    assert (ckpt.arch, ckpt.arch_args, ckpt.input_shape, ckpt.meta) == ("int8_tiny", ARGS, (3, 16, 16), {"note": "test"})
    assert ckpt.sha256 == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert not ckpt.model.training
    for key, value in tiny.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[key], value), key
    x = random_images(9, (3, 16, 16), 2).numpy().astype(np.int64)
    before = run_graph(to_graph(tiny, (3, 16, 16)), x, keep=True)
    after = run_graph(to_graph(ckpt.model, ckpt.input_shape), x, keep=True)
    assert list(before) == list(after)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_saving_is_deterministic_and_independent_of_the_file_name(tiny, saved, tmp_path):
    other = tmp_path / "another_name.pt"
    digest = save_checkpoint(tiny, other, "int8_tiny", ARGS, [3, 16, 16], meta={"note": "test"})
    assert other.read_bytes() == saved.read_bytes()
    assert digest == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert all(name.startswith("archive/") for name in zipfile.ZipFile(other).namelist())
    record = torch.load(other, map_location="cpu", weights_only=True)
    assert list(record) == ["hwseg_checkpoint", "arch", "arch_args", "input_shape", "state_dict", "meta"]
    assert record["hwseg_checkpoint"] == 1 and record["input_shape"] == [3, 16, 16]


def test_save_refuses_what_it_could_not_load_back(tiny, tmp_path):
    path = tmp_path / "x.pt"
    with pytest.raises(CheckpointError, match=r"^cannot save: unknown architecture 'resnet'; known architectures: "
                                              r"bfcn, erfnet, fpl, int8_tiny, int_fcn, sequential"):
        save_checkpoint(tiny, path, "resnet", {}, [3, 16, 16])
    with pytest.raises(CheckpointError, match=r"^cannot save: the model does not match architecture 'int8_tiny' with "
                                              r"these arch_args: key 'conv1.weight' has shape \(4, 3, 3, 3\) in the "
                                              r"file but \(8, 3, 3, 3\)"):
        save_checkpoint(tiny, path, "int8_tiny", {"classes": 3}, [3, 16, 16])
    with pytest.raises(CheckpointError, match=r"^cannot save: meta must be plain data .*not Tensor"):
        save_checkpoint(tiny, path, "int8_tiny", ARGS, [3, 16, 16], meta={"t": torch.ones(1)})
    with pytest.raises(CheckpointError, match=r"^cannot save: input_shape must be three positive integers"):
        save_checkpoint(tiny, path, "int8_tiny", ARGS, [16, 16])
    assert not path.exists()


def test_missing_file_and_directory(tmp_path):
    with refuses(tmp_path / "nope.pt", "no such file; give the path of an hwseg checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    with refuses(tmp_path, "is a directory, not a checkpoint file; give the path of the .pt file"):
        load_checkpoint(tmp_path)


def test_devices_and_huge_files_are_refused_before_reading(tmp_path):
    with refuses(Path("/dev/zero"), r"is not a regular file \(a device, pipe or socket\); give the path of the .pt file"):
        load_checkpoint("/dev/zero")
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as sparse:       # 3 GiB without using the disk
        sparse.truncate(3 << 30)
    with refuses(huge, r"is 3,221,225,472 bytes, more than the 2,147,483,648 an hwseg checkpoint may have"):
        load_checkpoint(huge)


def test_files_that_are_not_pytorch_files(saved, tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello\n")
    with refuses(text, r"not a PyTorch file \(it is neither a torch.save zip archive nor a pickle\); give the .pt "
                       r"checkpoint written by hwseg.frontend.save_checkpoint"):
        load_checkpoint(text)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with refuses(empty, "not a PyTorch file"):
        load_checkpoint(empty)
    array = tmp_path / "array.npy"
    np.save(array, np.zeros(3))
    with refuses(array, "not a PyTorch file"):
        load_checkpoint(array)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(saved.read_bytes()[:4000])
    with refuses(truncated, r"not a readable PyTorch file \(RuntimeError: .*\); the file is damaged or not a "
                            r"checkpoint"):
        load_checkpoint(truncated)


@pytest.mark.parametrize("force_unsafe", [False, True])
@pytest.mark.parametrize("form", ["torch_zip", "raw_pickle", "open_call"])
def test_a_pickle_carrying_code_is_refused_and_never_runs(tmp_path, monkeypatch, form, force_unsafe):
    if force_unsafe:   # would turn weights_only off if hwseg relied on torch's default
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "evil.pt"
    if form == "torch_zip":
        torch.save({"hwseg_checkpoint": 1, "arch": Payload(marker)}, path)
        detail = r"it references the Python object posix.system"
    elif form == "raw_pickle":
        path.write_bytes(pickle.dumps(Payload(marker), protocol=2))
        detail = r"it references the Python object posix.system"
    else:
        torch.save([OpenPayload(marker)], path)
        detail = r"it references the Python object (builtins|io)\.open"
    with refuses(path, f"refused to load: {detail} \\(a pickled model object or code\\), which hwseg never "
                       f"unpickles; save the weights with hwseg.frontend.save_checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
    # The payload is live: an unsafe load would have run it (checked on a copy with its own marker).
    live = tmp_path / "LIVE"
    pickle.loads(pickle.dumps((OpenPayload if form == "open_call" else Payload)(live), protocol=2))
    assert live.exists()


def test_a_whole_pickled_module_is_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(nn.Conv2d(3, 4, 3), path)
    with refuses(path, r"refused to load: it references the Python object torch.nn.modules.conv.Conv2d"):
        load_checkpoint(path)


def test_bare_state_dicts(tiny, tmp_path):
    float_sd = tmp_path / "float.pt"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).state_dict(), float_sd)
    with refuses(float_sd, r"looks like a bare state_dict of an unquantized float model; build the model from "
                           r"hwseg.quant layers and save it with hwseg.frontend.save_checkpoint$"):
        load_checkpoint(float_sd)
    quant_sd = tmp_path / "quant.pt"
    torch.save(tiny.state_dict(), quant_sd)
    with refuses(quant_sd, r"looks like a bare state_dict of an hwseg.quant model \(no architecture recorded\); "
                           r"save the model with hwseg.frontend.save_checkpoint"):
        load_checkpoint(quant_sd)


def _edited(saved, tmp_path, **changes):
    record = torch.load(saved, map_location="cpu", weights_only=True)
    for key, value in changes.items():
        if value is None:
            del record[key]
        else:
            record[key] = value
    path = tmp_path / "edited.pt"
    torch.save(record, path)
    return path


def test_pytorch_files_that_are_not_hwseg_checkpoints(saved, tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with refuses(path, r"a PyTorch file but not an hwseg checkpoint \(it holds a list\); save the model with "
                       r"hwseg.frontend.save_checkpoint"):
        load_checkpoint(path)
    path = _edited(saved, tmp_path, hwseg_checkpoint=None)
    with refuses(path, r"a PyTorch file but not an hwseg checkpoint \(it holds a dict without the key "
                       r"'hwseg_checkpoint'\)"):
        load_checkpoint(path)
    with refuses(_edited(saved, tmp_path, hwseg_checkpoint=2),
                 r"hwseg checkpoint format 2 is not supported \(this hwseg reads format 1\)"):
        load_checkpoint(tmp_path / "edited.pt")
    with refuses(_edited(saved, tmp_path, meta=None), r"the checkpoint lacks the entry 'meta'"):
        load_checkpoint(tmp_path / "edited.pt")
    with refuses(_edited(saved, tmp_path, input_shape=[3, 0, 16]), r"input_shape must be three positive integers"):
        load_checkpoint(tmp_path / "edited.pt")


def test_unknown_architecture_and_bad_arch_args(saved, tmp_path):
    with refuses(_edited(saved, tmp_path, arch="resnet"),
                 r"unknown architecture 'resnet'; known architectures: bfcn, erfnet, fpl, int8_tiny, int_fcn, sequential$"):
        load_checkpoint(tmp_path / "edited.pt")
    with refuses(_edited(saved, tmp_path, arch_args={**ARGS, "classes": 1}),
                 r"architecture 'int8_tiny': arch_args 'classes' must be an integer in 2…256, not 1"):
        load_checkpoint(tmp_path / "edited.pt")
    with refuses(_edited(saved, tmp_path, arch_args={**ARGS, "depth": 3}),
                 r"architecture 'int8_tiny': unknown argument 'depth' in arch_args; it takes: classes, width, "
                 r"input_size"):
        load_checkpoint(tmp_path / "edited.pt")
    layers = [{"type": "QuantInput"}, {"type": "QConv2d", "in": 3, "out": 4, "kernal": 3}]
    with refuses(_edited(saved, tmp_path, arch="sequential", arch_args={"layers": layers}),
                 r"layer 1 \(QConv2d\): unknown field 'kernal'; its fields: in, out, kernel"):
        load_checkpoint(tmp_path / "edited.pt")


def test_state_dict_that_does_not_match_the_architecture(saved, tmp_path):
    sd = torch.load(saved, map_location="cpu", weights_only=True)["state_dict"]
    missing = {k: v for k, v in sd.items() if k != "bn2.running_var"}
    with refuses(_edited(saved, tmp_path, state_dict=missing),
                 r"the state_dict does not match architecture 'int8_tiny': missing key 'bn2.running_var'; save the "
                 r"checkpoint from a model built with the same arch and arch_args"):
        load_checkpoint(tmp_path / "edited.pt")
    with refuses(_edited(saved, tmp_path, state_dict={**sd, "conv9.weight": torch.ones(1), "x": torch.ones(1)}),
                 r"the state_dict does not match architecture 'int8_tiny': unexpected key 'conv9.weight' \(and 1 "
                 r"more\)"):
        load_checkpoint(tmp_path / "edited.pt")
    with refuses(_edited(saved, tmp_path, state_dict={**sd, "classifier.weight": torch.ones(5, 8, 1, 1)}),
                 r"the state_dict does not match architecture 'int8_tiny': key 'classifier.weight' has shape \(5, 8, 1, 1\) in the file but \(3, 8, 1, 1\) in the "
                 r"architecture"):
        load_checkpoint(tmp_path / "edited.pt")
