"""hwseg checkpoints: save and (safely) load a quantized model with its architecture.

A checkpoint is a ``torch.save`` of one dict of plain data and tensors::

    {"hwseg_checkpoint": 1,              # format version
     "arch": "int8_tiny",                # a name in hwseg.models.ARCHITECTURES
     "arch_args": {...},                 # plain data: builder(**arch_args) builds the model
     "input_shape": [C, H, W],           # the frame size the accelerator is built for
     "state_dict": {name: tensor, ...},  # model.state_dict() (weights, BN statistics, QAct clips)
     "meta": {...}}                      # plain data for people (description, seed, ...)

Loading always uses ``torch.load(..., map_location="cpu", weights_only=True)`` — a file carrying
code or arbitrary Python objects is refused without running anything, whatever
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says. Every problem is one CheckpointError line naming the file,
the problem and the fix. Saving writes the archive through memory (so the bytes do not depend on the
file name, which torch would otherwise record inside the zip) and is byte-deterministic.
"""

from __future__ import annotations

import hashlib
import math
import io
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hwseg.errors import CheckpointError
from hwseg.models import ARCHITECTURES, build_model

__all__ = ["FORMAT_VERSION", "Checkpoint", "save_checkpoint", "load_checkpoint"]

#: The checkpoint format version this hwseg writes and reads.
FORMAT_VERSION = 1
_KEYS = ("hwseg_checkpoint", "arch", "arch_args", "input_shape", "state_dict", "meta")
_SAVE_HINT = "hwseg.frontend.save_checkpoint(model, path, arch, arch_args, input_shape)"


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded checkpoint: the built ``model`` (eval mode, weights loaded) and its record.

    ``sha256`` is the hex digest of the file's bytes.
    """

    path: Path
    model: nn.Module
    arch: str
    arch_args: dict
    input_shape: tuple[int, int, int]
    meta: dict
    sha256: str


def _plain(value, what: str):
    """``value`` as plain data (dicts with str keys, lists, str, int, float, bool, None), or ValueError."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, what) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"{what} must have string keys")
        return {k: _plain(v, what) for k, v in value.items()}
    raise ValueError(f"{what} must be plain data (dict, list, str, int, float, bool, None), "
                     f"not {type(value).__name__}")


def _shape(value) -> list[int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value):
        return [int(d) for d in value]
    return None


def _mismatch(model_sd: dict, state_dict: dict) -> str | None:
    """What is wrong between the architecture's state_dict and the file's (one example), or None."""
    missing = [k for k in model_sd if k not in state_dict]
    unexpected = [k for k in state_dict if k not in model_sd]
    more = lambda names: f" (and {len(names) - 1} more)" if len(names) > 1 else ""  # noqa: E731
    if missing:
        return f"missing key {missing[0]!r}{more(missing)}"
    if unexpected:
        return f"unexpected key {unexpected[0]!r}{more(unexpected)}"
    for key, ref in model_sd.items():
        got = state_dict[key]
        if not isinstance(got, torch.Tensor):
            return f"key {key!r} holds a {type(got).__name__}, not a tensor"
        if tuple(got.shape) != tuple(ref.shape):
            return (f"key {key!r} has shape {tuple(got.shape)} in the file but {tuple(ref.shape)} "
                    f"in the architecture")
    return None


def save_checkpoint(model: nn.Module, path, arch: str, arch_args: dict, input_shape, meta: dict | None = None) -> str:
    """Write ``model`` as an hwseg checkpoint at ``path``; return the file's sha256.

    ``arch``/``arch_args`` must rebuild ``model``'s structure (checked against its state_dict);
    ``arch_args`` and ``meta`` must be plain data; ``input_shape`` is ``(C, H, W)``. The same model
    and arguments always give the same bytes.
    """
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise CheckpointError(f"cannot save: unknown architecture {arch!r}; known architectures: "
                              f"{', '.join(sorted(ARCHITECTURES))}")
    try:
        arch_args = _plain(dict(arch_args or {}), "arch_args")
        meta = _plain(dict(meta or {}), "meta")
    except ValueError as error:
        raise CheckpointError(f"cannot save: {error}") from None
    shape = _shape(input_shape)
    if shape is None:
        raise CheckpointError(f"cannot save: input_shape must be three positive integers [C, H, W], "
                              f"not {input_shape!r}")
    state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    problem = _mismatch(build_model(arch, arch_args).state_dict(), state_dict)
    if problem:
        raise CheckpointError(f"cannot save: the model does not match architecture {arch!r} with these "
                              f"arch_args: {problem}")
    record = {"hwseg_checkpoint": FORMAT_VERSION, "arch": arch, "arch_args": arch_args, "input_shape": shape,
              "state_dict": state_dict, "meta": meta}
    buffer = io.BytesIO()
    torch.save(record, buffer)
    data = buffer.getvalue()
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"cannot save: {path} is a directory; give a file path such as {path / 'model.pt'}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:     # written aside, then renamed: never a half-written checkpoint
            f.write(data)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot save {path}: {error.strerror}; check the directory exists and is "
                              f"writable") from None
    return hashlib.sha256(data).hexdigest()


def _refused_detail(message: str) -> str:
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        return f"it references the Python object {found.group(1)}"
    found = re.search(r"Unsupported operand (\d+)", message)
    if found:
        return f"it uses pickle opcode {found.group(1)}, which only arbitrary Python pickles need"
    return "it holds Python objects other than tensors and plain data"


def _read(path: Path, data: bytes):
    is_zip = data[:4] == b"PK\x03\x04"
    is_pickle = data[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise CheckpointError(f"{path}: not a PyTorch file (it is neither a torch.save zip archive nor a pickle); "
                              f"give the .pt checkpoint written by {_SAVE_HINT}")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        if "Weights only load failed" not in message:
            raise CheckpointError(f"{path}: not a readable PyTorch file ({message.splitlines()[0]}); give the .pt "
                                  f"checkpoint written by {_SAVE_HINT}") from None
        raise CheckpointError(f"{path}: refused to load: {_refused_detail(message)} (a pickled model object or "
                              f"code), which hwseg never unpickles; save the weights with {_SAVE_HINT}") from None
    except Exception as error:  # noqa: BLE001 - torch reports corrupt archives with several types
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch file ({type(error).__name__}: {first}); the file "
                              f"is damaged or not a checkpoint, write it again with {_SAVE_HINT}") from None


def _not_hwseg(path: Path, obj) -> str:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if any(str(k).endswith(".clip") for k in obj):
            return (f"{path}: looks like a bare state_dict of an hwseg.quant model (no architecture recorded); "
                    f"save the model with {_SAVE_HINT}")
        return (f"{path}: looks like a bare state_dict of an unquantized float model; build the model from "
                f"hwseg.quant layers and save it with hwseg.frontend.save_checkpoint")
    what = f"a dict without the key 'hwseg_checkpoint'" if isinstance(obj, dict) else f"a {type(obj).__name__}"
    return (f"{path}: a PyTorch file but not an hwseg checkpoint (it holds {what}); save the model with "
            f"{_SAVE_HINT}")


#: the largest checkpoint file read (8-bit weights of networks many times ERFNet's size fit well below)
MAX_CHECKPOINT_BYTES = 2 << 30


def load_checkpoint(path) -> Checkpoint:
    """Load the hwseg checkpoint at ``path`` safely; build its model in eval mode with its weights.

    Raises CheckpointError (one line: the file, the problem, the fix) for a missing file, a directory,
    a non-PyTorch file, a file carrying code or pickled objects, a PyTorch file that is not an hwseg
    checkpoint, an unknown architecture or bad arch_args, and a state_dict that does not fit the
    architecture.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file; give the path of an hwseg checkpoint (.pt)")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file; give the path of the .pt file")
    if not path.is_file():   # a device such as /dev/zero, a pipe or a socket would be read without end
        raise CheckpointError(f"{path}: is not a regular file (a device, pipe or socket); give the path of the "
                              f".pt file")
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path}: is {size:,} bytes, more than the {MAX_CHECKPOINT_BYTES:,} an hwseg checkpoint "
                              f"may have; give the .pt file written by hwseg.frontend.save_checkpoint")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror}); check its permissions") from None
    digest = hashlib.sha256(data).hexdigest()
    obj = _read(path, data)

    if not isinstance(obj, dict) or "hwseg_checkpoint" not in obj:
        raise CheckpointError(_not_hwseg(path, obj))
    version = obj["hwseg_checkpoint"]
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: hwseg checkpoint format {version!r} is not supported (this hwseg reads "
                              f"format {FORMAT_VERSION}); save it again with this hwseg version")
    missing = [k for k in _KEYS if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks the entry {missing[0]!r}; save it again with "
                              f"{_SAVE_HINT}")
    arch, arch_args, meta, state_dict = obj["arch"], obj["arch_args"], obj["meta"], obj["state_dict"]
    shape = _shape(obj["input_shape"])
    if shape is None:
        raise CheckpointError(f"{path}: input_shape must be three positive integers [C, H, W], not "
                              f"{obj['input_shape']!r}; save it again with a valid input_shape")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: meta must be a dict, not {type(meta).__name__}; save it again")
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: state_dict must be a dict of tensors, not {type(state_dict).__name__}; "
                              f"save it again with {_SAVE_HINT}")
    try:
        model = build_model(arch, arch_args)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    problem = _mismatch(model.state_dict(), state_dict)
    if problem:
        raise CheckpointError(f"{path}: the state_dict does not match architecture {arch!r}: {problem}; save "
                              f"the checkpoint from a model built with the same arch and arch_args")
    for name, tensor in state_dict.items():
        if not (torch.is_tensor(tensor) and tensor.is_floating_point()):
            continue
        bad = ~torch.isfinite(tensor)
        if name.endswith("running_var"):
            bad |= tensor < 0
        if bad.any():
            index = tuple(int(i) for i in torch.nonzero(bad)[0])
            value = tensor[index].item() if index else tensor.item()
            what = ("a variance cannot be negative" if math.isfinite(value)
                    else "the model diverged or was saved broken")
            raise CheckpointError(f"{path}: tensor {name!r} holds {value} at {list(index)} ({what}); retrain the "
                                  f"model or fix that tensor")
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    return Checkpoint(path, model, arch, arch_args, tuple(shape), meta, digest)
